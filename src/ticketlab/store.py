"""The run store: one directory per run, named by its config hash, written atomically.

A run is built in a hidden temporary directory and renamed into place only when complete, so a
killed run never leaves a directory (or a `summary.json`) that looks finished. Files use safe
formats only: JSON, and NumPy `.npz` read with `allow_pickle=False`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import TicketlabError

SUMMARY = "summary.json"


def ensure_writable(root: Path) -> None:
    """Create `root` if needed and prove we can write there, before any work starts."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise TicketlabError(f"cannot write to output directory {root}: {reason}; pass a writable --out") from None


def is_complete(run_dir: Path) -> bool:
    return (run_dir / SUMMARY).is_file()


@contextlib.contextmanager
def building(run_dir: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes `run_dir` in one rename."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".tmp-{run_dir.name}-"))
    try:
        yield tmp
        if not (tmp / SUMMARY).is_file():
            raise RuntimeError(f"run {run_dir.name} built without a summary")
        try:
            os.replace(tmp, run_dir)
        except OSError:
            if not is_complete(run_dir):  # a concurrent worker may have finished the same run first
                if run_dir.exists():
                    shutil.rmtree(run_dir)
                os.replace(tmp, run_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_arrays(path: Path, arrays: dict[str, np.ndarray | torch.Tensor]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez(tmp, **{k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items()})
    os.replace(tmp, path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def pack_masks(names: list[str], masks: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Bool masks as bits: 1/8 of a byte a weight, with the shape kept beside them."""
    out = {}
    for name, m in zip(names, masks):
        out[name] = np.packbits(m.cpu().numpy().astype(bool).ravel())
        out[name + ".shape"] = np.array(m.shape, dtype=np.int64)
    return out


def unpack_masks(names: list[str], arrays: dict[str, np.ndarray]) -> list[torch.Tensor]:
    masks = []
    for name in names:
        shape = tuple(int(s) for s in arrays[name + ".shape"])
        bits = np.unpackbits(arrays[name], count=int(np.prod(shape))).astype(bool)
        masks.append(torch.from_numpy(bits.reshape(shape)))
    return masks


def weight_arrays(layer_names: list[str], weights: list[torch.Tensor], biases: list[torch.Tensor] | None = None):
    out = {f"{n}.weight": w for n, w in zip(layer_names, weights)}
    if biases is not None:
        out.update({f"{n}.bias": b for n, b in zip(layer_names, biases)})
    return out
