"""The run store: one directory per run, named by its config hash, written atomically.

A run is built in a hidden temporary directory and renamed into place only when complete, so a
killed run never leaves a directory (or a `summary.json`) that looks finished. Files use safe
formats only: JSON, and NumPy `.npz` read with `allow_pickle=False`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import zipfile
import zlib
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


class UnreadableFile(TicketlabError):
    """A stored file that is missing, truncated or not what its name says; the message names it."""


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def read_json(path: Path) -> Any:
    """The JSON document at `path`; `UnreadableFile` (one line naming the file) if it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UnreadableFile(f"cannot read {path}: {_reason(e)}") from None


def save_arrays(path: Path, arrays: dict[str, np.ndarray | torch.Tensor]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez(tmp, **{k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items()})
    os.replace(tmp, path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file; `UnreadableFile` (one line naming the file) for anything else: a
    missing or truncated file, a damaged member (CRC), a plain `.npy`, object (pickled) arrays, or a
    header that declares more data than the member holds (checked before anything is allocated)."""
    try:
        if not path.is_file():
            raise ValueError("it is a directory" if path.is_dir() else "no such file")
        if not zipfile.is_zipfile(path):
            raise ValueError("not an .npz archive (numpy.savez writes one)")
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                _check_npy_header(zf, info)
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except UnreadableFile:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, MemoryError) as e:
        raise UnreadableFile(f"cannot read {path}: {_reason(e)}") from None


def _check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    if not info.filename.endswith(".npy"):
        raise ValueError(f"member {info.filename!r} is not an array")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    if dtype.hasobject:
        raise ValueError(f"array {info.filename[:-4]!r} holds Python objects (refused: no pickles)")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise ValueError(f"array {info.filename[:-4]!r} declares shape {shape}, more than the file holds")


@contextlib.contextmanager
def reading_run(run_dir: Path) -> Iterator[None]:
    """Turn a damaged file of a finished run (unreadable, or missing a field) into one line naming the
    run and the remedy."""
    try:
        yield
    except (UnreadableFile, KeyError, TypeError, ValueError) as e:
        detail = str(e) if isinstance(e, UnreadableFile) else f"{type(e).__name__}: {_reason(e)}"
        raise TicketlabError(
            f"run {run_dir} is damaged ({detail}); rerun with --repair to retrain it, or delete that directory"
        ) from None


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
