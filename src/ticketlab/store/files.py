"""The run store: one directory per run, named by its config hash, written atomically and checked.

A run is built in a hidden temporary directory and renamed into place only when complete, so a
killed run never leaves a directory (or a `summary.json`) that looks finished. Before the rename
the SHA-256 of every file goes into `checksums.json`; a finished run is reused only when its files
still match (`finished`), and one that does not is reported with its path and the remedy, or
retrained under `--repair`. Temporary directories carry the host and process that build them, so
a later run can remove those of processes that died. Files use safe formats only: JSON, and NumPy
`.npz` read with `allow_pickle=False`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..core.errors import TicketlabError
from ..core.paths import check_output_file, check_output_folder

SUMMARY = "summary.json"


CHECKSUMS = "checksums.json"
TMP_PREFIX = ".tmp-"


def ensure_writable(root: Path, subdirs: tuple[str, ...] = ()) -> None:
    """Create `root` (and `subdirs` of it) if needed and prove we can write there, before any work starts."""
    check_output_folder(root)
    for folder in (root, *(root / d for d in subdirs)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                pass
        except OSError as e:
            what = " (it is a file, not a folder)" if isinstance(e, (FileExistsError, NotADirectoryError)) else ""
            raise TicketlabError(f"cannot write to output directory {folder}: {_reason(e)}{what}; pass a writable --out") from None


def is_complete(run_dir: Path) -> bool:
    """Whether `run_dir` holds a finished run (its summary is written last); `finished` also checks its files."""
    return (run_dir / SUMMARY).is_file()


def damaged_files(run_dir: Path, names: tuple[str, ...] | None = None) -> list[str]:
    """Files of a finished run (all, or those of `names`) that do not match its `checksums.json`
    (missing ones too); [] if all match. A run written before checksums were recorded has nothing to
    check against: []."""
    path = run_dir / CHECKSUMS
    if not path.exists():
        return []
    try:
        recorded = read_json(path)["sha256"]
        if not isinstance(recorded, dict):
            raise TypeError
    except (UnreadableFile, KeyError, TypeError):
        return [CHECKSUMS]
    return [name for name, digest in sorted(recorded.items())
            if (names is None or name in names) and _sha256(run_dir / name) != digest]


CONFIG = "config.json"


def finished(run_dir: Path, repair: bool = False, names: tuple[str, ...] | None = None) -> bool:
    """Whether a run is done and may be reused or read: every command reads a run only after this.

    It is complete (its summary exists); its files (or those of `names`, what a reader needs, and its
    `config.json` always) match the checksums recorded when it was written; and that config belongs
    to this directory (`naming.name_problem`: the name it records, and the hash of its identity).
    A run that fails is a one-line error naming it and the remedy; with `repair` it is removed
    instead (and False returned, so that the caller trains it again)."""
    if not is_complete(run_dir):
        return False
    bad = damaged_files(run_dir, None if names is None else tuple(dict.fromkeys((*names, CONFIG))))
    if bad:
        problem = (f"{', '.join(bad)} {'does' if len(bad) == 1 else 'do'} not match the checksums recorded when it "
                   "was written")
    else:
        problem = _identity_problem(run_dir)
    if problem is None:
        return True
    if not repair:
        raise TicketlabError(
            f"run {run_dir} is damaged ({problem}); rerun the sweep (or train) with --repair to retrain it, or delete "
            "that directory"
        )
    _remove(run_dir)
    return False


def _identity_problem(run_dir: Path) -> str | None:
    from .naming import name_problem

    try:
        record = read_json(run_dir / CONFIG)
    except UnreadableFile as e:
        return str(e)
    return name_problem(run_dir.name, record)


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _remove(run_dir: Path) -> None:
    """Take a run out of the store: renamed out of its name first (one step), then deleted."""
    doomed = run_dir.with_name(f"{TMP_PREFIX}{run_dir.name}-{_owner()}-removed")
    os.replace(run_dir, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def building(run_dir: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success its checksums are written and it becomes `run_dir`
    in one rename (with the permissions a plain mkdir would give it, not mkdtemp's 0700, so that a
    store on a shared filesystem stays readable by the other machines' users)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f"{TMP_PREFIX}{run_dir.name}-{_owner()}-"))
    try:
        yield tmp
        if not (tmp / SUMMARY).is_file():
            raise RuntimeError(f"run {run_dir.name} built without a summary")
        names = sorted(p.name for p in tmp.iterdir() if p.is_file())
        write_json(tmp / CHECKSUMS, {"sha256": {name: _sha256(tmp / name) for name in names}})
        os.chmod(tmp, 0o777 & ~_umask())
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


@contextlib.contextmanager
def holding(lock_path: Path, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """An exclusive lock on `lock_path` (created if needed) for the duration: a second process asking
    for it blocks until the first releases it or dies (the kernel drops a dead process's lock, so a
    SIGKILL leaves none behind). `waiting(pid)` is called once if it has to wait, with the holder's
    pid as it wrote it."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                f.seek(0)
                waiting(f.read().strip())
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"{_owner()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary run directories in `folder` left by processes of this host that are no
    longer alive (a SIGKILL leaves them); returns how many. Other hosts' are left alone."""
    if not folder.is_dir():
        return 0
    host = socket.gethostname()
    removed = 0
    for path in folder.glob(f"{TMP_PREFIX}*"):
        owner = _tmp_owner(path.name, host)
        if owner is not None and not _alive(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _tmp_owner(name: str, host: str) -> int | None:
    marker = f"-{host}-"
    if marker not in name:
        return None
    pid = name.rsplit(marker, 1)[1].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n")
    os.replace(tmp, path)


def write_output(path: Path, write: Callable[[Path], Any], what: str = "output file") -> None:
    """Write a file the user asked for: `write(tmp)` writes a hidden sibling, renamed onto `path` only
    once complete, so a failed or interrupted write never leaves a partial file under that name. The
    path is checked first (`core.paths.check_output_file`: not empty, not a folder, its folder there,
    not write-protected). The file gets the permissions a plain open() gives (0666 less the umask),
    whatever the writer's temporary file had. An OSError becomes one line naming `path` and the
    system's reason. A path that exists and is not a regular file (a FIFO, /dev/stdout) is written in
    place: renaming over it would replace it."""
    path = check_output_file(path, what)
    if path.exists() and not path.is_file() and not path.is_dir():
        target = tmp = path
    else:
        target = Path(os.path.realpath(path)) if path.is_symlink() else path
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        if tmp is not target:
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
    except OSError as e:
        raise TicketlabError(f"cannot write {path}: {e.strerror or e}; give a file path in a folder you can write to") from None
    finally:
        if tmp is not target:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


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
            with open(path, "rb") as f:
                zip_start = f.read(4) == b"PK\x03\x04"
            raise ValueError("a truncated or damaged .npz archive" if zip_start else "not an .npz archive (numpy.savez writes one)")
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
            f"run {run_dir} is damaged ({detail}); rerun the sweep (or train) with --repair to retrain it, or delete "
            "that directory"
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


NUMBER = (int, float)
_TYPE_NAMES = {(int,): "an integer", NUMBER: "a number", (str,): "a string", (bool,): "true or false"}


def json_type(value: Any) -> str:
    """What JSON calls the type of a decoded value."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def checked(record: Any, fields: dict[str, tuple[type, ...]], source: str) -> dict[str, Any]:
    """`record` if it is a JSON object with each of `fields` of its type; `UnreadableFile` naming the
    file (`source`, e.g. "summary.json": `reading_run` names the run) and the field otherwise.
    Other keys are left alone, so that a store written by a newer ticketlab still reads."""
    if not isinstance(record, dict):
        raise UnreadableFile(f"{source} holds a JSON {json_type(record)}, not an object")
    for key, types in fields.items():
        if key not in record:
            raise UnreadableFile(f"{source} has no field {key!r}")
        value = record[key]
        # JSON true/false are Python bools, which are ints: only a bool field takes them.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise UnreadableFile(f"{source} has {key} = {value!r}, not {_TYPE_NAMES[types]}")
    return record
