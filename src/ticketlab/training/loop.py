"""The training loop: K networks of one architecture and one seed trained in lockstep (protocol §3).

All members see the same batches (the batch order depends on the seed only); each has its own start
weights, mask and optimiser state (`state.CohortState`). The loop draws the batches, steps the
learner, evaluates at the evaluation points (val, and test where the policy asks), keeps snapshots
and stops early where the schedule says; what is trained, and how, is the learner's business.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..core.numerics import flush_denormals
from ..core.seeds import generator
from ..data import Dataset
from ..data.augment import AUGMENTATIONS, crop_flip
from ..nets.specs import NetSpec
from .evaluation import evaluate
from .schedule import MemberResult, MemberStart, Progress, Schedule
from .state import Learner, train_weights


class _Clock:
    """Wall seconds of the evaluation phases, accumulated into `timing` (a no-op without it); the
    training steps get the rest of the run's time (`finish`), so a step is never interrupted to
    read the clock. On a GPU it waits for queued work at each evaluation boundary (every
    eval_every steps, where evaluation waits anyway)."""

    def __init__(self, device: torch.device, timing: dict[str, float] | None):
        self.timing = timing
        self.cuda = device.type == "cuda"
        self.t0 = self.begin = self._now() if timing is not None else 0.0
        if timing is not None:
            for key in ("train_s", "steps", "val_s", "points", "test_s", "test_evals", "other_eval_s"):
                timing[key] = 0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        if self.timing is not None:
            self.t0 = self._now()

    def stop(self, key: str, count: str | None = None) -> None:
        if self.timing is not None:
            self.timing[key] += self._now() - self.t0
            if count is not None:
                self.timing[count] += 1

    def finish(self, steps: int) -> None:
        if self.timing is not None:
            t = self.timing
            t["steps"] = steps
            t["train_s"] = self._now() - self.begin - t["val_s"] - t["test_s"] - t["other_eval_s"]


def gather_batch(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows idx of a set's inputs and labels. On the CPU through numpy, on this thread: torch's
    index_select runs a (60, 784) batch on its OpenMP pool, whose threads then spin for a while and
    take a core from the sparse kernels' threads (`nets.sparse`; the same values either way). The
    rows land in tensors from torch's allocator, 64-byte aligned as the dense products need
    (`nets.forward`: an operand's alignment changes MKL's rounding)."""
    if x.device.type != "cpu":
        return x.index_select(0, idx), y.index_select(0, idx)
    rows = idx.numpy()
    xb = torch.empty((len(rows), *x.shape[1:]), dtype=x.dtype)
    yb = torch.empty((len(rows), *y.shape[1:]), dtype=y.dtype)
    np.take(x.numpy(), rows, 0, out=xb.numpy())
    np.take(y.numpy(), rows, 0, out=yb.numpy())
    return xb, yb


def as_input(data: Dataset, spec: NetSpec) -> Dataset:
    """The data set with its images shaped as the net takes them (`NetSpec.input_shape`: FC rows of
    pixels, a conv net's (C, H, W)): views, no copy."""
    def shaped(x: torch.Tensor) -> torch.Tensor:
        return x if tuple(x.shape[1:]) == spec.input_shape else x.reshape(len(x), *spec.input_shape)

    return Dataset(data.name, shaped(data.train_x), data.train_y, shaped(data.val_x), data.val_y,
                   shaped(data.test_x), data.test_y)


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
    timing: dict[str, float] | None = None,
    learner: Learner | None = None,
) -> list[MemberResult]:
    """Train every member with protocol §3's schedule; return per-member histories and weights.

    The members train the schedule's steps start_iteration + 1 .. end (all of them by default), with
    the batches those steps have in the whole schedule (one permutation per epoch from the batch-order
    generator, seeded by the recipe's data_order_seed, else by `seed`) and its learning rates;
    evaluation points are the start, every eval_every steps, and the end.

    learner: what is trained and how (`state.Learner`); default `train_weights`, the weights by TF1
    Adam with pruned weights held. The loop (batches, evaluation points, snapshots, early exits) is the
    same for every learner; it evaluates and returns the learner's `weights` and `biases`.

    timing: if given, filled with wall seconds spent in val and test evaluations at the evaluation
    points (`val_s`, `test_s`, `points`, `test_evals`: points where some member's test set was
    evaluated), in everything else evaluation does (`other_eval_s`: train-set evaluation, per-step
    val checks for snapshots) and in the rest of the run, the training steps (`train_s`, `steps`)."""
    device = torch.device(device)
    if device.type == "cpu":
        flush_denormals()  # The paper's TF1 ran with denormals flushed; it also keeps Adam fast (numerics.py)
    k = len(starts)
    state = (learner or train_weights)(spec, starts, schedule, device)
    sparse = getattr(state, "sparse", None)  # its sparse members evaluate through the same kernels
    buffers = getattr(state, "buffers", None) or None  # BatchNorm's running statistics, if the net has any

    data = as_input(data.to(device), spec)
    n_train = len(data.train_x)
    steps_per_epoch = n_train // schedule.batch_size
    if steps_per_epoch == 0:
        raise ValueError("batch size exceeds the training set")
    order_seed = seed if schedule.recipe.data_order_seed is None else schedule.recipe.data_order_seed
    batch_gen = generator(order_seed, "batch_order")
    start, end = schedule.start_iteration, schedule.end
    if not 0 <= start <= end <= schedule.iterations:
        raise ValueError(f"steps {start}..{end} are not within the schedule's {schedule.iterations}")
    for _ in range(start // steps_per_epoch):  # the epochs before the start: their draws, not their batches
        torch.randperm(n_train, generator=batch_gen)
    if schedule.recipe.augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {schedule.recipe.augment!r}: one of {', '.join(AUGMENTATIONS)}")
    augment = schedule.recipe.augment == "crop_flip"

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

    clock = _Clock(device, timing)

    def record(it: int, final: bool) -> None:
        # read at every point: a mask learner's networks are a property of its current parameters
        weights, biases = state.weights, state.biases
        clock.start()
        vl, va = evaluate(spec, weights, biases, data.val_x, data.val_y, sparse=sparse, buffers=buffers)
        clock.stop("val_s", "points")
        improved = [vl[m] < best_val[m] for m in range(k)]
        for m in range(k):
            best_val[m] = min(best_val[m], vl[m])
        # Under "on_best" only the members whose val loss improved get a test evaluation, so a
        # member's history does not depend on which cohort it trained in.
        wanted = [m for m in range(k) if schedule.test_eval == "all" or final or improved[m]]
        tl, ta = [nan] * k, [nan] * k
        clock.start()
        if wanted:
            sub_l, sub_a = evaluate(spec, weights, biases, data.test_x, data.test_y, members=wanted, sparse=sparse,
                                    buffers=buffers)
            for j, m in enumerate(wanted):
                tl[m], ta[m] = sub_l[j], sub_a[j]
        clock.stop("test_s", "test_evals" if wanted else None)
        iterations_seen.append(it)
        for m in range(k):
            history["val_loss"][m].append(vl[m])
            history["val_accuracy"][m].append(va[m])
            history["test_loss"][m].append(tl[m])
            history["test_accuracy"][m].append(ta[m])
        if schedule.eval_train:
            clock.start()
            rl, ra = evaluate(spec, weights, biases, data.train_x, data.train_y, sparse=sparse, buffers=buffers)
            clock.stop("other_eval_s")
            for m in range(k):
                history["train_loss"][m].append(rl[m])
                history["train_accuracy"][m].append(ra[m])
        if progress is not None:
            progress(it - start, max(end - start, 1), va)

    def snapshot(m: int, name: str, it: int) -> None:
        weights, biases = state.weights, state.biases
        snapshots[m][name] = (
            [w[m].detach().to("cpu", copy=True) for w in weights],
            [b[m].detach().to("cpu", copy=True) for b in biases],
            [r[m].detach().to("cpu", copy=True) for r in buffers or []],
        )
        snap_iters[m][name] = it

    def check_val_targets(it: int) -> bool:
        """Snapshots and early exit that need val accuracy after every step; True = stop now."""
        need = schedule.stop_at_val_accuracy is not None or any(pending_acc.values())
        if not need:
            return False
        clock.start()
        _, va = evaluate(spec, state.weights, state.biases, data.val_x, data.val_y, sparse=sparse, buffers=buffers)
        clock.stop("other_eval_s")
        for m in range(k):
            while pending_acc[m] and va[m] >= pending_acc[m][0]:
                snapshot(m, f"val_accuracy_{pending_acc[m].pop(0):g}", it)
        target = schedule.stop_at_val_accuracy
        return target is not None and min(va) >= target

    snapshot_at = set(schedule.snapshot_iterations)
    if start in snapshot_at:
        for m in range(k):
            snapshot(m, f"iteration_{start}", start)
    record(start, final=start == end)
    stopped = check_val_targets(start)
    it = start
    perm = None
    while it < end and not stopped:
        pos = it % steps_per_epoch
        if pos == 0 or perm is None:
            perm = torch.randperm(n_train, generator=batch_gen).to(device)
        idx = perm[pos * schedule.batch_size : (pos + 1) * schedule.batch_size]
        x, y = gather_batch(data.train_x, data.train_y, idx)
        if augment:  # each step's draws its own (data order, step): a window of steps gets the whole schedule's
            x = crop_flip(x, spec.image_shape, generator(order_seed, "augment", it))
        state.step(x, y)
        it += 1
        if it in snapshot_at:
            for m in range(k):
                snapshot(m, f"iteration_{it}", it)
        stopped = check_val_targets(it)
        final = it == end or stopped
        if it % schedule.eval_every == 0 or final:
            record(it, final)

    clock.finish(it - start)
    final_w, final_b = _split(state.weights), _split(state.biases)
    final_r = _split(buffers) if buffers else [[] for _ in range(k)]
    results = []
    for m in range(k):
        h = {key: values[m] for key, values in history.items()}
        h["iteration"] = list(iterations_seen)
        results.append(MemberResult(h, final_w[m], final_b[m], snapshots[m], snap_iters[m], final_r[m]))
    return results
