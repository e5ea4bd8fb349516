"""The cohort trainer: K networks of one architecture and one seed trained in lockstep (SPEC §3).

All members see the same batches (the batch order depends on the seed only). Each member has its
own start weights, mask and Adam state. A pruned weight holds its start value exactly: its gradient
is zeroed, so its Adam moments stay 0 and its update is 0 / (0 + eps) = 0 at every step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .data import Dataset
from .forward import forward, member_losses
from .nets import NetSpec
from .seeds import generator

ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
TEST_EVAL_POLICIES = ("all", "on_best")


@dataclass(frozen=True)
class Schedule:
    """What to train for and when to evaluate."""

    iterations: int
    learning_rate: float
    batch_size: int = 60
    eval_every: int = 100
    test_eval: str = "all"  # "all": every point; "on_best": where some val loss hits a new minimum, and at the end
    eval_train: bool = False
    stop_at_val_accuracy: float | None = None  # evaluate val after every step; stop once every member reaches it
    snapshot_iterations: tuple[int, ...] = ()  # keep the weights after these many steps
    snapshot_val_accuracies: tuple[float, ...] = ()  # keep the weights at the first step with val accuracy >= each


@dataclass
class MemberStart:
    """One member's start kernels (pruned positions already hold their fixed value) and bool masks."""

    weights: list[torch.Tensor]
    masks: list[torch.Tensor] | None = None  # None: dense


@dataclass
class MemberResult:
    """What one member's training produced (tensors on the CPU)."""

    history: dict[str, list[float]]
    final_weights: list[torch.Tensor]
    final_biases: list[torch.Tensor]
    snapshots: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = field(default_factory=dict)
    snapshot_iterations: dict[str, int] = field(default_factory=dict)

    @property
    def early_stop_index(self) -> int:
        """Index of the first evaluation point with the lowest val loss."""
        losses = self.history["val_loss"]
        return min(range(len(losses)), key=lambda i: (losses[i], i))

    def summary(self) -> dict[str, float | int]:
        h, i = self.history, self.early_stop_index
        return {
            "early_stop_iteration": int(h["iteration"][i]),
            "test_accuracy_at_early_stop": h["test_accuracy"][i],
            "val_loss_at_early_stop": h["val_loss"][i],
            "val_accuracy_at_early_stop": h["val_accuracy"][i],
            "test_accuracy_at_init": h["test_accuracy"][0],
            "final_test_accuracy": h["test_accuracy"][-1],
            "final_val_loss": h["val_loss"][-1],
            "iterations": int(h["iteration"][-1]),
        }


Progress = Callable[[int, int, list[float]], None]


def eval_chunk(spec: NetSpec) -> int:
    """Examples per evaluation batch. Independent of the cohort size: a member's loss is a sum
    over chunks, and a different chunking would round differently."""
    return 250 if spec.is_conv else 2500


@torch.no_grad()
def evaluate(
    spec: NetSpec, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> tuple[list[float], list[float]]:
    """Mean cross-entropy and accuracy of every member over a whole set."""
    k = weights[0].shape[0]
    loss = torch.zeros(k, dtype=torch.float64, device=x.device)
    correct = torch.zeros(k, dtype=torch.int64, device=x.device)
    chunk = eval_chunk(spec)
    for start in range(0, len(x), chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        logits = forward(spec, weights, biases, xb)
        loss += member_losses(logits, yb).sum(1, dtype=torch.float64)
        correct += (logits.argmax(2) == yb).sum(1)
    n = len(x)
    return (loss / n).tolist(), (correct.double() / n).tolist()


def _adam_step(params, grads, exp_avgs, exp_avg_sqs, step: int, lr: float) -> None:
    # TF1's AdamOptimizer form (the original code): eps is added to sqrt(v), lr carries the bias correction.
    lr_t = lr * math.sqrt(1 - ADAM_BETA2**step) / (1 - ADAM_BETA1**step)
    torch._foreach_mul_(exp_avgs, ADAM_BETA1)
    torch._foreach_add_(exp_avgs, grads, alpha=1 - ADAM_BETA1)
    torch._foreach_mul_(exp_avg_sqs, ADAM_BETA2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - ADAM_BETA2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denom, ADAM_EPS)
    torch._foreach_addcdiv_(params, exp_avgs, denom, value=-lr_t)


def _split(stacked: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Per-member CPU copies of stacked per-layer tensors."""
    k = stacked[0].shape[0]
    return [[t[m].detach().to("cpu", copy=True) for t in stacked] for m in range(k)]


def train_cohort(
    spec: NetSpec,
    data: Dataset,
    starts: list[MemberStart],
    schedule: Schedule,
    seed: int,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> list[MemberResult]:
    """Train every member with SPEC §3's schedule; return per-member histories and weights."""
    device = torch.device(device)
    k = len(starts)
    n_layers = len(spec.layers)
    weights = [torch.stack([s.weights[i] for s in starts]).to(device).requires_grad_() for i in range(n_layers)]
    biases = [torch.zeros(k, layer.out_channels, device=device, requires_grad=True) for layer in spec.layers]
    grad_masks: list[torch.Tensor | None] = []
    for i in range(n_layers):
        if all(s.masks is None for s in starts):
            grad_masks.append(None)
        else:
            ones = torch.ones(spec.layers[i].weight_shape, dtype=torch.bool)
            grad_masks.append(
                torch.stack([ones if s.masks is None else s.masks[i] for s in starts]).to(device, torch.float32)
            )
    params = weights + biases
    exp_avgs = [torch.zeros_like(p) for p in params]
    exp_avg_sqs = [torch.zeros_like(p) for p in params]

    data = data.to(device)
    n_train = len(data.train_x)
    steps_per_epoch = n_train // schedule.batch_size
    if steps_per_epoch == 0:
        raise ValueError("batch size exceeds the training set")
    batch_gen = generator(seed, "batch_order")

    history: dict[str, list[list[float]]] = {
        key: [[] for _ in range(k)] for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy")
    }
    if schedule.eval_train:
        history.update({key: [[] for _ in range(k)] for key in ("train_loss", "train_accuracy")})
    iterations_seen: list[int] = []
    best_val = [math.inf] * k
    snapshots: list[dict] = [dict() for _ in range(k)]
    snap_iters: list[dict] = [dict() for _ in range(k)]
    pending_acc = {m: sorted(schedule.snapshot_val_accuracies) for m in range(k)}
    nan = float("nan")

    def record(it: int, final: bool) -> None:
        vl, va = evaluate(spec, weights, biases, data.val_x, data.val_y)
        improved = [vl[m] < best_val[m] for m in range(k)]
        for m in range(k):
            best_val[m] = min(best_val[m], vl[m])
        if schedule.test_eval == "all" or final or any(improved):
            tl, ta = evaluate(spec, weights, biases, data.test_x, data.test_y)
        else:
            tl, ta = [nan] * k, [nan] * k
        iterations_seen.append(it)
        for m in range(k):
            history["val_loss"][m].append(vl[m])
            history["val_accuracy"][m].append(va[m])
            history["test_loss"][m].append(tl[m])
            history["test_accuracy"][m].append(ta[m])
        if schedule.eval_train:
            rl, ra = evaluate(spec, weights, biases, data.train_x, data.train_y)
            for m in range(k):
                history["train_loss"][m].append(rl[m])
                history["train_accuracy"][m].append(ra[m])
        if progress is not None:
            progress(it, schedule.iterations, va)

    def snapshot(m: int, name: str, it: int) -> None:
        snapshots[m][name] = (
            [w[m].detach().to("cpu", copy=True) for w in weights],
            [b[m].detach().to("cpu", copy=True) for b in biases],
        )
        snap_iters[m][name] = it

    def check_val_targets(it: int) -> bool:
        """Snapshots and early exit that need val accuracy after every step; True = stop now."""
        need = schedule.stop_at_val_accuracy is not None or any(pending_acc.values())
        if not need:
            return False
        _, va = evaluate(spec, weights, biases, data.val_x, data.val_y)
        for m in range(k):
            while pending_acc[m] and va[m] >= pending_acc[m][0]:
                snapshot(m, f"val_accuracy_{pending_acc[m].pop(0):g}", it)
        target = schedule.stop_at_val_accuracy
        return target is not None and min(va) >= target

    snapshot_at = set(schedule.snapshot_iterations)
    if 0 in snapshot_at:
        for m in range(k):
            snapshot(m, "iteration_0", 0)
    record(0, final=schedule.iterations == 0)
    stopped = check_val_targets(0)
    it = 0
    perm = None
    while it < schedule.iterations and not stopped:
        pos = it % steps_per_epoch
        if pos == 0:
            perm = torch.randperm(n_train, generator=batch_gen).to(device)
        idx = perm[pos * schedule.batch_size : (pos + 1) * schedule.batch_size]
        x = data.train_x.index_select(0, idx)
        y = data.train_y.index_select(0, idx)
        # The sum of member means: each member's gradient is exactly that of its own mean loss.
        loss = member_losses(forward(spec, weights, biases, x), y).mean(1).sum()
        grads = torch.autograd.grad(loss, params)
        for g, gm in zip(grads, grad_masks):
            if gm is not None:
                g.mul_(gm)
        it += 1
        with torch.no_grad():
            _adam_step(params, list(grads), exp_avgs, exp_avg_sqs, it, schedule.learning_rate)
        if it in snapshot_at:
            for m in range(k):
                snapshot(m, f"iteration_{it}", it)
        stopped = check_val_targets(it)
        final = it == schedule.iterations or stopped
        if it % schedule.eval_every == 0 or final:
            record(it, final)

    final_w, final_b = _split(weights), _split(biases)
    results = []
    for m in range(k):
        h = {key: values[m] for key, values in history.items()}
        h["iteration"] = list(iterations_seen)
        results.append(MemberResult(h, final_w[m], final_b[m], snapshots[m], snap_iters[m]))
    return results
