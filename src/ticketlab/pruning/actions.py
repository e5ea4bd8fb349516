"""Mask-1 and mask-0 actions of protocol §6: the start tensor of the next pruning round's run.

Mask-1 actions give the start values of kept weights; mask-0 actions give the values that pruned
weights hold, fixed, through training. The trainer holds every pruned weight at its start value,
so one tensor (from `start_weights`) and the mask define the next run.

The mask-1 actions are a table (`MASK1_TABLE`), as the criteria are: each entry gives the kept
weights' start values from a `Mask1Context` (the previous run's start and final weights, the
dense run's init, the mask, a generator), its label and colour, and whether it rewinds (its rounds
may start from a later step of the dense run). Sweep files, the chain runner and the figures read
the table. This module loads torch only when an action runs.

Our start tensors hold the mask-0 value (often 0) at pruned positions, whereas the released code
kept the whole unmasked layer and masked it in the forward pass. Permuting our tensor over the
whole layer would therefore draw more and more zeros into kept positions round after round. In
the released code the unmasked layer that `reinit`, `signed_reinit`, `constant` and
`signed_constant` start from is, at every round, a random permutation of the dense init (with its
signs, for the signed forms), so these four draw from the dense init: the same distribution, with
no holes. `rewind`, `reshuffle` and `signed_reshuffle` only read kept positions, which have been
kept since the dense run, so they use W0 = the previous run's start weights as the protocol says.

Combinations: every mask-1 action may be paired with every mask-0 action. Held values never
depend on the mask-1 action (they come from the previous run's w_init / w_final), the rescaled
forms scale kept weights only, and Variant 2's zeroing of kept weights is applied last, on top of
whatever the mask-1 action gave.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from ..core.errors import TicketlabError

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class Mask1Context:
    """What a mask-1 action reads for one layer of one chain's round (every tensor of the layer's shape).

    w0: the previous run's start weights, the values the kept weights were trained from (for a
    chain's first pruned round, the dense run's weights at the chain's rewind iteration: its init
    unless the chain rewinds later); init: the dense run's init; final: the previous run's final
    weights; mask: this round's mask (True = kept); generator: the round's action generator, for
    actions that draw. An action returns a full-shape tensor whose pruned positions the caller
    overwrites with the mask-0 action's held values."""

    w0: Tensor
    init: Tensor
    final: Tensor
    mask: Tensor
    generator: torch.Generator


Start = Callable[[Mask1Context], "Tensor"]


@dataclass(frozen=True)
class Mask1Action:
    """One mask-1 action of protocol §6: where the kept weights of a round start.

    `start` gives the start values from the context; `label` and `color` are its name and colour
    in every figure (rescaled forms: dashed, triangle markers). `rewinds`: its kept weights are
    the chain's weights at a step of the dense run (the rewind iteration, 0 = init), and its rounds
    train the rest of the schedule from that step, so a sweep may set `rewind_iteration` for it."""

    name: str
    start: Start
    label: str
    color: str
    rescaled: bool = False
    rewinds: bool = False


def _perm(t: Tensor, generator: torch.Generator) -> Tensor:
    """The values of `t` in a uniformly random order, same shape."""
    import torch

    flat = t.reshape(-1)
    return flat[torch.randperm(flat.numel(), generator=generator)].reshape(t.shape)


def _std(t: Tensor) -> float:
    """Population std (ddof=0, like np.std) of the whole tensor, in float64."""
    return float(t.double().std(correction=0))


def density_multiplier(mask: Tensor) -> float:
    """size(M) / sum(M): the static dynamic-weight-rescaling factor of one layer (1 / density)."""
    kept = int(mask.sum())
    if kept == 0:
        raise ValueError("cannot rescale a layer whose mask keeps no weight")
    return mask.numel() / kept


# Kept-position actions read W0; whole-layer ones read the dense init always (see the module
# docstring for why).


def _rewind(c: Mask1Context) -> Tensor:
    # w0: the weights the chain rewinds to, the dense run's at the rewind iteration (its init at 0;
    # Frankle et al.'s late rewinding beyond), as the chain's earlier rounds left them
    return c.w0.clone()


def _reinit(c: Mask1Context) -> Tensor:
    return _perm(c.init, c.generator)


def _signed_reinit(c: Mask1Context) -> Tensor:
    import torch

    return _perm(c.init, c.generator).abs() * torch.sign(c.init)


def _reshuffle(c: Mask1Context) -> Tensor:
    out = c.w0.clone()
    out[c.mask] = _perm(c.w0[c.mask], c.generator)
    return out


def _signed_reshuffle(c: Mask1Context) -> Tensor:
    import torch

    out = c.w0.clone()
    out[c.mask] = _perm(c.w0[c.mask], c.generator).abs() * torch.sign(c.w0[c.mask])
    return out


def _constant(c: Mask1Context) -> Tensor:
    import torch

    return _std(c.init) * _perm(torch.sign(c.init), c.generator)


def _signed_constant(c: Mask1Context) -> Tensor:
    import torch

    return _std(c.init) * torch.sign(c.init)


def rescaled(entry: Mask1Action) -> Mask1Action:
    """The `_rescaled` form of an action: it starts from the dense init each round (its W0 is the
    init) and multiplies the kept weights by size / sum(M) (protocol §6)."""

    def start(c: Mask1Context) -> Tensor:
        return entry.start(replace(c, w0=c.init)) * density_multiplier(c.mask)

    return Mask1Action(f"{entry.name}{RESCALED_SUFFIX}", start, f"{entry.label} (rescaled)", entry.color, rescaled=True)


RESCALED_SUFFIX = "_rescaled"
_RANDOMISED: tuple[Mask1Action, ...] = (
    Mask1Action("reinit", _reinit, "random reinit", "#ff7f0e"),
    Mask1Action("signed_reinit", _signed_reinit, "reinit, sign kept", "#2ca02c"),
    Mask1Action("reshuffle", _reshuffle, "reshuffle", "#d62728"),
    Mask1Action("signed_reshuffle", _signed_reshuffle, "reshuffle, sign kept", "#9467bd"),
    Mask1Action("constant", _constant, "constant", "#8c564b"),
    Mask1Action("signed_constant", _signed_constant, "constant, sign kept", "#e377c2"),
)
# Protocol §6's mask-1 actions, in the paper's order (legends list them so). Adding one is one entry
# here and its test: sweep files, the figures' labels, colours and order read the table.
MASK1_TABLE: tuple[Mask1Action, ...] = (
    Mask1Action("rewind", _rewind, "rewind (lottery ticket)", "#1f77b4", rewinds=True),
    *_RANDOMISED,
    *(rescaled(a) for a in _RANDOMISED),
)
MASK1_ACTIONS: tuple[str, ...] = tuple(a.name for a in MASK1_TABLE)
_MASK1: dict[str, Mask1Action] = {a.name: a for a in MASK1_TABLE}

MASK0_ACTIONS: tuple[str, ...] = (
    "zero",
    "freeze_init",
    "freeze_init_zero_mask",  # Variant 1
    "freeze_init_zero_all",  # Variant 2
    "freeze_init_zero_random",  # control for Variant 1
)


def register_mask1_action(entry: Mask1Action) -> None:
    """Add a mask-1 action beside the table's (a new name), for one's own experiments and tests;
    presets run the table's."""
    if entry.name in _MASK1:
        raise ValueError(f"mask-1 action {entry.name!r} is registered twice")
    _MASK1[entry.name] = entry


def unregister_mask1_action(name: str) -> None:
    """Take a registered mask-1 action out again (the table's cannot be taken out)."""
    if name in MASK1_ACTIONS:
        raise ValueError(f"{name!r} is one of the paper's mask-1 actions, which stay")
    _MASK1.pop(name, None)


def mask1_names() -> tuple[str, ...]:
    """Every mask-1 action in use: the table's in the paper's order, then registered ones."""
    return tuple(_MASK1)


def mask1_action(name: str) -> Mask1Action:
    """The entry of `name`, or a one-line TicketlabError naming the valid mask-1 actions."""
    try:
        return _MASK1[name]
    except KeyError:
        raise TicketlabError(f"unknown mask-1 action {name!r}: choose one of {', '.join(_MASK1)}") from None


def check_mask1(name: str) -> None:
    """Raise a one-line TicketlabError naming the valid mask-1 actions if `name` is not one."""
    mask1_action(name)


def check_mask0(name: str) -> None:
    """Raise a one-line TicketlabError naming the valid mask-0 actions if `name` is not one."""
    if name not in MASK0_ACTIONS:
        raise TicketlabError(f"unknown mask-0 action {name!r}: choose one of {', '.join(MASK0_ACTIONS)}")


def kept_start(action: str, context: Mask1Context) -> Tensor:
    """Start values of the kept weights under a mask-1 action, as a full-shape tensor of w0's dtype
    (values at pruned positions are meaningless: the caller overwrites them)."""
    entry = mask1_action(action)
    c = context
    if not c.w0.shape == c.init.shape == c.final.shape == c.mask.shape:
        raise ValueError(f"w0 {tuple(c.w0.shape)}, init {tuple(c.init.shape)}, final {tuple(c.final.shape)} and "
                         f"mask {tuple(c.mask.shape)} differ")
    return entry.start(replace(c, mask=c.mask.bool())).to(c.w0.dtype)


def mask1_start(action: str, w0: Tensor, dense_init: Tensor, mask: Tensor, generator: torch.Generator) -> Tensor:
    """`kept_start` from its parts (w0 = the previous run's start weights, dense_init = the dense run's
    init), for actions that do not read the final weights."""
    return kept_start(action, Mask1Context(w0, dense_init, w0, mask, generator))


def moved_toward_zero(w_init: Tensor, w_final: Tensor) -> Tensor:
    """|w_f| < |w_i| (strict, as the released code's init > final test)."""
    return w_final.abs() < w_init.abs()


def held_values(mask0: str, w_init: Tensor, w_final: Tensor, mask: Tensor, generator: torch.Generator) -> Tensor:
    """The fixed values of pruned weights under a mask-0 action, full shape (kept positions: w_init).

    Variant 2 is the same as Variant 1 here: its extra zeroing of kept weights is done by
    `start_weights`.
    """
    import torch

    check_mask0(mask0)
    mask = mask.bool()
    if mask0 == "zero":
        return torch.zeros_like(w_init)
    held = w_init.clone()
    shrank = moved_toward_zero(w_init, w_final)
    if mask0 in ("freeze_init_zero_mask", "freeze_init_zero_all"):
        held[~mask & shrank] = 0
    elif mask0 == "freeze_init_zero_random":
        # As many zeros as Variant 1 would add, at random pruned positions. Drawn among pruned
        # weights whose held value is non-zero, so that in iterative use a weight zeroed in an
        # earlier round does not absorb one of this round's zeros.
        n_zero = int((~mask & shrank).sum())
        candidates = torch.nonzero((~mask & (w_init != 0)).reshape(-1)).squeeze(1)
        chosen = candidates[torch.randperm(candidates.numel(), generator=generator)[:n_zero]]
        flat = held.reshape(-1)
        flat[chosen] = 0
        held = flat.reshape(w_init.shape)
    return held


def start_weights(
    mask1: str,
    mask0: str,
    w0: Tensor,
    w_init: Tensor,
    w_final: Tensor,
    dense_init: Tensor,
    mask: Tensor,
    generator: torch.Generator,
) -> Tensor:
    """The full start tensor of the next run for one layer.

    Kept positions (mask True) get the mask-1 action's values, pruned ones the mask-0 action's held
    value. w0 = the values the mask-1 action starts from (normally the previous run's start weights,
    the same tensor as w_init); w_init / w_final = the previous run's start / final weights;
    dense_init = the dense run's init. The mask-1 action draws from `generator` first, then the
    random control.
    """
    import torch

    check_mask1(mask1)
    check_mask0(mask0)
    if not w0.shape == w_init.shape == w_final.shape == dense_init.shape == mask.shape:
        raise ValueError("w0, w_init, w_final, dense_init and mask must share one shape")
    mask = mask.bool()
    kept = kept_start(mask1, Mask1Context(w0, dense_init, w_final, mask, generator))
    out = torch.where(mask, kept, held_values(mask0, w_init, w_final, mask, generator))
    if mask0 == "freeze_init_zero_all":
        # Variant 2: kept weights that moved toward zero also start at 0.
        out = torch.where(mask & moved_toward_zero(w_init, w_final), torch.zeros_like(out), out)
    return out


def round_start(mask1: str, mask0: str, context: Mask1Context) -> Tensor:
    """The full start tensor of a chain's round for one layer: `start_weights` with the previous run
    of the context (its start weights w0, which the mask-0 actions hold and test, and its final ones)."""
    c = context
    return start_weights(mask1, mask0, c.w0, c.w0, c.final, c.init, c.mask, c.generator)
