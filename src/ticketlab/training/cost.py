"""What work costs: the work items a sweep plans (cohorts to train, networks to evaluate), their cost
relative to one dense member's training step, and one short measurement per machine that turns that
unit into seconds.

The progress line weighs finished work by these costs (not by jobs, whose sizes differ by orders of
magnitude), and `sweep`/`reproduce` project their time from them before training. The relative
costs are a model, not a measurement of each item: what matters for the progress line is that
their ratios are right to within a few tens of percent, since its ETA is the elapsed time scaled by
the ratio of work left to work done.

The FC ratios were fitted to `ticketlab bench`'s figures on a 2-core AMD EPYC (torch 2.13.0, numba
0.68.1): a 13-member step costs 0.64 ms a dense member, a sparse member of density d costs
(0.067 + 2.33 d) of that (0.09 at 1%, 0.23 at 7%, 0.5 at 17%: the bench's 0.75, 1.94 and 4.13 ms for
13), and a val evaluation (5,000 images) costs 24.6 dense steps for a dense member and (3.0 + 51 d)
for a sparse one. Other nets have no sparse path; their evaluation costs 0.3 steps per 60 images
(the FC ratio). The seconds per unit are measured (`seconds_per_unit`): a few dense FC steps on this
machine, cached per machine, threads and release.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..nets.specs import NetSpec

# the FC fits of the module docstring (units: one dense member's step)
SPARSE_STEP = (0.067, 2.33)
DENSE_EVAL_PER_BATCH = 24.6 / (5000 / 60)
SPARSE_EVAL = (3.0, 51.0)  # per 5,000 images
VAL_IMAGES, TEST_IMAGES, EVAL_BATCH = 5000, 10_000, 60
SNAPSHOT_CHECKS = 10  # val evaluations after every step until 75% val accuracy (FC on MNIST: ~10 steps)
CACHE_VERSION = 1
# A measurement during which other processes kept more cores busy is not cached. Niced ones count:
# under Linux's autogroup scheduling a niced job started in another session takes its group's full
# share, and a cached 4x-too-slow step was seen that way.
BUSY_CORES = 0.25


@dataclass(frozen=True)
class CohortWork:
    """One `train_cohort` call to come: per member its density (kept fraction of kernel weights) and
    whether it trains on the sparse path; the schedule's steps and evaluation points."""

    label: str
    densities: tuple[float, ...]
    sparse: tuple[bool, ...]
    steps: int
    eval_every: int
    batch: int = EVAL_BATCH
    runs: int = 1  # runs it writes
    snapshots: bool = False  # a dense run's per-step val checks for the accuracy snapshots

    @property
    def members(self) -> int:
        return len(self.densities)


@dataclass(frozen=True)
class EvalWork:
    """Networks to evaluate once on a set, untrained (supermasks at init)."""

    label: str
    networks: int
    images: int = TEST_IMAGES
    runs: int = 1


Work = CohortWork | EvalWork


def trains_sparse_at(net: NetSpec, density: float, held_zero: bool) -> bool:
    """Whether a CPU member of `net` at `density` whose pruned weights are zero (`held_zero`) would
    train on the sparse path (`nets.sparse.trains_sparse`, which decides from the member's tensors)."""
    from ..nets.sparse import SPARSE_BELOW

    if not net.dense_stack or not held_zero:  # the sparse path is the dense stacks' (FC's)
        return False
    shapes = tuple(layer.weight_shape for layer in net.layers)
    return density < SPARSE_BELOW.get(shapes, 0.0)


def eval_points(steps: int, every: int) -> int:
    """Evaluation points of a run: step 0, every `every` steps, and the last step."""
    return 1 + steps // every + (1 if steps % every else 0)


def test_evals(points: int) -> float:
    """Points where the test set is evaluated under `on_best` (where the val loss reaches a new low):
    nearly all of a short run's, a few tens of a long one's (records of a noisy falling series grow
    like the log of its length)."""
    return min(points, 2 + 4 * math.log(points))


def member_step(density: float, sparse: bool) -> float:
    a, b = SPARSE_STEP
    return a + b * density if sparse else 1.0


def member_eval(density: float, sparse: bool, images: int) -> float:
    """One member's evaluation of `images` images."""
    if sparse:
        a, b = SPARSE_EVAL
        return (a + b * density) * images / VAL_IMAGES
    return DENSE_EVAL_PER_BATCH * images / EVAL_BATCH


def relative_cost(work: Work) -> float:
    """The work's cost in dense member steps."""
    if isinstance(work, EvalWork):
        return work.networks * DENSE_EVAL_PER_BATCH * work.images / EVAL_BATCH
    scale = work.batch / EVAL_BATCH  # a step's products grow with the batch
    steps = sum(member_step(d, s) for d, s in zip(work.densities, work.sparse)) * work.steps * scale
    points = eval_points(work.steps, work.eval_every)
    per_point = sum(member_eval(d, s, VAL_IMAGES) + test_evals(points) / points * member_eval(d, s, TEST_IMAGES)
                    for d, s in zip(work.densities, work.sparse))
    checks = SNAPSHOT_CHECKS * sum(member_eval(d, s, VAL_IMAGES) for d, s in zip(work.densities, work.sparse))
    return steps + points * per_point + (checks if work.snapshots else 0.0)


def describe(work: list[Work]) -> dict[str, int]:
    """Counts of a plan: runs, cohorts, member steps and networks evaluated at init."""
    cohorts = [w for w in work if isinstance(w, CohortWork)]
    return {"runs": sum(w.runs for w in work), "cohorts": len(cohorts),
            "member_steps": sum(w.steps * w.members for w in cohorts),
            "evaluated_networks": sum(w.networks for w in work if isinstance(w, EvalWork))}


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ticketlab" / "cost.json"


def _machine_key(net: NetSpec, device: str, threads: int) -> str:
    import torch

    from ..core.device import cpu_model
    from ..core.numerics import NUMERICS

    from ..nets.specs import get_net, shape_text

    where = cpu_model() if device == "cpu" else torch.cuda.get_device_name(0)
    # a net built for other images than its default data set's costs otherwise: its own entry
    shape = "" if net.image_shape == get_net(net.name).image_shape else f"|{shape_text(net.image_shape)}"
    return f"v{CACHE_VERSION}|{where}|{device}|{threads} threads|torch {torch.__version__}|numerics {NUMERICS}|{net.name}{shape}"


def seconds_per_unit(net: NetSpec, device: str = "cpu", threads: int | None = None, measure: bool = True) -> float | None:
    """Seconds of one dense member step of `net` in a 13-member cohort on this machine: measured once
    (about a second) and cached per machine, device, thread count and release, unless other processes
    (niced ones too) kept the cores busy meanwhile; None if not cached and not `measure`."""
    import torch

    threads = threads or torch.get_num_threads()
    key = _machine_key(net, device, threads)
    path = _cache_file()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if isinstance(cached.get(key), (int, float)):
        return float(cached[key])
    if not measure:
        return None
    from ..core.device import background_between, cpu_ticks

    before = cpu_ticks()
    value = _measure(net, device, threads)
    load = background_between(before, cpu_ticks())
    if device == "cpu" and load is not None and load > BUSY_CORES:
        return value  # other work shared the cores: good for this run's projection, not for the cache
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cached[key] = value
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(cached, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache: measured again next time
    return value


def _measure(net: NetSpec, device: str, threads: int) -> float:
    """A 13-member dense cohort's step on random images, best of a few blocks, per member."""
    import torch

    from ..core.seeds import generator
    from ..nets.specs import init_weights
    from .schedule import MemberStart
    from .state import CohortState

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        k = 13 if net.dense_stack else 2
        gen = generator(0, "calibration")
        starts = [MemberStart(init_weights(net, gen)) for _ in range(k)]
        state = CohortState(net, starts, 1e-3, device)
        x = torch.rand((EVAL_BATCH, *net.input_shape), generator=gen).to(device)
        y = torch.randint(0, 10, (EVAL_BATCH,), generator=gen).to(device)
        steps = 20 if net.dense_stack else 2
        best = math.inf
        for block in range(4):
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                state.step(x, y)
            if device != "cpu":
                torch.cuda.synchronize()
            if block:  # the first block warms up
                best = min(best, (time.perf_counter() - t0) / steps)
        return best / k
    finally:
        torch.set_num_threads(before)
