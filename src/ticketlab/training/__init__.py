"""Training a cohort (protocol §3): the schedule, the learner seam, TF1 Adam, evaluation and the loop.

The names below load on first use, so that `training.config` (what the command line parses flags
with) imports without torch.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "evaluate": "evaluation", "train_cohort": "loop", "MemberResult": "schedule", "MemberStart": "schedule",
    "Schedule": "schedule", "CohortLearner": "state", "CohortState": "state", "Learner": "state",
    "Optimizer": "state", "train_weights": "state",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
