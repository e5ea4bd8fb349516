"""Pruning (protocol §4–7): the criteria table, the count rule and ranking, and the mask actions.

`prune_layer`, `prune_count`, `pruning_schedule` and the rest of `prune.py` are also reachable here
(`ticketlab.pruning.prune_layer`, as before the package had rooms), loaded on first use so that
reading the criteria table does not load torch.
"""
from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # only for names not found otherwise: never the submodules themselves, which the import system loads
    if not name.startswith("_") and name not in ("prune", "criteria", "actions"):
        prune = importlib.import_module(f"{__name__}.prune")
        if hasattr(prune, name):
            return getattr(prune, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
