"""Runs in the store: their directories, the one writer, and what the experiments read back.

Every run (a `train` run, and a sweep's `dense`, `round` and `supermask` runs) is a directory named
by `naming.run_name` and written by `write_run`: `config.json` (kind, name, identity, resolved
config, environment), `history.json`, arrays as `.npz` (`start.npz`, `final.npz`, `masks.npz`, ...),
JSON records, and `summary.json` last, through `files.building` (atomic, checksummed). A sweep's runs
live in `OUT/runs/` and are shared by every sweep that needs them; a `train` run lives in `OUT/`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..core.device import environment
from ..core.numerics import NUMERICS
from ..nets.specs import NetSpec
from .files import SUMMARY, building, load_arrays, pack_masks, read_json, save_arrays, unpack_masks, write_json
from .naming import run_name

RUNS = "runs"


def run_dir(root: Path, kind: str, ident: dict[str, Any]) -> Path:
    """Where a sweep's run of `kind` identified by `ident` lives in the store at `root`."""
    return root / RUNS / run_name(kind, ident)


def weight_arrays(spec: NetSpec, weights: list[torch.Tensor], biases: list[torch.Tensor] | None = None,
                  prefix: str = "", buffers: list[torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """Kernels by layer name (`fc1.weight`, ...), and the net's other parameters and buffers by their
    names (`fc1.bias`, `bn1.weight`, `bn1.running_mean`, ...: `NetSpec.params`, `NetSpec.buffers`),
    as a run's `.npz` holds them."""
    out = {f"{prefix}{layer.name}.weight": w.numpy() for layer, w in zip(spec.layers, weights)}
    if biases is not None:
        out.update({f"{prefix}{t.name}": b.numpy() for t, b in zip(spec.params, biases)})
    if buffers:
        out.update({f"{prefix}{t.name}": r.numpy() for t, r in zip(spec.buffers, buffers)})
    return out


def mask_arrays(spec: NetSpec, masks: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Bool masks by layer name, bit-packed (`files.pack_masks`)."""
    return pack_masks([layer.name for layer in spec.layers], masks)


def write_run(
    run_dir: Path,
    kind: str,
    ident: dict[str, Any],
    summary: dict[str, Any],
    *,
    config: Any | None = None,
    device: torch.device | None = None,
    history: dict[str, list[float]] | None = None,
    arrays: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    compress: tuple[str, ...] = (),
    records: Mapping[str, Any] | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> None:
    """Write one finished run into `run_dir`, whole or not at all.

    config.json gets the kind, name and identity, the resolved `config` and the `device`'s environment
    (where given) and `extra_config`; `arrays` are `.npz` files (those named in `compress` deflated:
    pruned kernels are mostly exact zeros, which shrink to about their density); `records` are JSON
    files; `summary` is written last (its presence marks the run finished)."""
    record: dict[str, Any] = {"kind": kind, "name": run_dir.name, "identity": ident, "numerics": NUMERICS}
    if config is not None:
        record["config"] = dataclasses.asdict(config.resolved())
    if device is not None:
        record["environment"] = environment(device)
    record.update(extra_config or {})
    with building(run_dir) as tmp:
        write_json(tmp / "config.json", record)
        if history is not None:
            write_json(tmp / "history.json", history)
        for name, content in (arrays or {}).items():
            if name in compress:
                np.savez_compressed(tmp / name, **content)
            else:
                save_arrays(tmp / name, dict(content))
        for name, content in (records or {}).items():
            write_json(tmp / name, content)
        write_json(tmp / SUMMARY, summary)


def _kernels(spec: NetSpec, arrays: dict[str, np.ndarray], prefix: str = "") -> list[torch.Tensor]:
    return [torch.from_numpy(arrays[f"{prefix}{layer.name}.weight"]) for layer in spec.layers]


def param_arrays(spec: NetSpec, arrays: dict[str, np.ndarray], prefix: str = "") -> list[torch.Tensor]:
    """The net's parameters other than kernels (`NetSpec.params`: biases, BatchNorm's) from a run's arrays."""
    return [torch.from_numpy(arrays[f"{prefix}{t.name}"]) for t in spec.params]



def start_biases(spec: NetSpec, arrays: dict[str, np.ndarray]) -> list[torch.Tensor] | None:
    """A run's start of the net's other parameters, where its `start.npz` keeps them (nets whose
    BatchNorm scales start at drawn values); None: all zero, as every net without them starts."""
    if not spec.params or f"{spec.params[0].name}" not in arrays:
        return None
    return param_arrays(spec, arrays)


def buffer_arrays(spec: NetSpec, arrays: dict[str, np.ndarray], prefix: str = "") -> list[torch.Tensor]:
    """The net's buffers (BatchNorm running statistics) from a run's arrays ([] for a net without)."""
    return [torch.from_numpy(arrays[f"{prefix}{t.name}"]) for t in spec.buffers]


@dataclasses.dataclass
class RunState:
    """What the next round needs of a finished run: start and final kernels, and the mask; and the
    start of the net's other parameters where the run keeps it (None: zero)."""

    start: list[torch.Tensor]
    final: list[torch.Tensor]
    masks: list[torch.Tensor]
    start_biases: list[torch.Tensor] | None = None


def read_state(path: Path, spec: NetSpec) -> RunState:
    """The start and final kernels and the masks (all kept, for a dense run) of a finished run."""
    start_arrays = load_arrays(path / "start.npz")
    start = _kernels(spec, start_arrays)
    final = _kernels(spec, load_arrays(path / "final.npz"))
    if (path / "masks.npz").exists():
        masks = unpack_masks([layer.name for layer in spec.layers], load_arrays(path / "masks.npz"))
    else:
        masks = [torch.ones(layer.weight_shape, dtype=torch.bool) for layer in spec.layers]
    return RunState(start, final, masks, start_biases(spec, start_arrays))


def read_base(path: Path, spec: NetSpec, base: str) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], int] | None:
    """(w_init, w_f kernels, w_f biases, iterations) of a dense run's base ("converged", or a snapshot
    "iterations_N" / "val_accuracy_0.NN"), or None if the run never got there."""
    start = _kernels(spec, load_arrays(path / "start.npz"))
    summary = read_json(path / SUMMARY)
    if base == "converged":
        final = load_arrays(path / "final.npz")
        return start, _kernels(spec, final), param_arrays(spec, final), int(summary["iterations"])
    snaps = load_arrays(path / "snapshots.npz")
    key = base.replace("iterations_", "iteration_")  # the trainer names snapshots by step
    if f"{key}/{spec.layers[0].name}.weight" not in snaps:
        return None
    return start, _kernels(spec, snaps, f"{key}/"), param_arrays(spec, snaps, f"{key}/"), int(summary["snapshot_iterations"][key])
