"""CIFAR-10 from the official "python version" batches, unpickled safely, optionally downloaded.

The batch files are pickles, and an ordinary unpickle of an untrusted pickle can run arbitrary
code, so they are read with an unpickler that resolves only the few numpy globals an array needs.
"""
from __future__ import annotations

import codecs
import hashlib
import http.client
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from ..core.errors import TicketlabError
from .dataset import N_CLASSES, Dataset, ImageShape, from_arrays

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
IMAGE_SHAPE: ImageShape = (3, 32, 32)

_CHUNK = 1 << 20

try:  # numpy >= 2 moved the internals to numpy._core; both spellings occur in existing pickles
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 protocol-2 pickles store bytes as _codecs.encode(str, "latin1"); any other codec
    # would be a sign of a crafted file, so only that one is honoured.
    if encoding not in ("latin1", "latin-1"):
        raise TicketlabError(f"pickle asks for codec {encoding!r}: refusing it (CIFAR-10 pickles use only latin1)")
    return codecs.encode(text, "latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        # Returning pre-imported objects (instead of importing by name) means a crafted pickle
        # cannot even trigger a module import.
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise TicketlabError(
                f"{self._source} refers to forbidden Python object {module}.{name}: refusing to load it "
                "(CIFAR-10 pickles hold only numpy arrays); replace the file with a fresh copy"
            ) from None


def default_data_dir() -> Path:
    """`$TICKETLAB_DATA/cifar10` if TICKETLAB_DATA is set, else `~/.cache/ticketlab/cifar10`."""
    base = os.environ.get("TICKETLAB_DATA")
    if base:
        return Path(base).expanduser() / "cifar10"
    return Path.home() / ".cache" / "ticketlab" / "cifar10"


def _find_batches(root: Path) -> Path | None:
    """The folder holding the batch files: `root/cifar-10-batches-py`, or `root` itself."""
    if (root / BATCHES_DIR).is_dir():
        return root / BATCHES_DIR
    if root.is_dir() and (root.name == BATCHES_DIR or (root / TRAIN_FILES[0]).exists()):
        return root
    return None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (images (N, 3, 32, 32) uint8, labels (N,) int64), validated."""
    source = str(path)
    if not path.is_file():
        raise TicketlabError(
            f"missing CIFAR-10 file {path}: the copy is incomplete; delete {path.parent} and use --download, "
            "or put the official file there"
        )
    try:
        with path.open("rb") as f:
            obj = _NumpyOnlyUnpickler(f, source).load()
    except TicketlabError:
        raise
    except OSError as e:
        raise TicketlabError(f"cannot read CIFAR-10 file {path}: {e.strerror}") from None
    except Exception as e:  # a corrupt pickle can fail in many ways inside pickle and numpy
        raise TicketlabError(
            f"{path} is not a valid CIFAR-10 pickle ({type(e).__name__}): replace it with a fresh copy"
        ) from None
    if not isinstance(obj, dict):
        raise TicketlabError(
            f"{path} is not a valid CIFAR-10 pickle (holds a {type(obj).__name__}, not a dict): "
            "replace it with a fresh copy"
        )
    # The official files were written by Python 2, so with encoding="bytes" their keys are bytes.
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise TicketlabError(
            f"{path} is not a valid CIFAR-10 pickle (no 'data' or 'labels' entry): replace it with a fresh copy"
        )
    n_pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != n_pixels:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise TicketlabError(
            f"{path} has the wrong shape: 'data' must be a uint8 array N x {n_pixels}, got {got}; "
            "replace it with a fresh copy"
        )
    try:
        y = np.asarray(labels)
    except Exception:
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise TicketlabError(f"{path} has malformed 'labels' (must be a list of ints): replace it with a fresh copy")
    if len(y) != len(data):
        raise TicketlabError(
            f"{path} has {len(data)} images but {len(y)} labels: the counts must match; replace it with a fresh copy"
        )
    if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
        raise TicketlabError(
            f"{path} has labels outside 0..{N_CLASSES - 1} (found {y.min()}..{y.max()}): replace it with a fresh copy"
        )
    # Each row is channel-major (1024 R, 1024 G, 1024 B), each plane row-major, so a plain reshape works.
    return data.reshape(len(data), *IMAGE_SHAPE), y.astype(np.int64)


def load_cifar10(data_dir: str | os.PathLike | None, download: bool = False) -> Dataset:
    """CIFAR-10 as a Dataset: train = data_batch_1..5 (minus the protocol §1 val split), test = test_batch.

    `data_dir` holds `cifar-10-batches-py/` (or is that folder); None means `default_data_dir()`.
    With `download`, a missing copy is fetched and checksum-verified first.
    """
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    batches = _find_batches(root)
    if batches is None:
        if download:
            batches = download_cifar10(root)
        elif root.is_dir():
            raise TicketlabError(
                f"no {BATCHES_DIR} folder in {root}: pass --data-dir pointing at the extracted CIFAR-10 "
                "python version, or use --download"
            )
        else:
            raise TicketlabError(f"CIFAR-10 directory {root} does not exist: pass --data-dir or use --download")
    train = [read_batch(batches / name) for name in TRAIN_FILES]
    test_x, test_y = read_batch(batches / TEST_FILE)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return from_arrays("cifar10", train_x, train_y, test_x, test_y, source=f"CIFAR-10 in {batches}")


def _fetch(url: str, dest: BinaryIO) -> str:
    """Stream `url` into `dest`, showing progress on stderr; return the MD5 hex digest."""
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    try:
        with urllib.request.urlopen(url) as response:
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(_CHUNK):
                dest.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                of_total = f" / {total / 1e6:.1f}" if total else ""
                print(f"\rdownloading CIFAR-10: {done / 1e6:.1f}{of_total} MB", end="", file=sys.stderr, flush=True)
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise TicketlabError(
            f"cannot download {url}: {e}; check the connection, or fetch it by hand and pass --data-dir"
        ) from None
    finally:
        if done:  # end the progress line; a failure before any byte arrived is the error's one line alone
            print(file=sys.stderr, flush=True)
    return digest.hexdigest()


def _safe_members(archive: tarfile.TarFile, source: str) -> list[tarfile.TarInfo]:
    """The archive's `cifar-10-batches-py/` entries, refusing any that could escape the target."""
    members = []
    for member in archive.getmembers():
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
            raise TicketlabError(
                f"{source} contains an unsafe entry {member.name!r}: refusing to extract it; "
                "download the official archive"
            )
        if path.parts and path.parts[0] == BATCHES_DIR:
            members.append(member)
    return members


def download_cifar10(root: str | os.PathLike, url: str | None = None, md5: str | None = None) -> Path:
    """Download, verify and extract CIFAR-10 into `root/cifar-10-batches-py`; return that path.

    The archive and the extraction live in temporary names inside `root` and the folder appears
    by one atomic rename, so an interrupted run never leaves a copy that looks complete.
    """
    url = url or CIFAR10_URL
    md5 = (md5 or CIFAR10_MD5).lower()
    root = Path(root).expanduser()
    target = root / BATCHES_DIR
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TicketlabError(f"cannot create {root}: {e.strerror}; pass a writable --data-dir") from None
    fd, archive_name = tempfile.mkstemp(dir=root, prefix=".cifar-10-", suffix=".tar.gz.part")
    archive_path = Path(archive_name)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-10-extract-"))
    try:
        with os.fdopen(fd, "wb") as f:
            got = _fetch(url, f)
        if got != md5:
            raise TicketlabError(
                f"checksum mismatch for {url}: MD5 {got}, expected {md5}; the download is corrupt, retry --download"
            )
        try:
            with tarfile.open(archive_path, "r:gz") as archive:
                members = _safe_members(archive, url)
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters; _safe_members vetted the names
                    archive.extractall(staging, members=members)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise TicketlabError(f"{url} is not a valid tar.gz archive ({e}): retry --download") from None
        if not (staging / BATCHES_DIR).is_dir():
            raise TicketlabError(f"{url} has no {BATCHES_DIR}/ folder: it is not the CIFAR-10 python version")
        try:
            os.replace(staging / BATCHES_DIR, target)
        except OSError as e:
            raise TicketlabError(
                f"cannot move the extracted data to {target}: {e.strerror}; delete {target} and retry --download"
            ) from None
    finally:
        archive_path.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return target
