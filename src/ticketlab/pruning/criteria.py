"""The mask criteria of SPEC §5: which weights a pruning round keeps, one table entry per criterion.

A criterion is either a *score* of (w_init, w_final) per weight of one layer (higher = kept; the
shared ranking in `ticketlab.pruning.prune` prunes the lowest), or, for `large_init_large_final` and
`small_init_small_final`, an *equal-percentile rule* on the two rankings at once, applied by
`ticketlab.pruning.prune.percentile_rule_prune`. Each entry also says whether it draws from the
pruning generator, its complementary criterion (drawn beside it, and, where the study says the two
straddle random, checked as a claim) and its plot colour. Adding a criterion is one `Criterion`
in `CRITERION_TABLE` (and its test); nothing else names the thirteen.

sign() is numpy's (sign(0) = 0), which torch's matches, so a weight that starts or ends at exactly 0
counts as having changed sign unless it is 0 at both ends.

This module does not import torch (the analysis layer reads the table without loading it): scores
use tensor methods, and `random` imports torch when it draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..core.errors import TicketlabError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

Score = Callable[["Tensor", "Tensor", "torch.Generator"], "Tensor"]


@dataclass(frozen=True)
class Criterion:
    """One mask criterion of SPEC §5."""

    name: str
    score: Score | None  # None: an equal-percentile rule (`percentile`)
    color: str  # its plot colour, the same in every figure
    complement: str | None = None  # its opposite, drawn in the same panel (this one first)
    straddles_random: bool = False  # the study's claim: this beats random, random beats the complement
    percentile: str | None = None  # "large" or "small": the equal-percentile rule on |w| or -|w|
    needs_generator: bool = False  # draws from the pruning generator beyond tie-breaking

    @property
    def is_percentile_rule(self) -> bool:
        return self.score is None


def _same_sign(w_init: Tensor, w_final: Tensor) -> Tensor:
    return w_init.sign() == w_final.sign()


def _magnitude_increase(w_init: Tensor, w_final: Tensor) -> Tensor:
    return w_final.abs() - w_init.abs()


def _only_where(keep: Tensor, values: Tensor) -> Tensor:
    # The excluded group scores 0, not -inf (SPEC §5): e.g. shrunk same-sign weights (negative
    # magnitude increase) go before every sign-flipped one, as in the released code.
    return values.masked_fill(~keep, 0)


def _random(w_init: Tensor, w_final: Tensor, generator: torch.Generator) -> Tensor:
    import torch

    # float64 so that ties (broken at random anyway) are vanishingly rare even in 4M-weight layers
    return torch.rand(w_final.shape, generator=generator, dtype=torch.float64)


# One hue per complementary pair, dark for the first and light (still legible on white) for the second.
CRITERION_TABLE: tuple[Criterion, ...] = (
    Criterion("large_final", lambda w_i, w_f, g: w_f.abs(), "#1f4e9c", "small_final", straddles_random=True),
    Criterion("small_final", lambda w_i, w_f, g: -w_f.abs(), "#74a9e0"),
    Criterion("large_init", lambda w_i, w_f, g: w_i.abs(), "#b35900", "small_init", straddles_random=True),
    Criterion("small_init", lambda w_i, w_f, g: -w_i.abs(), "#f5a048"),
    Criterion("magnitude_increase", lambda w_i, w_f, g: _magnitude_increase(w_i, w_f), "#1b7a3a", "movement"),
    Criterion("movement", lambda w_i, w_f, g: (w_f - w_i).abs(), "#76c987"),
    Criterion("random", _random, "#6e6e6e", needs_generator=True),
    Criterion("large_final_same_sign", lambda w_i, w_f, g: _only_where(_same_sign(w_i, w_f), w_f.abs()), "#9b1c1c",
              "large_final_diff_sign", straddles_random=True),
    Criterion("large_final_diff_sign", lambda w_i, w_f, g: _only_where(~_same_sign(w_i, w_f), w_f.abs()), "#ee7d7d"),
    Criterion("magnitude_increase_same_sign",
              lambda w_i, w_f, g: _only_where(_same_sign(w_i, w_f), _magnitude_increase(w_i, w_f)), "#5b2c83",
              "magnitude_increase_diff_sign", straddles_random=True),
    Criterion("magnitude_increase_diff_sign",
              lambda w_i, w_f, g: _only_where(~_same_sign(w_i, w_f), _magnitude_increase(w_i, w_f)), "#b596d8"),
    Criterion("large_init_large_final", None, "#6b4226", "small_init_small_final", straddles_random=True,
              percentile="large"),
    Criterion("small_init_small_final", None, "#c9a27e", percentile="small"),
)

CRITERIA_BY_NAME: dict[str, Criterion] = {c.name: c for c in CRITERION_TABLE}
# The names in table order, which is SPEC order: legends list the criteria as the paper does.
CRITERIA: tuple[str, ...] = tuple(CRITERIA_BY_NAME)


def criterion(name: str) -> Criterion:
    """The table entry of `name`, or a one-line TicketlabError naming the valid criteria."""
    try:
        return CRITERIA_BY_NAME[name]
    except KeyError:
        raise TicketlabError(f"unknown mask criterion {name!r}: choose one of {', '.join(CRITERIA)}") from None


def check_criterion(name: str) -> None:
    """Raise a one-line TicketlabError naming the valid criteria if `name` is not one."""
    criterion(name)


def is_percentile_rule(name: str) -> bool:
    """True for the equal-percentile criteria, which have no per-weight score."""
    return criterion(name).is_percentile_rule


def complementary_pairs() -> tuple[tuple[str, str], ...]:
    """(criterion, its complement) for every criterion that names one, in table order."""
    return tuple((c.name, c.complement) for c in CRITERION_TABLE if c.complement is not None)


def straddle_pairs() -> tuple[tuple[str, str], ...]:
    """The complementary pairs the study expects to straddle random (the good one first)."""
    return tuple((c.name, c.complement) for c in CRITERION_TABLE if c.complement is not None and c.straddles_random)


def criterion_colors() -> dict[str, str]:
    return {c.name: c.color for c in CRITERION_TABLE}


def score(criterion_name: str, w_init: Tensor, w_final: Tensor, generator: torch.Generator) -> Tensor:
    """Per-weight score of one layer (higher = kept), same shape as the weights.

    `random` draws uniform values from `generator`; the other scores do not touch it.
    """
    entry = criterion(criterion_name)
    if w_init.shape != w_final.shape:
        raise ValueError(f"w_init {tuple(w_init.shape)} and w_final {tuple(w_final.shape)} differ in shape")
    if entry.score is None:
        raise ValueError(f"{criterion_name} is an equal-percentile rule, not a score: use pruning.percentile_rule_prune")
    return entry.score(w_init, w_final, generator)
