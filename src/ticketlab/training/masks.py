"""Mask learners (protocol §7's learned supermasks, and edge-popup): the kernels and biases stay frozen,
a per-kernel-weight parameter is trained instead, and the network of a step is kernel × mask.

Two `Learner`s for `train_cohort`:
- `BernoulliMasks` (Zhou et al.): a logit per kernel weight (initialised to a constant, 0 by
  default); every forward samples mask ~ Bernoulli(sigmoid(logit)) from the member's own seeded
  generator; the backward is straight-through to sigmoid(logit): dL/dlogit = dL/dmask ·
  sigmoid'(logit), with dL/dmask = dL/dW_eff · w. With DWR the step's network is w · mask · N/Σmask
  per layer (recomputed from each sampled mask); the scale N/Σmask is treated as a constant in the
  backward (no gradient through the count), so dL/dmask = dL/dW_eff · w · N/Σmask.
  SGD with momentum 0.9 (protocol §7 for FC: lr 100, batch 250).
- `EdgePopup` (Ramanujan et al. 2020): a score per kernel weight; the forward keeps exactly
  k = round(kept_fraction · N) weights per layer, those of largest |score|, ties broken by a seeded
  random order of the layer's weights fixed per member at the start; straight-through backward
  dL/dscore = dL/dW_eff · w · sign(score) (the mask's gradient passed to |score|, then |·|'s).
  SGD with momentum 0.9 and a cosine learning rate from lr to 0 over the run.

The gradient of the step's network W_eff comes from the weight trainer's own pass (a `CohortState`
whose kernels are overwritten by W_eff before each step and whose optimiser never runs): the same
per-member products, so the same bitwise guarantee. Every other operation (sigmoid, sampling, the
product with the mask, top-k, the optimiser) runs member by member on that member's own contiguous,
64-byte-aligned block (`FlatLayout`), the very calls the member gets when it trains alone, so a
member's bits do not depend on its cohort (tested on the CPU). Random draws come from per-member CPU
generators (`core.seeds.generator`) and are copied to the device, so CUDA runs draw the same numbers.

The loop evaluates `weights`, a property: the deterministic network of the current parameters
(Bernoulli: mask sigmoid(logit) > 0.5, with DWR for that mask where the variant has it; edge-popup:
the top-k mask). Biases stay those of the start (zero: protocol §2's init).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..core.seeds import generator
from ..nets.specs import NetSpec
from .schedule import MemberStart, Schedule
from .state import CohortState, FlatLayout

LEARNERS = ("bernoulli", "edge_popup")


@dataclass(frozen=True)
class MaskVariant:
    """One member of a mask cohort: its name (part of its generators' purpose, so a member draws the
    same numbers alone or in any cohort), its learning rate and its learner's own settings."""

    name: str
    learning_rate: float
    momentum: float = 0.9
    logit_init: float = 0.0  # Bernoulli: every logit's start value
    dwr: bool = False  # Bernoulli: dynamic weight rescaling from each sampled mask
    kept_fraction: float = 0.5  # edge-popup: fraction of each layer's kernel weights kept


def kept_count(size: int, kept_fraction: float) -> int:
    """Edge-popup's k for a layer of `size` kernel weights: round(fraction · size), at least 1."""
    return max(1, min(size, int(round(kept_fraction * size))))


class _MaskCohort:
    """What both learners share: frozen kernels, the trainable per-weight parameter in a flat buffer
    with its momentum, the step's network W_eff and its gradient through a `CohortState`."""

    def __init__(self, spec: NetSpec, starts: Sequence[MemberStart], variants: Sequence[MaskVariant], seed: int,
                 schedule: Schedule, device: torch.device):
        if len(starts) != len(variants):
            raise ValueError("one MaskVariant per member start")
        if any(s.masks is not None for s in starts):
            raise ValueError("a mask learner starts from dense kernels")
        self.spec, self.variants, self.seed, self.schedule = spec, list(variants), seed, schedule
        self.device = device = torch.device(device)
        self.k = k = len(starts)
        shapes = [tuple(w.shape) for w in starts[0].weights]
        self.layout = FlatLayout(shapes, k)
        n = self.n_layers = len(shapes)
        # the weight trainer's state, used only for its gradient pass; its kernels hold W_eff
        self.inner = CohortState(spec, list(starts), schedule.learning_rate, device)
        self.frozen_flat = torch.zeros(self.layout.total, device=device)
        self.frozen = self.layout.views(self.frozen_flat)
        for i in range(n):
            self.frozen[i].copy_(torch.stack([s.weights[i] for s in starts]))
        self.param_flat = torch.zeros(self.layout.total, device=device)
        self.param = self.layout.views(self.param_flat)
        self.grad_flat = torch.zeros(self.layout.total, device=device)
        self.grad = self.layout.views(self.grad_flat)
        self.momentum_flat = torch.zeros(self.layout.total, device=device)
        self.momentum = self.layout.views(self.momentum_flat)
        self.mask_flat = torch.zeros(self.layout.total, device=device)  # the step's mask (0/1 floats)
        self.mask = self.layout.views(self.mask_flat)
        self.eval_flat = torch.zeros(self.layout.total, device=device)
        self._eval = self.layout.views(self.eval_flat)
        self._eval_at = -1
        self.biases = self.inner.biases  # frozen: the inner optimiser never runs
        self.iteration = 0

    def blocks(self, views: list[torch.Tensor], m: int) -> list[torch.Tensor]:
        """Member m's contiguous aligned block of each layer."""
        return [v[m] for v in views]

    def learning_rate(self, m: int) -> float:
        return self.variants[m].learning_rate

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One step: sample/select each member's mask, W_eff's gradient, the parameter's, SGD momentum."""
        scales = [self.make_mask(m) for m in range(self.k)]
        for m in range(self.k):
            for i in range(self.n_layers):
                torch.mul(self.frozen[i][m], self.mask[i][m], out=self.inner.weights[i][m])
                if scales[m] is not None:
                    self.inner.weights[i][m].mul_(scales[m][i])
        self.inner.compute_grads(x, y)
        self.iteration += 1
        for m in range(self.k):
            v = self.variants[m]
            lr = self.learning_rate(m)
            for i in range(self.n_layers):
                g = self.grad[i][m]
                torch.mul(self.inner.grad_weights[i][m], self.frozen[i][m], out=g)
                if scales[m] is not None:
                    g.mul_(scales[m][i])
                self.param_gradient(m, i, g)
                buf = self.momentum[i][m]
                buf.mul_(v.momentum).add_(g)
                self.param[i][m].add_(buf, alpha=-lr)

    def make_mask(self, m: int) -> list[float] | None:
        """Write member m's mask of this step into `mask`; its per-layer DWR scales, or None."""
        raise NotImplementedError

    def param_gradient(self, m: int, i: int, g: torch.Tensor) -> None:
        """Turn dL/dmask (in g) into dL/dparameter, in place."""
        raise NotImplementedError

    def eval_mask(self, m: int, i: int) -> tuple[torch.Tensor, float]:
        """Member m's deterministic mask of layer i (bool) and the scale its network uses."""
        raise NotImplementedError

    @property
    def weights(self) -> list[torch.Tensor]:
        """The deterministic networks of the current parameters (what the loop evaluates and returns)."""
        if self._eval_at != self.iteration:
            with torch.no_grad():
                for m in range(self.k):
                    for i in range(self.n_layers):
                        mask, scale = self.eval_mask(m, i)
                        torch.mul(self.frozen[i][m], mask, out=self._eval[i][m])
                        if scale != 1.0:
                            self._eval[i][m].mul_(scale)
            self._eval_at = self.iteration
        return self._eval

    def member_parameters(self, m: int) -> list[torch.Tensor]:
        """Member m's trained per-weight parameters (logits or scores), CPU copies."""
        return [p[m].detach().to("cpu", copy=True) for p in self.param]


def dwr_scale(mask: torch.Tensor) -> float:
    """N / number of ones (1.0 for an empty mask, whose network is zero anyway)."""
    ones = int(mask.sum())
    return mask.numel() / ones if ones else 1.0


class BernoulliCohort(_MaskCohort):
    """Zhou et al.'s learned supermask (module docstring)."""

    def __init__(self, spec: NetSpec, starts: Sequence[MemberStart], variants: Sequence[MaskVariant], seed: int,
                 schedule: Schedule, device: torch.device):
        super().__init__(spec, starts, variants, seed, schedule, device)
        for m, v in enumerate(self.variants):
            for p in self.blocks(self.param, m):
                p.fill_(v.logit_init)
        self.sigmoid_flat = torch.zeros(self.layout.total, device=self.device)
        self.sigmoid = self.layout.views(self.sigmoid_flat)
        self.generators = [generator(seed, "bernoulli_sample", v.name) for v in self.variants]

    def make_mask(self, m: int) -> list[float] | None:
        scales = []
        for i in range(self.n_layers):
            s = self.sigmoid[i][m]
            torch.sigmoid(self.param[i][m], out=s)
            u = torch.rand(s.shape, generator=self.generators[m]).to(self.device)
            self.mask[i][m].copy_(u < s)
            scales.append(dwr_scale(self.mask[i][m]))
        return scales if self.variants[m].dwr else None

    def param_gradient(self, m: int, i: int, g: torch.Tensor) -> None:
        s = self.sigmoid[i][m]
        # sigmoid'(logit) = s (1 - s): autograd's sigmoid backward, on s
        g.mul_(torch.ops.aten.sigmoid_backward(torch.ones_like(s), s))

    def eval_mask(self, m: int, i: int) -> tuple[torch.Tensor, float]:
        mask = self.param[i][m] > 0.0  # sigmoid(logit) > 0.5 exactly where logit > 0
        return mask, (dwr_scale(mask) if self.variants[m].dwr else 1.0)


class EdgePopupCohort(_MaskCohort):
    """Ramanujan et al.'s edge-popup (module docstring)."""

    def __init__(self, spec: NetSpec, starts: Sequence[MemberStart], variants: Sequence[MaskVariant], seed: int,
                 schedule: Schedule, device: torch.device):
        super().__init__(spec, starts, variants, seed, schedule, device)
        self.counts = [[kept_count(layer.size, v.kept_fraction) for layer in spec.layers] for v in self.variants]
        self.tie_orders = []
        for m, v in enumerate(self.variants):
            g = generator(seed, "edge_popup", v.name)
            orders = []
            for i, layer in enumerate(spec.layers):
                # scores: Ramanujan et al.'s Kaiming-uniform init, U(-sqrt(6 / fan_in), sqrt(6 / fan_in))
                bound = math.sqrt(6.0 / layer.fan_in)
                p = self.param[i][m]
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1).mul_(bound))
                orders.append(torch.randperm(layer.size, generator=g).to(self.device))
            self.tie_orders.append(orders)

    def top_k(self, m: int, i: int) -> torch.Tensor:
        """Member m's layer-i mask: the k largest |score|, ties in the member's seeded order (bool)."""
        order = self.tie_orders[m][i]
        magnitude = self.param[i][m].reshape(-1).abs()[order]
        count, n = self.counts[m][i], magnitude.numel()
        keep = torch.zeros(n, dtype=torch.bool, device=self.device)
        if count > 0:
            # what a stable descending sort would keep, without sorting (a sort per layer per step was
            # most of a step): everything above the count-th largest value, then the first of its
            # ties in the seeded order
            threshold = torch.kthvalue(magnitude.cpu(), n - count + 1).values.to(self.device)
            keep = magnitude > threshold
            ties = (magnitude == threshold).nonzero().squeeze(1)
            keep[ties[: count - int(keep.sum())]] = True
        mask = torch.zeros(n, dtype=torch.bool, device=self.device)
        mask[order[keep]] = True
        return mask.view(self.param[i][m].shape)

    def make_mask(self, m: int) -> list[float] | None:
        for i in range(self.n_layers):
            self.mask[i][m].copy_(self.top_k(m, i))
        return None

    def learning_rate(self, m: int) -> float:
        t, total = self.iteration - 1, max(1, self.schedule.iterations)
        return 0.5 * self.variants[m].learning_rate * (1.0 + math.cos(math.pi * t / total))

    def param_gradient(self, m: int, i: int, g: torch.Tensor) -> None:
        g.mul_(torch.sign(self.param[i][m]))

    def eval_mask(self, m: int, i: int) -> tuple[torch.Tensor, float]:
        return self.top_k(m, i), 1.0


class MaskLearner:
    """A `Learner` for `train_cohort` training masks of the given variants (one per member start);
    keeps the cohort it built (`cohort`) so the caller can read the trained parameters after."""

    def __init__(self, learner: str, variants: Sequence[MaskVariant], seed: int):
        if learner not in LEARNERS:
            raise ValueError(f"unknown mask learner {learner!r}: one of {', '.join(LEARNERS)}")
        self.learner, self.variants, self.seed = learner, list(variants), seed
        self.cohort: _MaskCohort | None = None

    def __call__(self, spec: NetSpec, starts: Sequence[MemberStart], schedule: Schedule,
                 device: torch.device) -> _MaskCohort:
        cls = BernoulliCohort if self.learner == "bernoulli" else EdgePopupCohort
        self.cohort = cls(spec, starts, self.variants, self.seed, schedule, device)
        return self.cohort


def sampled_masks(logits: list[torch.Tensor], seed: int, purpose: str, samples: int) -> list[list[torch.Tensor]]:
    """`samples` independent Bernoulli(sigmoid(logit)) masks of one member (bool, per layer), each
    drawn from its own seeded generator: reproducible from (seed, purpose, sample index)."""
    out = []
    for j in range(samples):
        g = generator(seed, "mask_eval", purpose, j)
        out.append([torch.rand(l.shape, generator=g) < torch.sigmoid(l.cpu()) for l in logits])
    return out
