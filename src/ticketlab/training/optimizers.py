"""Optimisers beside TF1 Adam for a cohort's flat buffers (`state.Optimizer`): torch's Adam and SGD,
and `make_optimizer`, which builds the one a run names (`recipes.OPTIMIZER_TABLE`).

Each computes, on every piece it is given, the very operations of torch.optim's single-tensor code
(what `torch.optim.Adam()` and `torch.optim.SGD()` run on CPU tensors), through foreach calls, which
on the CPU apply the same per-tensor operation to each piece: a masked member's kept weights get
torch.optim's numbers step for step (tested). torch's elementwise kernels split a tensor across
threads by its length, so the state hands these optimisers each member's block of each tensor as
its own piece (`whole_buffer = False`): a member's update is the call it gets alone.

Pruned weights never move, held non-zero values too: Adam holds them by an infinite second moment
(their update m / inf is 0, weight decay included, as TF1 Adam's); SGD multiplies the decayed
gradient by the member's mask before its momentum buffer sees it, so buffer and update stay 0.
"""
from __future__ import annotations

import importlib
import math
from typing import TYPE_CHECKING

import torch

from .recipes import optimizer_entry

if TYPE_CHECKING:
    from .schedule import Recipe
    from .state import Optimizer


class TorchAdam:
    """torch.optim.Adam (betas 0.9, 0.999, eps 1e-8, L2 weight decay added to the gradient)."""

    slots = ("exp_avg", "exp_avg_sq")
    whole_buffer = False
    sparse_kernels = False
    betas, eps = (0.9, 0.999), 1e-8

    def __init__(self, learning_rate: float, weight_decay: float = 0.0):
        self.learning_rate, self.weight_decay = learning_rate, weight_decay

    def hold(self, slots: dict[str, list[torch.Tensor]], member: int, masks: list[torch.Tensor]) -> bool:
        for v, mask in zip(slots["exp_avg_sq"], masks):
            v[member].masked_fill_(mask.logical_not(), math.inf)
        return True

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
             iteration: int, learning_rate: float) -> None:
        exp_avgs, exp_avg_sqs = slots
        beta1, beta2 = self.betas
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        step = float(iteration)  # torch keeps its step count as a float tensor
        step_size = learning_rate / (1 - beta1**step)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, (1 - beta2**step) ** 0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)


class SGD:
    """torch.optim.SGD (dampening 0): momentum, Nesterov and L2 weight decay as torch computes them."""

    slots = ("momentum_buffer", "pruned")  # pruned: 1.0 where a member's weight is held
    whole_buffer = False
    sparse_kernels = False

    def __init__(self, learning_rate: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        self.learning_rate, self.momentum, self.nesterov, self.weight_decay = learning_rate, momentum, nesterov, weight_decay
        self._masked = False

    def hold(self, slots: dict[str, list[torch.Tensor]], member: int, masks: list[torch.Tensor]) -> bool:
        for pruned, mask in zip(slots["pruned"], masks):
            pruned[member].copy_(mask.logical_not())
        self._masked = True
        return True

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
             iteration: int, learning_rate: float) -> None:
        bufs, pruned = slots
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self._masked:  # d - d * pruned: d where kept, exactly 0 where held
            torch._foreach_addcmul_(grads, grads, pruned, value=-1)
        if self.momentum != 0:
            if iteration == 1:  # torch starts the buffer as a copy of the first gradient
                torch._foreach_copy_(bufs, grads)
            else:
                torch._foreach_mul_(bufs, self.momentum)
                torch._foreach_add_(bufs, grads, alpha=1)
            grads = torch._foreach_add(grads, bufs, alpha=self.momentum) if self.nesterov else bufs
        torch._foreach_add_(params, grads, alpha=-learning_rate)


def make_optimizer(recipe: "Recipe", learning_rate: float) -> "Optimizer":
    """The optimiser a run's recipe names, built from its table entry."""
    entry = optimizer_entry(recipe.optimizer)
    module, name = entry.target.split(":")
    cls = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    return cls(learning_rate, **{field: getattr(recipe, field) for field in entry.takes})
