"""Layer-wise pruning (protocol §4, §7): the count rule, the per-layer prune step, and schedules.

Words: density = fraction of a layer's weights kept; sparsity = fraction pruned; a layer's `keep`
factor is the density of one iterative round relative to the weights that remain before it.
Masks are bool tensors, True = kept. Every function returns a new mask and never modifies its input.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

from .criteria import criterion as criterion_entry, score
from ..core.errors import TicketlabError
from ..nets.specs import NetSpec, get_net

PERCENTILE_TOLERANCE = 1e-4  # bisection stops once the interval of t (in percent) is this narrow


def prune_count(remaining: int, keep: float) -> int:
    """How many of `remaining` weights one iterative round prunes, exactly as the released code.

    The float64 detour matters: (1 - 0.8) * 100 = 19.999999999999996, so 235,200 weights lose
    47,039, not 47,040.
    """
    pct = (1 - keep) * 100
    return int(remaining * pct / 100)


def oneshot_prune_count(size: int, keep: float, p: int) -> int:
    """How many of a full layer's `size` weights one-shot pruning to density keep**p prunes (protocol §7)."""
    return int(size * ((1 - keep**p) * 100) / 100)


def _check_same_shape(*tensors: Tensor) -> None:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"tensors of one layer must share a shape, got {sorted(shapes)}")


def prune_lowest(scores: Tensor, mask: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """Prune the `n` lowest-scored kept weights; ties are broken at random by `generator`.

    Pruned weights (mask False) are never candidates, so they are never chosen again and never
    revived. Works on any shape.
    """
    _check_same_shape(scores, mask)
    flat_mask = mask.reshape(-1).bool()
    kept = torch.nonzero(flat_mask).squeeze(1)
    if not 0 <= n <= kept.numel():
        raise ValueError(f"cannot prune {n} of {kept.numel()} remaining weights")
    # A random permutation followed by a stable sort puts tied scores in random order.
    shuffled = kept[torch.randperm(kept.numel(), generator=generator)]
    order = torch.sort(scores.reshape(-1)[shuffled], stable=True).indices
    new_mask = flat_mask.clone()
    new_mask[shuffled[order[:n]]] = False
    return new_mask.reshape(mask.shape)


def _percentile(sorted_values: Tensor, t: float) -> Tensor:
    """numpy's default (linear) percentile of already-sorted values, t in [0, 100]."""
    pos = (sorted_values.numel() - 1) * t / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, sorted_values.numel() - 1)
    frac = pos - lo
    return sorted_values[lo] + frac * (sorted_values[hi] - sorted_values[lo])


def percentile_rule_prune(w_init: Tensor, w_final: Tensor, mask: Tensor, n: int, small: bool) -> Tensor:
    """The equal-percentile rule of large_init_large_final (small=False) / small_init_small_final.

    Among the remaining weights, keep one only if its a_i >= the t-th percentile of a_i AND its
    a_f >= the t-th percentile of a_f (a = |w|, or -|w| when `small`), both percentiles taken over
    the remaining weights. t is found by bisection on [0, 100] (tolerance 1e-4) to prune as close
    to `n` as possible (of two equally close counts, the larger); the count is a step function of
    t, so it may miss `n` by a few weights (accepted by protocol §5): callers record mask.sum() rather
    than assume it. Deterministic: it draws nothing.
    """
    _check_same_shape(w_init, w_final, mask)
    flat_mask = mask.reshape(-1).bool()
    m = int(flat_mask.sum())
    if not 0 <= n <= m:
        raise ValueError(f"cannot prune {n} of {m} remaining weights")
    if n == 0:
        return flat_mask.clone().reshape(mask.shape)
    sign = -1.0 if small else 1.0
    # float64 so that the interpolated thresholds compare exactly against the float32 weights
    a_i = sign * w_init.reshape(-1)[flat_mask].double().abs()
    a_f = sign * w_final.reshape(-1)[flat_mask].double().abs()
    sorted_i, sorted_f = torch.sort(a_i).values, torch.sort(a_f).values

    def keeps(t: float) -> Tensor:
        return (a_i >= _percentile(sorted_i, t)) & (a_f >= _percentile(sorted_f, t))

    # pruned(t) never decreases with t, and pruned(0) = 0 <= n.
    lo, hi = 0.0, 100.0
    best_t, best_miss, best_pruned = 0.0, n, 0
    while hi - lo >= PERCENTILE_TOLERANCE:
        t = (lo + hi) / 2.0
        pruned = m - int(keeps(t).sum())
        miss = abs(pruned - n)
        # Prefer the smaller miss; on a tie, the larger count, the side the released code's
        # bisection (which returns its upper bound) also lands on.
        if miss < best_miss or (miss == best_miss and pruned > best_pruned):
            best_t, best_miss, best_pruned = t, miss, pruned
        if pruned == n:
            break
        if pruned > n:
            hi = t
        else:
            lo = t
    new_flat = flat_mask.clone()
    new_flat[flat_mask] = keeps(best_t)
    return new_flat.reshape(mask.shape)


def prune_n(criterion: str, w_init: Tensor, w_final: Tensor, mask: Tensor, n: int, seed: int) -> Tensor:
    """Prune `n` of the remaining weights of one layer by `criterion` (behind `prune_layer`, and behind
    sweeps that take several pruning rounds' worth of pruning in one step). Tie-breaking and `random`
    draw from torch.Generator().manual_seed(seed)."""
    entry = criterion_entry(criterion)
    _check_same_shape(w_init, w_final, mask)
    if entry.is_percentile_rule:
        return percentile_rule_prune(w_init, w_final, mask, n, small=entry.percentile == "small")
    gen = torch.Generator().manual_seed(seed)
    # `random` draws its scores before the tie-breaking permutation, from the same generator.
    return prune_lowest(score(criterion, w_init, w_final, gen), mask, n, gen)


def global_prune_count(remaining: int, rate: float) -> int:
    """How many of `remaining` weights one round of global pruning prunes: ceil(rate x remaining), as
    OpenLTH's sparse_global (its pruning_fraction), with the rate read as the decimal it is written as
    (0.2 = 1/5), so that no float rounding lands a product just past an integer."""
    return math.ceil(Fraction(str(rate)) * remaining)


def prune_global(criterion: str, w_inits: list[Tensor], w_finals: list[Tensor], masks: list[Tensor], n: int,
                 seed: int) -> list[Tensor]:
    """Prune the `n` lowest-scored kept weights of several layers together: one ranking of all their
    remaining weights by `criterion` (the percentile rules: one percentile over all of them), ties
    broken at random by torch.Generator().manual_seed(seed), as `prune_n` on the layers laid end to end."""
    for w_i, w_f, m in zip(w_inits, w_finals, masks):
        _check_same_shape(w_i, w_f, m)
    flat = prune_n(criterion, torch.cat([w.reshape(-1) for w in w_inits]), torch.cat([w.reshape(-1) for w in w_finals]),
                   torch.cat([m.reshape(-1) for m in masks]), n, seed)
    return [part.reshape(m.shape) for part, m in zip(torch.split(flat, [m.numel() for m in masks]), masks)]


def oneshot_masks(criterion: str, w_init: Tensor, w_final: Tensor, counts: list[int], seed: int) -> list[Tensor]:
    """Masks of a full layer pruned by `criterion` at several prune counts at once.

    Each mask equals `prune_n(criterion, w_init, w_final, ones, n, seed)` for its n: the score order
    (ties included) does not depend on n, so score-based masks are prefixes of one ordering and
    nest. The percentile rules bisect per count.
    """
    entry = criterion_entry(criterion)
    _check_same_shape(w_init, w_final)
    full = torch.ones(w_final.shape, dtype=torch.bool)
    if entry.is_percentile_rule:
        small = entry.percentile == "small"
        return [percentile_rule_prune(w_init, w_final, full, n, small) for n in counts]
    gen = torch.Generator().manual_seed(seed)
    scores = score(criterion, w_init, w_final, gen).reshape(-1)
    shuffled = torch.randperm(scores.numel(), generator=gen)
    ranked = shuffled[torch.sort(scores[shuffled], stable=True).indices]  # lowest score first
    masks = []
    for n in counts:
        flat = torch.ones(scores.numel(), dtype=torch.bool)
        flat[ranked[:n]] = False
        masks.append(flat.reshape(w_final.shape))
    return masks


def prune_layer(criterion: str, w_init: Tensor, w_final: Tensor, mask: Tensor, keep: float, seed: int) -> Tensor:
    """One iterative round on one layer: prune prune_count(remaining, keep) weights by `criterion`.

    w_init = the previous run's start weights, w_final = its weights at the end of training, mask =
    its mask (True = kept). Tie-breaking and the `random` criterion draw from
    torch.Generator().manual_seed(seed). The percentile rules may miss the count by a few weights.
    """
    return prune_n(criterion, w_init, w_final, mask, prune_count(int(mask.sum()), keep), seed)


def prune_oneshot(criterion: str, w_init: Tensor, w_final: Tensor, keep: float, p: int, seed: int) -> Tensor:
    """One-shot pruning of a full layer to density about keep**p (protocol §7 supermasks)."""
    full = torch.ones(w_final.shape, dtype=torch.bool)
    return prune_n(criterion, w_init, w_final, full, oneshot_prune_count(w_final.numel(), keep, p), seed)


def pruning_schedule(net: str | NetSpec, rounds: int) -> list[list[int]]:
    """Remaining weights per layer after rounds 0..rounds of iterative pruning ([round][layer]), of a
    net by name (built for its default data set) or as built for a run's data set."""
    if rounds < 0:
        raise TicketlabError(f"rounds must be >= 0, got {rounds}")
    layers = (get_net(net) if isinstance(net, str) else net).layers
    remaining = [layer.size for layer in layers]
    schedule = [list(remaining)]
    for _ in range(rounds):
        remaining = [r - prune_count(r, layer.keep) for r, layer in zip(remaining, layers)]
        schedule.append(list(remaining))
    return schedule


def oneshot_schedule(net: str, ps: range) -> list[list[int]]:
    """Remaining weights per layer after one-shot pruning at each level p in `ps` ([p index][layer])."""
    layers = get_net(net).layers
    if any(p < 0 for p in ps):
        raise TicketlabError(f"one-shot levels must be >= 0, got {list(ps)}")
    return [[layer.size - oneshot_prune_count(layer.size, layer.keep, p) for layer in layers] for p in ps]
