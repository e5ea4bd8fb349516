"""Pruning (SPEC §4–7): the criteria table, the count rule and ranking, and the mask actions."""
