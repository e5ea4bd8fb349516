"""The mask criteria of protocol §5: which weights a pruning round keeps, one table entry per criterion.

A criterion is either a *score* of (w_init, w_final) per weight of one layer (higher = kept; the
shared ranking in `ticketlab.pruning.prune` prunes the lowest), or, for `large_init_large_final` and
`small_init_small_final`, an *equal-percentile rule* on the two rankings at once, applied by
`ticketlab.pruning.prune.percentile_rule_prune`. Each entry also says whether it draws from the
pruning generator, its complementary criterion (drawn beside it, and, where the study says the two
straddle random, checked as a claim) and its plot colour. Adding a criterion is one `Criterion`
in `CRITERION_TABLE` (and its test): sweep files, presets' `criteria = "all"`, figures and claims
read the table. A criterion of one's own, beside the paper's, can also be registered at run time
(`register_criterion`); "all" stays the table's, so registering one renames no preset's runs.

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
    """One mask criterion of protocol §5."""

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
    # The excluded group scores 0, not -inf (protocol §5): e.g. shrunk same-sign weights (negative
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

# Protocol §5's criteria, in the paper's order (legends list them as the paper does).
CRITERIA: tuple[str, ...] = tuple(c.name for c in CRITERION_TABLE)
# The criteria in use: the table's, and any a user (or a test) registers beside them.
_REGISTRY: dict[str, Criterion] = {c.name: c for c in CRITERION_TABLE}


def register_criterion(entry: Criterion) -> None:
    """Add a criterion beside the table's (a new name; its complement, if any, must be known by the
    time it is used)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"mask criterion {entry.name!r} is registered twice")
    if (entry.score is None) == (entry.percentile is None):
        raise ValueError(f"mask criterion {entry.name!r} needs exactly one of a score and a percentile rule")
    if entry.percentile not in (None, "large", "small"):
        raise ValueError(f"mask criterion {entry.name!r}: percentile is 'large' or 'small', not {entry.percentile!r}")
    _REGISTRY[entry.name] = entry


def unregister_criterion(name: str) -> None:
    """Take a registered criterion out again (the table's thirteen cannot be taken out)."""
    if name in CRITERIA:
        raise ValueError(f"{name!r} is one of the paper's criteria, which stay")
    _REGISTRY.pop(name, None)


def criterion_names() -> tuple[str, ...]:
    """Every criterion in use: the table's in the paper's order, then registered ones."""
    return tuple(_REGISTRY)


def criterion(name: str) -> Criterion:
    """The entry of `name`, or a one-line TicketlabError naming the valid criteria."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TicketlabError(f"unknown mask criterion {name!r}: choose one of {', '.join(_REGISTRY)}") from None


def check_criterion(name: str) -> None:
    """Raise a one-line TicketlabError naming the valid criteria if `name` is not one."""
    criterion(name)


def is_percentile_rule(name: str) -> bool:
    """True for the equal-percentile criteria, which have no per-weight score."""
    return criterion(name).is_percentile_rule


def complementary_pairs() -> tuple[tuple[str, str], ...]:
    """(criterion, its complement) for every criterion that names one, in table order."""
    return tuple((c.name, c.complement) for c in _REGISTRY.values() if c.complement is not None)


def straddle_pairs() -> tuple[tuple[str, str], ...]:
    """The complementary pairs the study expects to straddle random (the good one first)."""
    return tuple((c.name, c.complement) for c in _REGISTRY.values() if c.complement is not None and c.straddles_random)


def criterion_colors() -> dict[str, str]:
    """Each criterion's plot colour."""
    return {c.name: c.color for c in _REGISTRY.values()}


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
