"""Naming, writing and reading the runs of a sweep store (`OUT/runs/<kind>_<hash>/`).

Three kinds of run: `dense` (round 0 of every chain and the base of every supermask; it also keeps
weight snapshots along training), `round` (one pruning round of one chain), and `supermask` (the
one-shot evaluation of masks from one base). Runs are shared by every sweep that needs them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..training.config import TrainConfig, content_hash, identity
from ..core.device import environment
from ..nets.specs import NetSpec
from ..store.files import SUMMARY, building, load_arrays, pack_masks, read_json, save_arrays, unpack_masks, write_json
from ..training.schedule import MemberResult

RUNS = "runs"


def run_dir(root: Path, kind: str, ident: dict[str, Any]) -> Path:
    return root / RUNS / f"{kind}_{content_hash(kind, ident)}"


def train_identity(config: TrainConfig) -> dict[str, Any]:
    return identity(config)


def dense_snapshots(iterations: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Snapshots every dense run keeps (for the supermask bases): a log-spaced set of iterations
    below the run's length, and the first steps reaching 25/50/75% val accuracy."""
    from ..experiments.spec import BASE_ITERATIONS, VAL_ACCURACY_BASES

    return tuple(i for i in BASE_ITERATIONS if i < iterations), VAL_ACCURACY_BASES


def dense_identity(config: TrainConfig) -> dict[str, Any]:
    return {**train_identity(config), "snapshots": "v1"}


def round_identity(config: TrainConfig, criterion: str, mask1: str, mask0: str, round_: int, round_step: int) -> dict[str, Any]:
    ident = {**train_identity(config), "criterion": criterion, "mask1": mask1, "mask0": mask0, "round": round_}
    if round_step != 1:
        ident["round_step"] = round_step
    return ident


def _kernels(spec: NetSpec, arrays: dict[str, np.ndarray], prefix: str = "") -> list[torch.Tensor]:
    return [torch.from_numpy(arrays[f"{prefix}{layer.name}.weight"]) for layer in spec.layers]


def _biases(spec: NetSpec, arrays: dict[str, np.ndarray], prefix: str = "") -> list[torch.Tensor]:
    return [torch.from_numpy(arrays[f"{prefix}{layer.name}.bias"]) for layer in spec.layers]


def _weights_dict(spec: NetSpec, weights: list[torch.Tensor], biases: list[torch.Tensor] | None, prefix: str = ""):
    out = {f"{prefix}{l.name}.weight": w.numpy() for l, w in zip(spec.layers, weights)}
    if biases is not None:
        out.update({f"{prefix}{l.name}.bias": b.numpy() for l, b in zip(spec.layers, biases)})
    return out


def _save_compressed(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Pruned kernels are mostly exact zeros: deflate shrinks them to about their density.
    np.savez_compressed(path, **arrays)


def _config_record(kind: str, name: str, ident: dict[str, Any], config: TrainConfig, device: torch.device, extra=None):
    return {
        "kind": kind,
        "name": name,
        "identity": ident,
        "config": dataclasses.asdict(config.resolved()),
        "environment": environment(device),
        **(extra or {}),
    }


def write_dense(
    path: Path, spec: NetSpec, config: TrainConfig, ident: dict, start: list[torch.Tensor], result: MemberResult,
    wall: float, device: torch.device,
) -> None:
    summary = {**result.summary(), "seed": config.seed, "wall_seconds": wall, "remaining_weights": spec.prunable_weights,
               "snapshot_iterations": result.snapshot_iterations}
    snaps: dict[str, np.ndarray] = {}
    for name, (w, b) in result.snapshots.items():
        snaps.update(_weights_dict(spec, w, b, prefix=f"{name}/"))
    with building(path) as tmp:
        write_json(tmp / "config.json", _config_record("dense", path.name, ident, config, device))
        write_json(tmp / "history.json", result.history)
        save_arrays(tmp / "start.npz", _weights_dict(spec, start, None))
        save_arrays(tmp / "final.npz", _weights_dict(spec, result.final_weights, result.final_biases))
        save_arrays(tmp / "snapshots.npz", snaps)
        write_json(tmp / SUMMARY, summary)


def write_round(
    path: Path, spec: NetSpec, config: TrainConfig, ident: dict, start: list[torch.Tensor], masks: list[torch.Tensor],
    result: MemberResult, wall: float, device: torch.device,
) -> None:
    remaining = [int(m.sum()) for m in masks]
    summary = {**result.summary(), "seed": config.seed, "wall_seconds": wall, "remaining_weights": sum(remaining),
               "remaining_per_layer": remaining}
    with building(path) as tmp:
        write_json(tmp / "config.json", _config_record("round", path.name, ident, config, device))
        write_json(tmp / "history.json", result.history)
        save_arrays(tmp / "masks.npz", pack_masks([l.name for l in spec.layers], masks))
        _save_compressed(tmp / "start.npz", _weights_dict(spec, start, None))
        _save_compressed(tmp / "final.npz", _weights_dict(spec, result.final_weights, result.final_biases))
        write_json(tmp / SUMMARY, summary)


@dataclasses.dataclass
class RunState:
    """What the next round needs of a finished run: start and final kernels, and the mask."""

    start: list[torch.Tensor]
    final: list[torch.Tensor]
    masks: list[torch.Tensor]


def read_state(path: Path, spec: NetSpec) -> RunState:
    start = _kernels(spec, load_arrays(path / "start.npz"))
    final = _kernels(spec, load_arrays(path / "final.npz"))
    if (path / "masks.npz").exists():
        masks = unpack_masks([l.name for l in spec.layers], load_arrays(path / "masks.npz"))
    else:
        masks = [torch.ones(l.weight_shape, dtype=torch.bool) for l in spec.layers]
    return RunState(start, final, masks)


def read_base(path: Path, spec: NetSpec, base: str) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], int] | None:
    """(w_init, w_f kernels, w_f biases, iterations) of a dense run's base, or None if it never got there."""
    start = _kernels(spec, load_arrays(path / "start.npz"))
    summary = read_json(path / SUMMARY)
    if base == "converged":
        final = load_arrays(path / "final.npz")
        return start, _kernels(spec, final), _biases(spec, final), int(summary["iterations"])
    snaps = load_arrays(path / "snapshots.npz")
    key = base.replace("iterations_", "iteration_")  # the trainer names snapshots by step
    if f"{key}/{spec.layers[0].name}.weight" not in snaps:
        return None
    return start, _kernels(spec, snaps, f"{key}/"), _biases(spec, snaps, f"{key}/"), int(summary["snapshot_iterations"][key])
