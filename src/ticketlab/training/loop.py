"""The cohort trainer: K networks of one architecture and one seed trained in lockstep (SPEC §3).

All members see the same batches (the batch order depends on the seed only). Each member has its
own start weights, mask and Adam state. A pruned weight holds its start value exactly: its second
Adam moment is +inf, so its update -lr_t * m / (sqrt(inf) + eps) is exactly 0 at every step, whatever
its gradient. (The straightforward way, zeroing its gradient so that its moments stay 0 and its update
is 0 / (0 + eps), gives every weight the same value; it costs a pass over the gradients, and is kept
as the reference the tests compare against.)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data.idx import Dataset
from ..nets.forward import ALIGN, CUDA_LANES, FCPass, aligned_members, fc_grads, forward, member_losses
from ..nets.specs import NetSpec
from ..core.numerics import cuda_float32, flush_denormals
from ..core.seeds import generator

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
    over chunks, and a different chunking would round differently. FC: the whole val set at once."""
    return 250 if spec.is_conv else 5000


@torch.no_grad()
def evaluate(
    spec: NetSpec, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
    members: list[int] | None = None, per_member: bool | None = None,
) -> tuple[list[float], list[float]]:
    """Mean cross-entropy and accuracy over a whole set of each member in `members` (default: all).

    per_member (the default on the CPU, and for conv nets everywhere): one member at a time, a plain
    product per dense layer; on the CPU its activations stay in cache from layer to layer (20% faster
    than layer by layer across the cohort for FC). Otherwise the members together, one batched
    product per layer: on the CPU all of them; on a GPU (the FC default: a fifth of the launches) in
    groups of exactly CUDA_LANES members, a short group padded with copies of its first member, so
    that every call, reductions included, has the same shapes whatever the cohort. Either way a
    member's numbers do not depend on which members are evaluated with it (tested on the CPU and,
    where there is one, a GPU)."""
    chosen = list(range(weights[0].shape[0])) if members is None else list(members)
    lanes = x.device.type == "cuda"
    if lanes:
        cuda_float32()  # also when nothing was trained in this process (a resumed supermask job)
    if per_member is None:
        per_member = not lanes or spec.is_conv
    if per_member:
        groups = [[m] for m in chosen]
    elif lanes:
        groups = [chosen[i : i + CUDA_LANES] for i in range(0, len(chosen), CUDA_LANES)]
    else:
        groups = [chosen]
    loss_out: list[float] = []
    acc_out: list[float] = []
    n = len(x)
    for group in groups:
        rows = group + [group[0]] * (CUDA_LANES - len(group)) if lanes and not per_member else group
        if len(rows) == 1:
            m = rows[0]
            # a member's weights at the alignment they have in training, whatever stack holds them
            ws, bs = [aligned_members(w[m : m + 1]) for w in weights], [aligned_members(b[m : m + 1]) for b in biases]
        elif rows == list(range(weights[0].shape[0])) and not lanes:
            ws, bs = weights, biases
        # on a GPU always fresh contiguous copies: a cohort's own views have other strides (padded
        # blocks) than a subset's copies, and the layout is part of what picks cuBLAS's kernel
        else:
            idx = torch.tensor(rows, device=weights[0].device)
            ws, bs = [w.index_select(0, idx) for w in weights], [b.index_select(0, idx) for b in biases]
        loss = torch.zeros(len(rows), dtype=torch.float64, device=x.device)
        correct = torch.zeros(len(rows), dtype=torch.int64, device=x.device)
        chunk = eval_chunk(spec)
        for start in range(0, n, chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            logits = forward(spec, ws, bs, xb, plain_gemm=per_member)
            loss += member_losses(logits, yb).sum(1, dtype=torch.float64)
            correct += (logits.argmax(2) == yb).sum(1)
        loss_out += (loss[: len(group)] / n).tolist()
        acc_out += (correct[: len(group)].double() / n).tolist()
    return loss_out, acc_out


def _adam_step(params, grads, exp_avgs, exp_avg_sqs, step: int, lr: float) -> None:
    """The straightforward TF1 Adam step through foreach ops (reference; the cohort uses `_CohortState`)."""
    # TF1's AdamOptimizer form (the original code): eps is added to sqrt(v), lr carries the bias correction.
    lr_t = lr * math.sqrt(1 - ADAM_BETA2**step) / (1 - ADAM_BETA1**step)
    torch._foreach_mul_(exp_avgs, ADAM_BETA1)
    torch._foreach_add_(exp_avgs, grads, alpha=1 - ADAM_BETA1)
    torch._foreach_mul_(exp_avg_sqs, ADAM_BETA2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - ADAM_BETA2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denom, ADAM_EPS)
    torch._foreach_addcdiv_(params, exp_avgs, denom, value=-lr_t)


def has_fused_adam(device: torch.device) -> bool:
    """Whether torch's fused Adam kernel runs on this device (CUDA since torch 2.0, CPU since 2.4)."""
    if not hasattr(torch, "_fused_adam_"):
        return False
    if device.type != "cpu":
        return True
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 4)


def tf1_adam_fused_args(step: int, lr: float) -> dict[str, float]:
    """Arguments that make torch's fused Adam compute TF1's update.

    torch: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps'); TF1: p -= lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps),
    with bc_i = 1 - beta_i**step. The two are equal when eps' = eps / sqrt(bc2)."""
    return dict(lr=lr, beta1=ADAM_BETA1, beta2=ADAM_BETA2, weight_decay=0.0,
                eps=ADAM_EPS / math.sqrt(1 - ADAM_BETA2**step), amsgrad=False, maximize=False)


def cohort_lanes(spec: NetSpec, device: torch.device) -> int:
    """A cohort's member count is padded to a multiple of this: CUDA_LANES for FC nets on a CUDA GPU
    (whose products run in calls of that many members, `forward`), else 1. Conv nets' dense heads
    pad their products themselves: filler members would cost whole conv stacks."""
    return CUDA_LANES if device.type == "cuda" and not spec.is_conv else 1


class _FlatLayout:
    """Where each parameter tensor of each member lives in one flat float32 buffer.

    Tensor i of the network is a (K, padded_i) block, padded_i = its size rounded up to ALIGN;
    `views` gives the (K, *shape_i) views of a buffer (contiguous when the size is a multiple of ALIGN,
    else strided by padded_i). Padding holds zeros and never moves."""

    def __init__(self, shapes: list[tuple[int, ...]], k: int):
        self.shapes, self.k = shapes, k
        self.sizes = [math.prod(shape) for shape in shapes]
        self.padded = [-(-n // ALIGN) * ALIGN for n in self.sizes]
        self.offsets = [0]
        for p in self.padded:
            self.offsets.append(self.offsets[-1] + k * p)

    @property
    def total(self) -> int:
        return self.offsets[-1]

    def views(self, buf: torch.Tensor) -> list[torch.Tensor]:
        return [
            buf[o : o + self.k * p].view(self.k, p)[:, :n].view(self.k, *shape)
            for o, p, n, shape in zip(self.offsets, self.padded, self.sizes, self.shapes)
        ]


class _CohortState:
    """Everything one training step of a cohort reads and writes, and the step itself.

    Parameters, gradients and both Adam moments each live in one flat buffer (`_FlatLayout`): per
    layer, a (K, *shape) view for the kernels and a (K, out) view for the biases. Adam is torch's
    fused kernel with TF1's arguments (`tf1_adam_fused_args`), run once per step on the whole
    buffer. That keeps a member's update bitwise independent of its cohort: the kernel handles
    elements in 16-float vectors from the start of the tensor, with scalar code (which rounds
    differently) only for a tail; every member's block of every tensor starts at a multiple of
    ALIGN and the buffer's length is a multiple of it, so each element gets the vector code, at the
    same lane, whatever the cohort (tests check it, cohort against alone).

    `step(x, y)`: forward, loss, backward (hand-written for FC nets, `forward.FCPass` on the CPU,
    `forward.fc_grads` on a GPU: the same calls; autograd for
    conv nets) and Adam; pruned weights hold by their infinite second moment (see the module
    docstring). The weights are those of a state built with hold_by_inf=False (gradient masking
    instead), which the tests check. `train_cohort` calls exactly `step`; so does
    the benchmark.

    On a CUDA GPU an FC cohort is padded to a multiple of `forward.CUDA_LANES` members with fillers
    (copies of member 0, trained alongside and never read), so that its batched products run unpadded
    in calls of that many members; `weights`, `grads` and the other views show the real members only.
    Its gradients phase runs as a captured CUDA graph (one launch instead of about 30; the same
    kernels, so the same bits), the batch copied into the graph's input buffers.
    """

    def __init__(self, spec: NetSpec, starts: list[MemberStart], learning_rate: float, device: torch.device | str,
                 hold_by_inf: bool = True):
        self.spec = spec
        self.learning_rate = learning_rate
        device = torch.device(device)
        if device.type == "cuda":
            cuda_float32()
        k = self.k = len(starts)
        n = len(spec.layers)
        self._fast_fc = not spec.is_conv
        lanes = cohort_lanes(spec, device)
        padded = -(-k // lanes) * lanes
        shapes = [tuple(w.shape) for w in starts[0].weights] + [(layer.out_channels,) for layer in spec.layers]
        self.layout = layout = _FlatLayout(shapes, padded)
        # params, grads, m, v: every member's, fillers included (`_all`), and the real members' views
        self.flat = [torch.zeros(layout.total, dtype=torch.float32, device=device) for _ in range(4)]
        params_all, grads_all = layout.views(self.flat[0]), layout.views(self.flat[1])
        for i in range(n):
            params_all[i].copy_(torch.stack([s.weights[i] for s in starts + [starts[0]] * (padded - k)]))
        self._weights_all, self._biases_all = params_all[:n], params_all[n:]
        self._grad_weights_all, self._grad_biases_all = grads_all[:n], grads_all[n:]
        params, self.grads, self.exp_avgs, self.exp_avg_sqs = (
            [t[:k] for t in layout.views(b)] for b in self.flat
        )
        self.weights, self.biases = params[:n], params[n:]
        self.grad_weights, self.grad_biases = self.grads[:n], self.grads[n:]

        # How pruned weights hold. hold_by_inf: their second moment starts (and stays) +inf, so their
        # Adam step is -lr' * m / (sqrt(inf) + eps) = +-0 exactly, whatever their gradient: no mask pass.
        # Otherwise (the reference): their gradient is multiplied by a float 0/1 mask, their moments
        # stay 0 and their step is 0 / (0 + eps) = 0. Kept weights get the same numbers either way.
        self.hold_by_inf = hold_by_inf
        self.masked = [m for m, s in enumerate(starts) if s.masks is not None]
        self._mask_row = {m: row for row, m in enumerate(self.masked)}
        self.masks: list[torch.Tensor] = []
        if self.masked and hold_by_inf:
            for m in self.masked:
                for v, mask in zip(self.exp_avg_sqs, starts[m].masks):
                    v[m].masked_fill_(mask.to(device, torch.bool).logical_not(), math.inf)
        elif self.masked:
            self.masks = [
                torch.stack([starts[m].masks[i] for m in self.masked]).to(device, torch.float32) for i in range(n)
            ]
        self.iteration = 0
        self._step_t = torch.zeros((), dtype=torch.float32, device=device)
        self._fused = has_fused_adam(device)
        # the views of each group of `lanes` members (the whole cohort where lanes = 1), made once:
        # the step is the hot path
        group = lanes if lanes > 1 else padded
        self._lane_groups = [
            tuple([t[c : c + group] for t in views] for views in
                  (self._weights_all, self._biases_all, self._grad_weights_all, self._grad_biases_all))
            for c in range(0, padded, group)
        ]
        self._graph: _GraphedGrads | None = None
        self._use_graph = device.type == "cuda" and self._fast_fc
        self._cpu_pass: FCPass | None = None  # the CPU's FC pass, its views and buffers made at the first step

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step on the shared batch (x, y): gradients, then TF1 Adam on every parameter."""
        self.compute_grads(x, y)
        self.mask_grads()  # a no-op when pruned weights hold by an infinite second moment
        self.adam()

    def compute_grads(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """grads <- d(sum over members of each member's mean loss) / d(params)."""
        if self._use_graph:
            if self._graph is None or not self._graph.fits(x, y):
                self._graph = _GraphedGrads(self._eager_fc_grads, x, y)
            self._graph.replay(x, y)
            return
        if self._fast_fc and x.device.type == "cpu":
            if self._cpu_pass is None or self._cpu_pass.batch != len(x):
                self._cpu_pass = FCPass(self._weights_all, self._biases_all, self._grad_weights_all,
                                        self._grad_biases_all, len(x))
            self._cpu_pass.grads(x, y)
            return
        if self._fast_fc:
            self._eager_fc_grads(x, y)
            return
        with torch.enable_grad():
            params = [p.detach().requires_grad_() for p in self.weights + self.biases]
            n = len(self.weights)
            loss = member_losses(forward(self.spec, params[:n], params[n:], x), y).mean(1).sum()
            grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            torch._foreach_copy_(self.grads, list(grads))

    def _eager_fc_grads(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # member groups of `cohort_lanes` (one on the CPU): on a GPU every group's intermediates are
        # fresh allocations, aligned as a lone member's are whatever the batch size
        for weights, biases, grad_weights, grad_biases in self._lane_groups:
            fc_grads(weights, biases, x, y, grad_weights, grad_biases)

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero the gradients of pruned weights (only when they hold by masking, not by +inf moments)."""
        if not self.masks:
            return
        for g, mask in zip(self.grad_weights, self.masks):
            if len(self.masked) == self.k:
                g.mul_(mask)
            else:
                for m, row in self._mask_row.items():
                    g[m].mul_(mask[row])

    @torch.no_grad()
    def adam(self) -> None:
        """TF1 Adam on every parameter from the gradients in `grads` (the step's last phase)."""
        self.iteration += 1
        params, grads, exp_avgs, exp_avg_sqs = ([b] for b in self.flat)
        if self._fused:
            self._step_t.fill_(self.iteration)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], [self._step_t],
                               **tf1_adam_fused_args(self.iteration, self.learning_rate))
        else:  # no fused kernel here (CPU before torch 2.4): the foreach form, which rounds differently
            _adam_step(params, grads, exp_avgs, exp_avg_sqs, self.iteration, self.learning_rate)


class _GraphedGrads:
    """A gradients pass captured once as a CUDA graph on input buffers shaped like (x, y), replayed per step."""

    def __init__(self, grads: Callable[[torch.Tensor, torch.Tensor], None], x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = torch.zeros_like(x), torch.zeros_like(y)  # class 0 of zero images: finite numbers
        with torch.cuda.device(x.device):
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):  # torch's recipe: warm up off the capturing stream first
                grads(self.x, self.y)
            torch.cuda.current_stream(x.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                grads(self.x, self.y)

    def fits(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        return x.shape == self.x.shape and y.shape == self.y.shape and x.device == self.x.device

    def replay(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()


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
) -> list[MemberResult]:
    """Train every member with SPEC §3's schedule; return per-member histories and weights.

    timing: if given, filled with wall seconds spent in val and test evaluations at the evaluation
    points (`val_s`, `test_s`, `points`, `test_evals`: points where some member's test set was
    evaluated), in everything else evaluation does (`other_eval_s`: train-set evaluation, per-step
    val checks for snapshots) and in the rest of the run, the training steps (`train_s`, `steps`)."""
    device = torch.device(device)
    if device.type == "cpu":
        flush_denormals()  # SPEC's TF1 ran with denormals flushed; it also keeps Adam fast (numerics.py)
    k = len(starts)
    state = _CohortState(spec, starts, schedule.learning_rate, device)
    weights, biases = state.weights, state.biases

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

    clock = _Clock(device, timing)

    def record(it: int, final: bool) -> None:
        clock.start()
        vl, va = evaluate(spec, weights, biases, data.val_x, data.val_y)
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
            sub_l, sub_a = evaluate(spec, weights, biases, data.test_x, data.test_y, members=wanted)
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
            rl, ra = evaluate(spec, weights, biases, data.train_x, data.train_y)
            clock.stop("other_eval_s")
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
        clock.start()
        _, va = evaluate(spec, weights, biases, data.val_x, data.val_y)
        clock.stop("other_eval_s")
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
        state.step(x, y)
        it += 1
        if it in snapshot_at:
            for m in range(k):
                snapshot(m, f"iteration_{it}", it)
        stopped = check_val_targets(it)
        final = it == schedule.iterations or stopped
        if it % schedule.eval_every == 0 or final:
            record(it, final)

    clock.finish(it)
    final_w, final_b = _split(weights), _split(biases)
    results = []
    for m in range(k):
        h = {key: values[m] for key, values in history.items()}
        h["iteration"] = list(iterations_seen)
        results.append(MemberResult(h, final_w[m], final_b[m], snapshots[m], snap_iters[m]))
    return results
