"""`ticketlab bench`: how fast this machine trains and evaluates, and what a full sweep would cost.

Everything is measured in one process, on one device, with the production code: the FC and conv
training rates time `training.state.CohortState.step`, the very step `train_cohort` runs (forward, loss,
backward, TF1 Adam), on batches gathered from the in-memory training set as `train_cohort` gathers
them; evaluation times `training.evaluation.evaluate`. The cohort step's two phases are also timed alone: the
gradients (all the counted FLOPs) and Adam (no counted FLOPs; torch's fused kernel spends two
divisions and a square root on every parameter, and is bound by them: it runs no faster on data that
sits in the L2 cache), which shows how far the step could go with these kernels. Then two real
`train_cohort` runs (a lone network, and a 13-member cohort whose densities span a criteria sweep's
rounds) of a few thousand steps, timed by phase (training steps, val and test evaluations), give the
per-step and per-evaluation costs of a real run; the full-schedule evaluation overheads and the
projected sweep time come from them.

The conv nets (Conv2/4/6, ResNet-20, VGG-16) are timed as a cohort of 2 beside a plain PyTorch loop
of the same net (its nn.Module, torch.optim.Adam, batch 60; `conv*_cohort2_vs_plain`: the cohort's
net-samples/s over the loop's samples/s).

Two peers run beside the FC cohort step: a plain per-network PyTorch loop, and PyTorch's own recipe for
training N same-shape models at once (`VmapCohort`: `torch.func.stack_module_state` + `vmap` of
`grad` over `functional_call`, gradients masked, torch's fused Adam on the stacked parameters) over
the same 13 masked FC networks and batches.

Timing: every step rate is the best of several timed blocks after a warm-up (the machine's peak, like
the SGEMM figure it is compared with); the median block is reported beside it. The single-network,
cohort, plain-loop and vmap blocks are interleaved, so that their ratios stay meaningful when other
processes load the machine in bursts; the SGEMM peak is measured before and after them and the
better figure kept. `background_cpu_load_*` (cores kept busy by other processes: while the bench
sleeps briefly at the start and at the end, and on average during it) says how loaded the machine
was; above 0.1 core the table warns that the numbers are low and noisy.

FLOPs of one FC training step, per network, batch B, layer l with P_l = fan_in * fan_out weights:
forward 2*B*P_l for every layer, backward-weights 2*B*P_l for every layer, backward-data 2*B*P_l
for every layer but the first (its input needs no gradient). Biases, ReLU, softmax and Adam are not
counted. For FC (784-300-100-10, P = 266,200) and B = 60: 4*60*266,200 + 2*60*31,000
= 67,608,000 FLOPs per network per step.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from .data import load_dataset
from .core.device import background_between, background_cpu_load, cpu_model, cpu_ticks, resolve_device
from .pruning.criteria import CRITERIA
from .nets.specs import NETS, NetSpec, get_net, init_params, init_weights, net_title
from .store.tickets import build_ticket, ticket_module
from .core.numerics import cuda_float32
from .core.seeds import generator
from .training.evaluation import evaluate
from .training.loop import gather_batch, train_cohort
from .training.schedule import MemberStart, Schedule
from .training.state import CohortState

BATCH = 60
COHORT = len(CRITERIA)  # the criteria figure trains its criteria of one seed and round as one cohort
FC_ITERATIONS = 50_380  # Protocol §3: 55 epochs x floor(55,000 / 60)
EVAL_EVERY = 100
N_VAL, N_TEST = 5_000, 10_000
CRITERIA_SEEDS, CRITERIA_ROUNDS = 5, 24
SPARSE_ROUNDS = (0, 4, 8, 12, 16, 20)  # the paper's FC densities 100, 41, 17, 7, 3 and 1%
FLOP_COUNT = (
    "per network and step: forward 2*B*P + backward-weights 2*B*P for every layer + backward-data "
    "2*B*P for every layer but the first (P = the layer's weights; biases, activations, loss and "
    "Adam not counted)"
)


def eval_points(iterations: int = FC_ITERATIONS, every: int = EVAL_EVERY) -> int:
    """Evaluation points of a full run: iteration 0, every `every`, and the end (504 for FC)."""
    return 1 + iterations // every + (iterations % every != 0)


def fc_step_flops(spec: NetSpec, batch: int = BATCH) -> int:
    """FLOPs of one training step of one dense-stack network (the count in the module docstring)."""
    flops = 0
    for i, layer in enumerate(spec.layers):
        if layer.kind != "fc":
            raise ValueError("fc_step_flops counts dense layers only")
        flops += (4 if i == 0 else 6) * batch * layer.size
    return flops


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _time_blocks(fn: Callable[[], None], sync: Callable[[], None], calls: int, blocks: int, warmup: int,
                 budget_s: float) -> tuple[float, float]:
    """(best, median) seconds per call of `fn` over `blocks` timed blocks of `calls` calls each,
    after `warmup` untimed calls; more blocks (up to 4x) while the time budget lasts."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < blocks or (time.perf_counter() < deadline and len(times) < 4 * blocks):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / calls)
    return min(times), statistics.median(times)


def _time_interleaved(fns: dict[str, tuple[Callable[[], None], int]], sync: Callable[[], None], blocks: int,
                      budget_s: float) -> dict[str, tuple[float, float]]:
    """`_time_blocks` for several functions at once (up to 8x `blocks` rounds while the budget
    lasts), their blocks interleaved, so that a burst of load from other processes, or a slow spell
    of the machine, hits all of them alike and their ratios stay meaningful."""
    for fn, calls in fns.values():
        for _ in range(max(3, calls // 4)):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < blocks or (time.perf_counter() < deadline and rounds < 8 * blocks):
        for name, (fn, calls) in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            sync()
            times[name].append((time.perf_counter() - t0) / calls)
        rounds += 1
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def gemm_gflops(device: torch.device, sizes: tuple[int, ...], reps: int) -> float:
    """SGEMM peak: the best rate of n x n float32 matmuls over `sizes`, after a warm-up."""
    sync = _sync(device)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        c = torch.empty(n, n, device=device)
        t, _ = _time_blocks(lambda: torch.mm(a, b, out=c), sync, calls=1, blocks=reps, warmup=1, budget_s=0.0)
        best = max(best, 2 * n**3 / t / 1e9)
    return best


def _masked_members(spec: NetSpec, k: int, densities: list[float], seed: int = 0) -> list[MemberStart]:
    """k members of one architecture: different inits, random masks of the given densities of the
    prunable layers (1.0 = dense, no mask); pruned weights zeroed as the `zero` mask-0 action does;
    the other parameters at their init (BatchNorm's scales drawn)."""
    g = torch.Generator().manual_seed(seed)
    members = []
    for m in range(k):
        init = init_weights(spec, generator(seed + m, "init"))
        params = init_params(spec, generator(seed + m, "init_params")) if spec.random_param_init else None
        d = densities[m % len(densities)]
        if d >= 1.0:
            members.append(MemberStart(init, None, params))
            continue
        masks = [torch.rand(w.shape, generator=g) < d if layer.prunable else torch.ones(w.shape, dtype=torch.bool)
                 for layer, w in zip(spec.layers, init)]
        members.append(MemberStart([w * mk for w, mk in zip(init, masks)], masks, params))
    return members


def _gathering(step: Callable[[torch.Tensor, torch.Tensor], object], train_x: torch.Tensor, train_y: torch.Tensor,
               device: torch.device) -> Callable[[], None]:
    """`step` on consecutive batches of a fixed permutation, gathered as train_cohort gathers them;
    the cohort and its vmap peer share it, so they pay the same for their batches."""
    g = torch.Generator().manual_seed(1)
    n = len(train_x)
    perm = torch.randperm(n, generator=g).to(device)
    pos = [0]

    def gathered() -> None:
        p = pos[0] = (pos[0] + 1) % (n // BATCH)
        idx = perm[p * BATCH : (p + 1) * BATCH]
        step(*gather_batch(train_x, train_y, idx))

    return gathered


def _step_fn(spec: NetSpec, members: list[MemberStart], train_x: torch.Tensor, train_y: torch.Tensor,
             device: torch.device, sparse_below: dict | None = None) -> tuple[Callable[[], None], CohortState]:
    """One production training step of a cohort, batch gathering included (the body of train_cohort's
    loop). sparse_below: as `CohortState`'s ({}: every member dense)."""
    state = CohortState(spec, members, spec.learning_rate, device, sparse_below=sparse_below)
    return _gathering(state.step, train_x, train_y, device), state


class VmapCohort:
    """PyTorch's own recipe for training same-shape models at once, the cohort trainer's peer in the bench.

    One `nn.Sequential` per member (ticketlab's (in, out) kernels transposed into `nn.Linear`'s
    (out, in); biases zero, as the trainer starts them), stacked by `torch.func.stack_module_state`;
    a step is `vmap(grad(loss))` over the stacked parameters with the batch shared by all members
    (`functional_call` on a stateless copy of the module), each member's gradient multiplied by its
    mask, then one `torch.optim.Adam(fused=True)` step over the stacked tensors. Pruned weights start at
    zero and get zero gradients, so Adam's moments and updates there are exactly zero: they stay zero.
    Masking the gradients rather than the weights in the forward costs one multiplication per
    weight instead of two (forward, and again in the backward), the faster of two idiomatic ways.
    Dense-stack (FC) networks only."""

    def __init__(self, spec: NetSpec, members: list[MemberStart], learning_rate: float, device: torch.device):
        if any(layer.kind != "fc" for layer in spec.layers):
            raise ValueError("VmapCohort trains dense-stack networks only")
        models = []
        for member in members:
            mods: list[torch.nn.Module] = []
            for i, (layer, w) in enumerate(zip(spec.layers, member.weights)):
                lin = torch.nn.Linear(layer.fan_in_channels, layer.out_channels)
                with torch.no_grad():
                    lin.weight.copy_(w.T)
                    lin.bias.zero_()
                mods += [lin] if i == len(spec.layers) - 1 else [lin, torch.nn.ReLU()]
            models.append(torch.nn.Sequential(*mods).to(device))
        params, self.buffers = stack_module_state(models)
        # plain leaves: the gradients come from torch.func.grad, so no autograd graph is recorded
        self.params = {name: p.detach() for name, p in params.items()}
        weight_names = [name for name in self.params if name.endswith("weight")]
        self.masks: dict[str, torch.Tensor] = {}
        if any(m.masks is not None for m in members):
            for i, name in enumerate(weight_names):
                self.masks[name] = torch.stack([
                    (m.masks[i].T if m.masks is not None else torch.ones(self.params[name].shape[1:], dtype=torch.bool))
                    .to(device=device, dtype=torch.float32) for m in members
                ])
        self._base = models[0].to("meta")  # a stateless copy of the architecture, for functional_call

        def loss(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(self._base, (params, buffers), (x,)), y)

        self._losses = vmap(loss, in_dims=(0, 0, None, None))
        self._grads = vmap(grad(loss), in_dims=(0, 0, None, None))
        self.opt = torch.optim.Adam(list(self.params.values()), lr=learning_rate, fused=True)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's mean cross-entropy on (x, y), shape (K,)."""
        with torch.no_grad():
            return self._losses(self.params, self.buffers, x, y)

    def grads(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each member's gradient of its mean loss on (x, y), masked, stacked as `params`."""
        g = self._grads(self.params, self.buffers, x, y)
        for name, mask in self.masks.items():
            g[name].mul_(mask)
        return g

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step of every member on the shared batch (x, y)."""
        for name, g in self.grads(x, y).items():
            self.params[name].grad = g
        self.opt.step()


def _plain_loop_fn(train_x: torch.Tensor, train_y: torch.Tensor, device: torch.device) -> Callable[[], None]:
    """A plain per-network PyTorch loop: nn.Sequential + torch.optim.Adam, a random batch each step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10)
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    n = len(train_x)

    def step() -> None:
        idx = torch.randint(0, n, (BATCH,), device=device)
        loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _plain_net_loop_fn(spec: NetSpec, member: MemberStart, train_x: torch.Tensor, train_y: torch.Tensor,
                       device: torch.device) -> Callable[[], None]:
    """A plain PyTorch loop of any registered net: its nn.Module (`store.tickets.ticket_module`, the
    member's weights, no masking hooks, BatchNorm in training mode) and torch.optim.Adam, a random
    batch each step."""
    masks = member.masks or [torch.ones(w.shape, dtype=torch.bool) for w in member.weights]
    params = member.biases or init_params(spec, generator(0, "init_params"))
    model = ticket_module(*build_ticket(spec, "bench", member.weights, masks, params, {}), masked=False).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=spec.learning_rate)
    n = len(train_x)
    g = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, n, (BATCH,), device=device, generator=g)
        loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _eval_time(spec: NetSpec, state: CohortState, x: torch.Tensor, y: torch.Tensor, device: torch.device,
               reps: int) -> float:
    """Best seconds of one `evaluate` of the whole cohort over (x, y), as `train_cohort` runs it
    (sparse members through their kernels)."""
    t, _ = _time_blocks(lambda: evaluate(spec, state.weights, state.biases, x, y, sparse=state.sparse), _sync(device),
                        calls=1, blocks=reps, warmup=1, budget_s=0.0 if reps == 1 else 2.0)
    return t


def _interpolate(levels: list[dict], r: int, key: str) -> float:
    """levels' `key` at round r: linear between the measured rounds around it, the last one's beyond."""
    for lo, hi in zip(levels, levels[1:]):
        if lo["round"] <= r <= hi["round"]:
            f = (r - lo["round"]) / (hi["round"] - lo["round"])
            return lo[key] + f * (hi[key] - lo[key])
    return levels[-1][key] if r > levels[-1]["round"] else levels[0][key]


def _record_probability_sum(k: int, points: int) -> float:
    """Expected evaluation points, among `points` after a measured window, at which at least one of
    k members reaches a new val-loss minimum, if each member's later val losses were i.i.d. (a
    record at the j-th value with probability 1/j, the window's last value counting as the first).
    A trained network's val loss drifts (down, then up as it overfits), which makes new minima
    rarer than this: the model errs towards more test evaluations."""
    return sum(1.0 - (1.0 - 1.0 / j) ** k for j in range(2, points + 2))


def on_best_test_evals(val_losses: list[list[float]], total_points: int) -> tuple[int, float]:
    """(measured, estimated total) test evaluations of a full run under test_eval="on_best".

    `val_losses` holds each member's val losses at the evaluation points of a short real run.
    Measured: points of that run where some member's val loss hit a new minimum (point 0 always).
    Estimated total: the measured count, plus `_record_probability_sum` for the remaining points
    (the final point is always evaluated, so it counts as one)."""
    k, window = len(val_losses), len(val_losses[0])
    best = [math.inf] * k
    measured = 0
    for i in range(window):
        improved = False
        for m in range(k):
            if val_losses[m][i] < best[m]:
                best[m], improved = val_losses[m][i], True
        measured += improved
    rest = max(0, total_points - window - 1)
    return measured, measured + _record_probability_sum(k, rest) + 1.0


def run_bench(as_json: bool = False, quick: bool = False, device: str | torch.device = "auto") -> dict:
    """Measure this machine (see the module docstring); print a table, and with `as_json` a last
    stdout line that is one JSON object of the same numbers. Returns that dict.

    quick: small sizes and few repetitions (seconds; rough numbers, for smoke tests)."""
    t_start = time.perf_counter()
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    if dev.type == "cuda":
        cuda_float32()  # the peak of full float32 products (not TF32), as training runs them
    res: dict[str, object] = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": quick,
        "background_cpu_load_start": background_cpu_load(0.2 if quick else 0.5),
    }
    ticks0 = cpu_ticks()
    fc = get_net("fc")
    sync = _sync(dev)

    # --- SGEMM peak
    sizes = (1024,) if quick else ((2048, 4096) if dev.type == "cpu" else (4096, 8192))
    res["gemm_gflops"] = gemm_gflops(dev, sizes, reps=2 if quick else 5)
    res["gemm_sizes"] = list(sizes)

    data = load_dataset("mnist").to(dev)
    tx, ty = data.train_x, data.train_y
    calls, blocks, budget = (5, 3, 0.5) if quick else (40, 6, 12.0)

    # --- FC training: one network, a 13-member cohort, a plain PyTorch loop (timed interleaved)
    flops = fc_step_flops(fc)
    single_fn, _ = _step_fn(fc, _masked_members(fc, 1, [0.8]), tx, ty, dev)
    cohort_members = _masked_members(fc, COHORT, [0.8])
    cohort_fn, cstate = _step_fn(fc, cohort_members, tx, ty, dev)
    plain_fn = _plain_loop_fn(tx, ty, dev)
    vmap_fn = _gathering(VmapCohort(fc, cohort_members, fc.learning_rate, dev).step, tx, ty, dev)
    timed = _time_interleaved(
        {"single": (single_fn, calls), "cohort": (cohort_fn, max(2, calls // 2)), "plain": (plain_fn, calls),
         "vmap": (vmap_fn, max(2, calls // 2))},
        sync, blocks, budget,
    )
    (single, single_med), (cohort, cohort_med), (plain, plain_med) = timed["single"], timed["cohort"], timed["plain"]
    vmap_s, vmap_med = timed["vmap"]
    # the SGEMM peak again, after the FC work: the better of the two is the peak
    res["gemm_gflops"] = peak = max(float(res["gemm_gflops"]), gemm_gflops(dev, sizes, reps=2 if quick else 5))
    res.update({
        "fc_step_flops_per_net": flops,
        "flop_count": FLOP_COUNT,
        "fc_single_step_ms": single * 1e3,
        "fc_single_samples_per_s": BATCH / single,
        "fc_single_samples_per_s_median": BATCH / single_med,
        "fc_cohort13_step_ms": cohort * 1e3,
        "fc_cohort13_net_samples_per_s": COHORT * BATCH / cohort,
        "fc_cohort13_net_samples_per_s_median": COHORT * BATCH / cohort_med,
        "plain_loop_samples_per_s": BATCH / plain,
        "plain_loop_samples_per_s_median": BATCH / plain_med,
        "cohort_speedup_vs_plain": plain * COHORT / cohort,
        "vmap_cohort13_step_ms": vmap_s * 1e3,
        "vmap_cohort13_net_samples_per_s": COHORT * BATCH / vmap_s,
        "vmap_cohort13_net_samples_per_s_median": COHORT * BATCH / vmap_med,
        "cohort_speedup_vs_vmap": vmap_s / cohort,
        "fc_single_gflops": flops / single / 1e9,
        "fc_cohort13_gflops": COHORT * flops / cohort / 1e9,
        "fraction_of_peak_single": flops / single / 1e9 / peak,
        "fraction_of_peak_cohort13": COHORT * flops / cohort / 1e9 / peak,
    })

    # --- the cohort step's two phases, each timed alone on the same state: the gradients (forward,
    # loss, backward: all the counted FLOPs) and TF1 Adam (no counted FLOPs, see the module docstring)
    batches = [(tx[i * BATCH : (i + 1) * BATCH], ty[i * BATCH : (i + 1) * BATCH]) for i in range(8)]
    turn = [0]

    def grads() -> None:
        turn[0] = (turn[0] + 1) % len(batches)
        cstate.compute_grads(*batches[turn[0]])

    phase_calls = max(2, calls // 2)
    grads_s, _ = _time_blocks(grads, sync, calls=phase_calls, blocks=blocks, warmup=2, budget_s=budget / 6)
    adam_s, _ = _time_blocks(cstate.update, sync, calls=phase_calls, blocks=blocks, warmup=2, budget_s=budget / 6)
    res.update({
        "fc_cohort13_grads_ms": grads_s * 1e3,
        "fc_cohort13_adam_ms": adam_s * 1e3,
        "fc_cohort13_adam_gparams_per_s": cstate.flat[0].numel() / adam_s / 1e9,
        "fraction_of_peak_cohort13_grads": COHORT * flops / grads_s / 1e9 / peak,
        # the step's rate if it cost no more than its two phases alone (it costs more: each phase
        # finds the other's data evicted from the caches): an upper bound for fraction_of_peak_cohort13,
        # up to timing noise
        "fraction_of_peak_cohort13_phases": COHORT * flops / (grads_s + adam_s) / 1e9 / peak,
    })

    # --- evaluation throughput of the cohort (val + test)
    reps = 1 if quick else 3
    t_val = _eval_time(fc, cstate, data.val_x, data.val_y, dev, reps)
    t_test = _eval_time(fc, cstate, data.test_x, data.test_y, dev, reps)
    res["eval_samples_per_s"] = COHORT * (N_VAL + N_TEST) / (t_val + t_test)
    res["eval_val_s_cohort13"], res["eval_test_s_cohort13"] = t_val, t_test

    # --- real runs (train_cohort, timed by phase), projected to the full schedule: a lone network
    # (what `ticketlab train` runs) and a 13-member cohort spread over the levels of a criteria sweep
    points = eval_points()
    probe_iters = 200 if quick else 2000
    res["probe_iterations"] = probe_iters
    spread = [0.8 ** (2 * r) for r in range(COHORT)]  # dense .. round 24
    runs = {"single": _masked_members(fc, 1, [1.0], seed=10), "cohort13": _masked_members(fc, COHORT, spread, seed=10)}
    full: dict[str, dict[str, float]] = {}
    for name, members in runs.items():
        timing: dict[str, float] = {}
        schedule = Schedule(probe_iters, fc.learning_rate, eval_every=EVAL_EVERY, test_eval="on_best")
        run = train_cohort(fc, data, members, schedule, seed=0, device=dev, timing=timing)
        measured, n_test = on_best_test_evals([r.history["val_loss"] for r in run], points)
        step_s = timing["train_s"] / timing["steps"]
        val_s = timing["val_s"] / timing["points"]
        test_s = timing["test_s"] / max(1, timing["test_evals"])  # a point's test evaluation (of the improved members)
        test_all_s = test_s if name == "single" else t_test
        train_full = FC_ITERATIONS * step_s
        eval_on_best = points * val_s + n_test * test_s
        eval_all = points * (val_s + test_all_s)
        full[name] = {"train": train_full, "eval": eval_on_best}
        res.update({
            f"fc_{name}_run_step_ms": step_s * 1e3,
            f"fc_{name}_run_val_eval_ms": val_s * 1e3,
            f"fc_{name}_run_test_eval_ms": test_s * 1e3,
            f"on_best_test_evals_measured_{name}": measured,
            f"on_best_test_evals_estimated_{name}": n_test,
            f"eval_overhead_full_fc_{name}_on_best": eval_on_best / train_full,
            f"eval_overhead_full_fc_{name}_all": eval_all / train_full,
        })
    res["on_best_test_evals_measured_of"] = eval_points(probe_iters)

    # --- projected wall time of the full criteria preset on FC (sweeps use test_eval="on_best"),
    # from the real-run rates: per seed, one dense run alone, then 24 rounds of a 13-member cohort;
    # the seeds one after another on all threads, as `sweep.default_workers` runs 5 seeds on up to 4 cores
    dense_run = full["single"]["train"] + full["single"]["eval"]
    cohort_run = full["cohort13"]["train"] + full["cohort13"]["eval"]
    res["projected_fc_dense_run_hours"] = dense_run / 3600
    res["projected_fc_cohort13_run_hours"] = cohort_run / 3600
    res["projected_criteria_full_hours_spread"] = CRITERIA_SEEDS * (dense_run + CRITERIA_ROUNDS * cohort_run) / 3600

    # --- the sparse path (nets.sparse): a 13-member cohort's step and val evaluation at the paper's
    # densities of rounds 0, 4, ..., 20, every member dense against the path the engine chooses;
    # the criteria preset projected with each, rounds between measured ones interpolated (rounds
    # 21-24 at round 20's cost, an upper bound)
    levels = []
    for r in SPARSE_ROUNDS:
        members = _masked_members(fc, COHORT, [0.8**r])
        dense_fn, dense_state = _step_fn(fc, members, tx, ty, dev, sparse_below={})
        chosen_fn, chosen_state = _step_fn(fc, members, tx, ty, dev)
        t = _time_interleaved({"dense": (dense_fn, calls), "chosen": (chosen_fn, calls)}, sync, blocks, budget / 4)
        sparse_members = 0 if chosen_state.sparse is None else len(chosen_state.sparse.members)
        levels.append({
            "round": r, "density": 0.8**r, "path": "sparse" if sparse_members else "dense",
            "dense_step_ms": t["dense"][0] * 1e3, "chosen_step_ms": t["chosen"][0] * 1e3,
            "speedup": t["dense"][0] / t["chosen"][0],
            "dense_val_eval_ms": _eval_time(fc, dense_state, data.val_x, data.val_y, dev, reps) * 1e3,
            "chosen_val_eval_ms": _eval_time(fc, chosen_state, data.val_x, data.val_y, dev, reps) * 1e3,
        })
    res["sparse_levels"] = levels
    for lv in levels:
        res[f"fc_cohort13_r{lv['round']}_dense_step_ms"] = lv["dense_step_ms"]
        res[f"fc_cohort13_r{lv['round']}_chosen_step_ms"] = lv["chosen_step_ms"]
    test_per_val = full["cohort13"]["eval"] / max(1e-12, points * float(res["fc_cohort13_run_val_eval_ms"]) / 1e3)
    for path in ("dense", "chosen"):
        rounds_s = 0.0
        for r in range(1, CRITERIA_ROUNDS + 1):
            step = _interpolate(levels, r, f"{path}_step_ms") / 1e3
            val = _interpolate(levels, r, f"{path}_val_eval_ms") / 1e3
            rounds_s += FC_ITERATIONS * step + points * val * test_per_val
        res[f"projected_criteria_full_hours_{path}"] = CRITERIA_SEEDS * (dense_run + rounds_s) / 3600
    res["projected_criteria_full_hours"] = res["projected_criteria_full_hours_chosen"]
    res["projected_criteria_sparse_saving"] = (res["projected_criteria_full_hours_dense"]
                                               / res["projected_criteria_full_hours_chosen"])

    # --- conv nets: a small cohort, a few steps, beside a plain PyTorch loop of the same net (random
    # CIFAR-shaped data: speed does not depend on it)
    conv_k = 2
    conv_nets = ("conv2",) if quick else tuple(n for n in NETS if not NETS[n].dense_stack)  # every registered conv net
    g = torch.Generator().manual_seed(0)
    cx = (torch.randint(0, 256, (600, 3, 32, 32), generator=g).float() / 255).to(dev)
    cy = torch.randint(0, 10, (600,), generator=g).to(dev)
    for name in conv_nets:
        spec = get_net(name)
        cs = 1 if quick or name == "vgg16" else 2  # a VGG-16 step takes seconds on 2 cores
        members = _masked_members(spec, conv_k, [1.0, 0.8])
        fn, _ = _step_fn(spec, members, cx, cy, dev)
        plain = _plain_net_loop_fn(spec, members[0], cx, cy, dev)
        timed = _time_interleaved({"cohort": (fn, cs), "plain": (plain, cs)}, sync, 1 if quick else 2, 0.0)
        best, plain_s = timed["cohort"][0], timed["plain"][0]
        res[f"{name}_cohort{conv_k}_net_samples_per_s"] = conv_k * BATCH / best
        res[f"{name}_cohort{conv_k}_step_ms"] = best * 1e3
        res[f"{name}_plain_samples_per_s"] = BATCH / plain_s
        res[f"{name}_cohort{conv_k}_vs_plain"] = conv_k * plain_s / best

    sync()
    res["background_cpu_load_during"] = background_between(ticks0, cpu_ticks())
    res["background_cpu_load_end"] = background_cpu_load(0.2 if quick else 0.5)
    res["bench_seconds"] = time.perf_counter() - t_start
    _print_table(res)
    if as_json:
        print(json.dumps(res, sort_keys=True))
    return res


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


_ROWS = [
    ("device", "", "device"), ("device_name", "", "processor"), ("torch", "", "torch"), ("threads", "", "threads"),
    ("background_cpu_load_start", "cores", "busy with other processes (start)"),
    ("gemm_gflops", "GFLOP/s", "SGEMM peak"),
    ("fc_single_samples_per_s", "samples/s", "FC training, 1 network (trainer step)"),
    ("fc_cohort13_net_samples_per_s", "net-samples/s", "FC training, cohort of 13"),
    ("plain_loop_samples_per_s", "samples/s", "FC training, plain PyTorch loop"),
    ("cohort_speedup_vs_plain", "x", "cohort of 13 vs plain loop"),
    ("vmap_cohort13_net_samples_per_s", "net-samples/s", "FC training, 13 at once: torch.func vmap + Adam"),
    ("cohort_speedup_vs_vmap", "x", "cohort of 13 vs vmap"),
    ("fraction_of_peak_single", "", "FC 1 network: FLOP rate / SGEMM peak"),
    ("fraction_of_peak_cohort13", "", "FC cohort of 13: FLOP rate / SGEMM peak"),
    ("fc_cohort13_grads_ms", "ms", "FC cohort of 13, step phase alone: gradients"),
    ("fraction_of_peak_cohort13_grads", "", "  its FLOP rate / SGEMM peak"),
    ("fc_cohort13_adam_ms", "ms", "FC cohort of 13, step phase alone: Adam"),
    ("fc_cohort13_adam_gparams_per_s", "G params/s", "  its rate"),
    ("fraction_of_peak_cohort13_phases", "", "FC cohort of 13: FLOP rate / peak if step = its phases"),
    ("eval_samples_per_s", "net-samples/s", "evaluation, cohort of 13"),
    ("fc_single_run_step_ms", "ms", "FC real run, 1 network: training step"),
    ("eval_overhead_full_fc_single_on_best", "", "eval time / train time, full FC run, 1 network (on_best)"),
    ("eval_overhead_full_fc_single_all", "", "eval time / train time, full FC run, 1 network (test_eval=all)"),
    ("fc_cohort13_run_step_ms", "ms", "FC real run, cohort of 13: training step"),
    ("on_best_test_evals_estimated_cohort13", "of 505", "points with test evaluations, cohort of 13 (on_best, est.)"),
    ("eval_overhead_full_fc_cohort13_on_best", "", "eval time / train time, full FC run, cohort of 13 (on_best)"),
    ("eval_overhead_full_fc_cohort13_all", "", "eval time / train time, full FC run, cohort of 13 (test_eval=all)"),
    ("projected_criteria_full_hours_dense", "h", "criteria preset, full FC (5 seeds x (dense + 24 x 13)), all dense"),
    ("projected_criteria_full_hours", "h", "criteria preset, full FC, the engine's path (sparse below threshold)"),
    ("projected_criteria_sparse_saving", "x", "  dense projection / the engine's"),
    ("background_cpu_load_during", "cores", "busy with other processes (during the bench, average)"),
    ("background_cpu_load_end", "cores", "busy with other processes (end)"),
    ("bench_seconds", "s", "this benchmark"),
]


_CONV_AFTER = next(row for row in _ROWS if row[0] == "eval_overhead_full_fc_cohort13_all")  # conv rows follow it


def _print_table(res: dict) -> None:
    print(f"ticketlab bench{' (quick: rough numbers)' if res['quick'] else ''}")
    conv_rows = [row for n in NETS if not NETS[n].dense_stack for row in (
        (f"{n}_cohort2_net_samples_per_s", "net-samples/s", f"{net_title(n)} training, cohort of 2"),
        (f"{n}_plain_samples_per_s", "samples/s", f"{net_title(n)} training, plain PyTorch loop"))]
    rows = _ROWS[: _ROWS.index(_CONV_AFTER) + 1] + conv_rows + _ROWS[_ROWS.index(_CONV_AFTER) + 1 :]
    for key, unit, label in rows:
        if key in res and res[key] is not None:
            print(f"  {label:<62} {_fmt(res[key]):>14} {unit}")
    for lv in res.get("sparse_levels", []):
        print(f"  FC cohort of 13, round {lv['round']:>2} (density {100 * lv['density']:5.1f}%): step dense "
              f"{lv['dense_step_ms']:6.2f} ms, engine ({lv['path']:>6}) {lv['chosen_step_ms']:6.2f} ms, "
              f"x{lv['speedup']:.2f}; val eval {lv['dense_val_eval_ms']:.0f} / {lv['chosen_val_eval_ms']:.0f} ms")
    print(f"  FLOPs counted {res['flop_count']}; FC: {res['fc_step_flops_per_net']:,} per network per step.")
    print("  Rates: best of several timed blocks after warm-up (medians in the JSON).")
    load = res.get("background_cpu_load_during")
    if load is not None and load > 0.1:
        print(f"  WARNING: other processes kept {load:.2f} cores busy during the bench: numbers are low and noisy.")
    print(f"  Real runs: {res['probe_iterations']} steps of train_cohort, timed by phase, projected to "
          f"{FC_ITERATIONS:,} steps; on_best test evaluations: {res['on_best_test_evals_measured_cohort13']} "
          f"of the first {res['on_best_test_evals_measured_of']} points (cohort), then an i.i.d.-records "
          "model for the rest (errs high).")
