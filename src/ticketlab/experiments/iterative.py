"""Iterative pruning (SPEC §4): chains of (criterion, mask-1 action, mask-0 action) over rounds.

Round 0 of every chain is the dense run of its seed, trained once and shared. Each later round of
all chains of one seed trains as one cohort. A finished run is never redone: a rerun starts each
chain from its last finished round.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..pruning.actions import start_weights
from ..training.config import TrainConfig
from ..data import Dataset, load_dataset
from ..nets.specs import NetSpec, get_net, init_weights
from ..pruning.prune import prune_count, prune_n
from ..store.runs import (
    RunState,
    dense_identity,
    dense_snapshots,
    read_state,
    round_identity,
    run_dir,
    write_dense,
    write_round,
)
from ..core.seeds import derive_seed, generator
from ..store.files import finished, reading_run
from ..training.loop import train_cohort
from ..training.schedule import MemberStart

Fraction = Callable[[float], None]  # reports progress of the current job in [0, 1]


@dataclass(frozen=True)
class Chain:
    criterion: str
    mask1: str
    mask0: str

