"""The 13 mask criteria of SPEC §5: which weights a pruning round keeps.

A score criterion maps (w_init, w_final) of one layer to a score per weight; a higher score is
kept. Two criteria, `large_init_large_final` and `small_init_small_final`, are not scores but an
equal-percentile rule on two rankings at once; `ticketlab.pruning.percentile_rule_prune` applies them.

sign() is numpy's (sign(0) = 0), which torch.sign matches, so a weight that starts or ends at
exactly 0 counts as having changed sign unless it is 0 at both ends.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..core.errors import TicketlabError
from ..pruning.names import CRITERIA


# Criteria that keep the top region of |w_i| and |w_f| at one shared percentile (SPEC §5).
PERCENTILE_RULES: tuple[str, ...] = ("large_init_large_final", "small_init_small_final")

Score = Callable[[Tensor, Tensor], Tensor]


def _same_sign(w_init: Tensor, w_final: Tensor) -> Tensor:
    return torch.sign(w_init) == torch.sign(w_final)


def _magnitude_increase(w_init: Tensor, w_final: Tensor) -> Tensor:
    return w_final.abs() - w_init.abs()


def _only_where(keep: Tensor, values: Tensor) -> Tensor:
    # The excluded group scores 0, not -inf (SPEC §5): e.g. shrunk same-sign weights (negative
    # magnitude increase) go before every sign-flipped one, as in the released code.
    return torch.where(keep, values, torch.zeros_like(values))


SCORES: dict[str, Score] = {
    "large_final": lambda w_i, w_f: w_f.abs(),
    "small_final": lambda w_i, w_f: -w_f.abs(),
    "large_init": lambda w_i, w_f: w_i.abs(),
    "small_init": lambda w_i, w_f: -w_i.abs(),
    "magnitude_increase": _magnitude_increase,
    "movement": lambda w_i, w_f: (w_f - w_i).abs(),
    "large_final_same_sign": lambda w_i, w_f: _only_where(_same_sign(w_i, w_f), w_f.abs()),
    "large_final_diff_sign": lambda w_i, w_f: _only_where(~_same_sign(w_i, w_f), w_f.abs()),
    "magnitude_increase_same_sign": lambda w_i, w_f: _only_where(
        _same_sign(w_i, w_f), _magnitude_increase(w_i, w_f)
    ),
    "magnitude_increase_diff_sign": lambda w_i, w_f: _only_where(
        ~_same_sign(w_i, w_f), _magnitude_increase(w_i, w_f)
    ),
}


def check_criterion(name: str) -> None:
    """Raise a one-line TicketlabError naming the valid criteria if `name` is not one."""
    if name not in CRITERIA:
        raise TicketlabError(f"unknown mask criterion {name!r}: choose one of {', '.join(CRITERIA)}")


def is_percentile_rule(name: str) -> bool:
    """True for the two equal-percentile criteria, which have no per-weight score."""
    check_criterion(name)
    return name in PERCENTILE_RULES


def score(criterion: str, w_init: Tensor, w_final: Tensor, generator: torch.Generator) -> Tensor:
    """Per-weight score of one layer (higher = kept), same shape as the weights.

    `random` draws uniform values from `generator`; the other scores do not touch it.
    """
    check_criterion(criterion)
    if w_init.shape != w_final.shape:
        raise ValueError(f"w_init {tuple(w_init.shape)} and w_final {tuple(w_final.shape)} differ in shape")
    if criterion in PERCENTILE_RULES:
        raise ValueError(f"{criterion} is an equal-percentile rule, not a score: use pruning.percentile_rule_prune")
    if criterion == "random":
        # float64 so that ties (broken at random anyway) are vanishingly rare even in 4M-weight layers
        return torch.rand(w_final.shape, generator=generator, dtype=torch.float64)
    return SCORES[criterion](w_init, w_final)
