"""The dense run of a seed: round 0 of every iterative chain and the base of every supermask.

It is trained once per (seed, net, schedule) and shared by every sweep that needs it. Besides its
start and final weights it keeps snapshots along training for the supermask bases: a log-spaced set
of iterations, and the first steps reaching 25/50/75% validation accuracy.

Late rewinding needs the dense run's weights at a step k. Where the snapshot plan holds k, they are
its snapshot; otherwise they are a run of their own (kind `snapshot`, named by the dense run's
identity and k), which replays the dense run's first k steps: same init, batches, optimiser and
learning rates, so the same bits (tested). The dense run itself keeps its name and is never trained
twice: a dense run with extra snapshots would be a second run of T steps for bits the first one
already has, where the replay costs k steps.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..core.seeds import generator
from ..nets.specs import init_params, init_weights
from ..store.files import finished, load_arrays, reading_run
from ..store.naming import identity
from ..store.runs import param_arrays, read_base, run_dir, weight_arrays, write_run
from ..training import MemberStart, train_cohort
from ..training.config import TrainConfig

VAL_ACCURACY_BASES = (0.25, 0.5, 0.75)
BASE_ITERATIONS = (10, 30, 100, 300, 1000, 3000, 10000, 30000)


def dense_identity(config: TrainConfig) -> dict[str, Any]:
    """What names a seed's dense run: its training config, and the snapshot plan's version."""
    return {**identity(config), "snapshots": "v1"}


def dense_bases() -> tuple[str, ...]:
    """The names of every base a dense run can give a supermask sweep: its snapshots and `converged`
    (a snapshot at or past a run's length is not taken: `experiments.supermask.bases_of`)."""
    return (*(f"iterations_{i}" for i in BASE_ITERATIONS), *(f"val_accuracy_{a:g}" for a in VAL_ACCURACY_BASES),
            "converged")


def dense_snapshots(iterations: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The snapshots a dense run of `iterations` steps keeps: the log-spaced iterations below its
    length, and the val-accuracy targets."""
    return tuple(i for i in BASE_ITERATIONS if i < iterations), VAL_ACCURACY_BASES


def _train_from_init(config: TrainConfig, schedule: Any, device: torch.device, data: Any,
                     report: Callable[[float], None] | None) -> tuple[list[torch.Tensor], list[torch.Tensor], Any, float]:
    """(init kernels, init parameters, the training result, wall seconds) of the dense network of
    `config` trained from its seed's init by `schedule`: the dense run itself, or a replay of its
    first steps, which must give the same bits."""
    spec = config.net_spec()
    start = init_weights(spec, generator(config.seed, "init"))
    params = init_params(spec, generator(config.seed, "init_params"))  # zeros but BatchNorm's scales

    def progress(it: int, total: int, _: list[float]) -> None:
        if report is not None:
            report(it / total)

    t0 = time.perf_counter()
    (result,) = train_cohort(spec, data.get(config.resolved().dataset), [MemberStart(start, None, params)], schedule,
                             config.seed, device, progress)
    return start, params, result, time.perf_counter() - t0


def ensure_dense(root: Path, config: TrainConfig, device: torch.device, data: Any,
                 report: Callable[[float], None] | None = None, repair: bool = False) -> Path:
    """The dense run of `config` (with its snapshots), trained if not yet in the store (or, with
    `repair`, if its files no longer match their checksums). `data.get(name)` gives a dataset."""
    ident = dense_identity(config)
    path = run_dir(root, "dense", ident)
    if finished(path, repair):
        return path
    spec = config.net_spec()
    iters, accs = dense_snapshots(config.resolved().iterations)
    schedule = config.schedule(snapshot_iterations=iters, snapshot_val_accuracies=accs)
    start, params, result, wall = _train_from_init(config, schedule, device, data, report)
    snaps: dict[str, Any] = {}
    for name, (w, b, r) in result.snapshots.items():
        snaps.update(weight_arrays(spec, w, b, prefix=f"{name}/", buffers=r))
    summary = {**result.summary(), "seed": config.seed, "wall_seconds": wall, "remaining_weights": spec.prunable_weights,
               "snapshot_iterations": result.snapshot_iterations}
    write_run(path, "dense", ident, summary, config=config, device=device, history=result.history,
              arrays={"start.npz": weight_arrays(spec, start, params if spec.random_param_init else None),
                      "final.npz": weight_arrays(spec, result.final_weights, result.final_biases,
                                                 buffers=result.final_buffers),
                      "snapshots.npz": snaps})
    return path


def snapshot_identity(config: TrainConfig, iteration: int) -> dict[str, Any]:
    """What names the replay of a dense run's first `iteration` steps."""
    return {"dense": dense_identity(config), "iteration": iteration}


def in_snapshot_plan(config: TrainConfig, iteration: int) -> bool:
    """Whether the dense run of `config` keeps its weights at `iteration` (0: its start)."""
    return iteration == 0 or iteration in dense_snapshots(config.resolved().iterations)[0]


def rewind_point(root: Path, config: TrainConfig, iteration: int, device: torch.device, data: Any,
                 report: Callable[[float], None] | None = None,
                 repair: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(kernels, other parameters) of the dense run of `config` after `iteration` steps: its init at 0,
    its snapshot where the plan keeps one (the dense run must be in the store), else the replay,
    trained if not yet in the store. (BatchNorm's running statistics are not part of it: a round
    starts them afresh, as every run does.)"""
    spec = config.net_spec()
    dense = run_dir(root, "dense", dense_identity(config))
    if in_snapshot_plan(config, iteration):
        with reading_run(dense):
            if iteration == 0:
                arrays = load_arrays(dense / "start.npz")
                return ([torch.from_numpy(arrays[f"{layer.name}.weight"]) for layer in spec.layers],
                        init_params(spec, generator(config.seed, "init_params")))
            _, kernels, biases, _ = read_base(dense, spec, f"iterations_{iteration}")
        return kernels, biases
    path = run_dir(root, "snapshot", snapshot_identity(config, iteration))
    if not finished(path, repair):
        _, _, result, wall = _train_from_init(config, config.schedule(end_iteration=iteration), device, data, report)
        summary = {**result.summary(), "seed": config.seed, "wall_seconds": wall}
        write_run(path, "snapshot", snapshot_identity(config, iteration), summary, config=config, device=device,
                  history=result.history,
                  arrays={"final.npz": weight_arrays(spec, result.final_weights, result.final_biases,
                                                     buffers=result.final_buffers)})
    with reading_run(path):
        arrays = load_arrays(path / "final.npz")
    return ([torch.from_numpy(arrays[f"{layer.name}.weight"]) for layer in spec.layers], param_arrays(spec, arrays))
