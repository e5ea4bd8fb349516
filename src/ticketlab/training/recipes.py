"""The optimisers and learning-rate schedules a run can name: two small tables.

This module is light on purpose (no torch): the command line's choices and the config's checks
read it before anything heavy loads. An optimiser's class lives in a module that imports torch
(`adam.TF1Adam`, `optimizers`) and is named here as "module:Class", imported when a run builds it;
a schedule is a formula, whole here. A new optimiser is one `OptimizerEntry` (and its class), a new
schedule one `LRSchedule`, each with its test in `tests/training/test_optimizers.py`.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Callable

from ..core.errors import TicketlabError


@dataclass(frozen=True)
class OptimizerEntry:
    """An optimiser a run can name. `target` is its class, "module:Class" in ticketlab.training, built
    as Class(learning_rate, **{field: the run's value for each field in `takes`}); `takes` lists the
    config fields it reads beyond the learning rate (a run that sets another is refused)."""

    name: str
    target: str
    help: str
    takes: tuple[str, ...] = ()


OPTIMIZER_TABLE: tuple[OptimizerEntry, ...] = (
    OptimizerEntry("tf1_adam", "adam:TF1Adam", "TensorFlow 1's Adam, protocol §3 (the paper's)"),
    OptimizerEntry("adam", "optimizers:TorchAdam", "torch.optim.Adam's update (weight_decay: L2 added to the gradient)",
                   ("weight_decay",)),
    OptimizerEntry("sgd", "optimizers:SGD", "torch.optim.SGD's update (momentum, nesterov, weight_decay as torch's)",
                   ("momentum", "nesterov", "weight_decay")),
)
OPTIMIZERS: tuple[str, ...] = tuple(e.name for e in OPTIMIZER_TABLE)

# The update's multiplier of the base learning rate: (s, total, settings) -> factor, for update s
# (0-based: the update that makes step s + 1) of a schedule of `total` steps; `settings` has the
# schedule's fields (milestones, gamma, warmup_steps).
Factor = Callable[[int, int, Any], float]


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule a run can name: its factor, its help, and the fields it reads."""

    name: str
    factor: Factor
    help: str
    takes: tuple[str, ...] = ()


def _cosine(s: int, total: int, o: Any) -> float:
    # half a cosine over the steps after warmup, as torch's CosineAnnealingLR(T_max) with eta_min 0
    return 0.5 * (1.0 + math.cos(math.pi * max(0, s - o.warmup_steps) / (total - o.warmup_steps)))


LR_SCHEDULE_TABLE: tuple[LRSchedule, ...] = (
    LRSchedule("constant", lambda s, total, o: 1.0, "the base learning rate throughout (protocol §3)"),
    LRSchedule("multistep", lambda s, total, o: o.gamma ** bisect.bisect_right(o.milestones, s),
               "times gamma after each of the milestones (steps)", ("milestones", "gamma")),
    LRSchedule("cosine", _cosine, "half a cosine from the base rate (after warmup) towards 0 at the last step"),
)
LR_SCHEDULES: tuple[str, ...] = tuple(e.name for e in LR_SCHEDULE_TABLE)


def optimizer_entry(name: str) -> OptimizerEntry:
    for e in OPTIMIZER_TABLE:
        if e.name == name:
            return e
    raise TicketlabError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def lr_schedule(name: str) -> LRSchedule:
    for e in LR_SCHEDULE_TABLE:
        if e.name == name:
            return e
    raise TicketlabError(f"unknown lr_schedule {name!r}: choose one of {', '.join(LR_SCHEDULES)}")


def learning_rate(base: float, s: int, total: int, settings: Any) -> float:
    """The learning rate of update s (0-based) of a `total`-step schedule: base x the schedule's factor
    x the linear warmup's min(1, (s + 1) / warmup_steps). The constant schedule without warmup gives
    `base` itself, the very float the runs of protocol §3 use."""
    factor = lr_schedule(settings.lr_schedule).factor(s, total, settings)
    if settings.warmup_steps:
        factor *= min(1.0, (s + 1) / settings.warmup_steps)
    return base if factor == 1.0 else base * factor
