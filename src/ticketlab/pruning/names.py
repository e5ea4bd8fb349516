"""The criterion names of SPEC §5, in SPEC order, in a module that does not import torch
(plotting and reports use them without loading a deep-learning stack)."""
from __future__ import annotations

CRITERIA: tuple[str, ...] = (
    "large_final",
    "small_final",
    "large_init",
    "small_init",
    "magnitude_increase",
    "movement",
    "random",
    "large_final_same_sign",
    "large_final_diff_sign",
    "magnitude_increase_same_sign",
    "magnitude_increase_diff_sign",
    "large_init_large_final",
    "small_init_small_final",
)
