"""Mask-1 and mask-0 actions of SPEC §6: the start tensor of the next pruning round's run.

Mask-1 actions give the start values of kept weights; mask-0 actions give the values that pruned
weights hold, fixed, through training. The trainer holds every pruned weight at its start value,
so one tensor (from `start_weights`) and the mask define the next run.

Our start tensors hold the mask-0 value (often 0) at pruned positions, whereas the released code
kept the whole unmasked layer and masked it in the forward pass. Permuting our tensor over the
whole layer would therefore draw more and more zeros into kept positions round after round. In
the released code the unmasked layer that `reinit`, `signed_reinit`, `constant` and
`signed_constant` start from is, at every round, a random permutation of the dense init (with its
signs, for the signed forms), so these four draw from the dense init: the same distribution, with
no holes. `rewind`, `reshuffle` and `signed_reshuffle` only read kept positions, which have been
kept since the dense run, so they use W0 = the previous run's start weights as the SPEC says.

Combinations: every mask-1 action may be paired with every mask-0 action. Held values never
depend on the mask-1 action (they come from the previous run's w_init / w_final), the rescaled
forms scale kept weights only, and Variant 2's zeroing of kept weights is applied last, on top of
whatever the mask-1 action gave.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..core.errors import TicketlabError

_BASE_MASK1 = ("reinit", "signed_reinit", "reshuffle", "signed_reshuffle", "constant", "signed_constant")
MASK1_ACTIONS: tuple[str, ...] = ("rewind",) + _BASE_MASK1 + tuple(f"{a}_rescaled" for a in _BASE_MASK1)

MASK0_ACTIONS: tuple[str, ...] = (
    "zero",
    "freeze_init",
    "freeze_init_zero_mask",  # Variant 1
    "freeze_init_zero_all",  # Variant 2
    "freeze_init_zero_random",  # control for Variant 1
)

RESCALED_SUFFIX = "_rescaled"


def check_mask1(name: str) -> None:
    """Raise a one-line TicketlabError naming the valid mask-1 actions if `name` is not one."""
    if name not in MASK1_ACTIONS:
        raise TicketlabError(f"unknown mask-1 action {name!r}: choose one of {', '.join(MASK1_ACTIONS)}")


def check_mask0(name: str) -> None:
    """Raise a one-line TicketlabError naming the valid mask-0 actions if `name` is not one."""
    if name not in MASK0_ACTIONS:
        raise TicketlabError(f"unknown mask-0 action {name!r}: choose one of {', '.join(MASK0_ACTIONS)}")


def _perm(t: Tensor, generator: torch.Generator) -> Tensor:
    """The values of `t` in a uniformly random order, same shape."""
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


def mask1_start(action: str, w0: Tensor, dense_init: Tensor, mask: Tensor, generator: torch.Generator) -> Tensor:
    """Start values of the kept weights under a mask-1 action, as a full-shape tensor.

    w0 = the previous run's start weights, dense_init = the dense run's init; values at pruned
    positions are meaningless (the caller overwrites them). Random draws come from `generator`.
    """
    check_mask1(action)
    if not w0.shape == dense_init.shape == mask.shape:
        raise ValueError(f"w0 {tuple(w0.shape)}, dense_init {tuple(dense_init.shape)}, mask {tuple(mask.shape)} differ")
    mask = mask.bool()
    if action == "rewind":
        return w0.clone()
    rescaled = action.endswith(RESCALED_SUFFIX)
    base = action.removesuffix(RESCALED_SUFFIX)
    # Kept-position actions read W0 (or the dense init when rescaled); whole-layer ones read the
    # dense init always (see the module docstring for why).
    src = dense_init if rescaled else w0
    if base == "reinit":
        out = _perm(dense_init, generator)
    elif base == "signed_reinit":
        out = _perm(dense_init, generator).abs() * torch.sign(dense_init)
    elif base == "constant":
        out = _std(dense_init) * _perm(torch.sign(dense_init), generator)
    elif base == "signed_constant":
        out = _std(dense_init) * torch.sign(dense_init)
    elif base == "reshuffle":
        out = src.clone()
        out[mask] = _perm(src[mask], generator)
    else:  # signed_reshuffle
        out = src.clone()
        out[mask] = _perm(src[mask], generator).abs() * torch.sign(src[mask])
    if rescaled:
        out = out * density_multiplier(mask)
    return out.to(w0.dtype)


def moved_toward_zero(w_init: Tensor, w_final: Tensor) -> Tensor:
    """|w_f| < |w_i| (strict, as the released code's init > final test)."""
    return w_final.abs() < w_init.abs()


def held_values(mask0: str, w_init: Tensor, w_final: Tensor, mask: Tensor, generator: torch.Generator) -> Tensor:
    """The fixed values of pruned weights under a mask-0 action, full shape (kept positions: w_init).

    Variant 2 is the same as Variant 1 here: its extra zeroing of kept weights is done by
    `start_weights`.
    """
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
    check_mask1(mask1)
    check_mask0(mask0)
    if not w0.shape == w_init.shape == w_final.shape == dense_init.shape == mask.shape:
        raise ValueError("w0, w_init, w_final, dense_init and mask must share one shape")
    mask = mask.bool()
    kept = mask1_start(mask1, w0, dense_init, mask, generator)
    out = torch.where(mask, kept, held_values(mask0, w_init, w_final, mask, generator))
    if mask0 == "freeze_init_zero_all":
        # Variant 2: kept weights that moved toward zero also start at 0.
        out = torch.where(mask & moved_toward_zero(w_init, w_final), torch.zeros_like(out), out)
    return out
