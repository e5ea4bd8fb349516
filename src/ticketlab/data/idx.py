"""MNIST and Fashion-MNIST from IDX files (protocol §1).

MNIST ships inside the package and is checksum-verified on every load. Fashion-MNIST is read from
a directory of IDX files.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from ..core.errors import TicketlabError
from .dataset import N_CLASSES, Dataset, ImageShape, from_arrays

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# The MNIST format's images: 28 x 28 grey, for MNIST and Fashion-MNIST alike.
IMAGE_SHAPE: ImageShape = (1, 28, 28)

# SHA-256 of the decompressed canonical IDX files (docs/data.md).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IDX_FILES = tuple(MNIST_SHA256)

_IDX_DTYPES = {0x08: np.uint8}


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed bytes of an IDX file (gzip or raw), with a one-line error if unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TicketlabError(f"cannot read data file {path}: {e.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error):
            raise TicketlabError(
                f"data file {path} is a truncated or corrupt gzip: replace it with a fresh copy"
            ) from None
    return raw


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes (magic 0x0000 08 NDIM, big-endian dims) into a uint8 array."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise TicketlabError(f"{source} is not an IDX uint8 file (wrong magic number): replace it with a fresh copy")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise TicketlabError(f"{source} is truncated (incomplete IDX header): replace it with a fresh copy")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise TicketlabError(
            f"{source} has {len(data)} bytes but its IDX header promises {expected}: replace it with a fresh copy"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise TicketlabError(f"missing data file {directory / stem}(.gz): put the four IDX files in {directory}")


def load_idx_dir(
    directory: Path, sha256: dict[str, str] | None = None, checksum_fix: str = "reinstall ticketlab"
) -> dict[str, np.ndarray]:
    """The four MNIST-format IDX arrays from a directory, checksum-verified when `sha256` is given
    (`checksum_fix` is the remedy a mismatch names). Images must be N x 28 x 28 and labels 0..9."""
    arrays = {}
    for stem in IDX_FILES:
        path = _find_idx(directory, stem)
        data = read_idx_bytes(path)
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256[stem]:
            raise TicketlabError(
                f"checksum mismatch for {path}: the file is corrupt or not the canonical MNIST; {checksum_fix}"
            )
        arrays[stem] = _checked_idx(parse_idx(data, str(path)), stem, path)
    return arrays


def _checked_idx(a: np.ndarray, stem: str, path: Path) -> np.ndarray:
    """An IDX array that has the MNIST layout: 28 x 28 images, or one label 0..9 per image."""
    if "images" in stem:
        side = IMAGE_SHAPE[1:]
        if a.ndim != 3 or a.shape[1:] != side:
            got = " x ".join(map(str, a.shape[1:])) or "scalars"
            raise TicketlabError(
                f"{path} holds images of {got} pixels, but the MNIST format (MNIST, Fashion-MNIST) is 28 x 28: "
                "replace it with the dataset's own file"
            )
    elif a.ndim != 1:
        raise TicketlabError(f"{path} is not a label file (it has {a.ndim} dimensions, labels have 1): replace it")
    elif len(a) and a.max() >= N_CLASSES:
        raise TicketlabError(
            f"{path} has labels outside 0..{N_CLASSES - 1} (found up to {a.max()}): it is not a 10-class "
            "MNIST-format label file; replace it"
        )
    return a


def _from_idx(name: str, directory: Path, arrays: dict[str, np.ndarray]) -> Dataset:
    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    t_images, t_labels = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    if images.shape[0] != labels.shape[0] or t_images.shape[0] != t_labels.shape[0]:
        raise TicketlabError(f"{name}: image and label files disagree on the number of examples")
    return from_arrays(name, images.reshape(len(images), -1), labels, t_images.reshape(len(t_images), -1), t_labels,
                       source=f"{name} in {directory}")


def mnist_dir() -> Path:
    """The folder of the MNIST copy shipped inside the package."""
    return Path(str(resources.files("ticketlab.data") / "mnist"))


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """MNIST from the shipped copy, or from `data_dir`, which must then hold the canonical files.

    `download` is ignored: MNIST ships with ticketlab."""
    if not data_dir:
        return _from_idx("mnist", mnist_dir(), load_idx_dir(mnist_dir(), MNIST_SHA256))
    # MNIST is checksum-pinned: a --data-dir for it must hold the canonical files, not just any IDX data.
    directory = Path(data_dir)
    fix = (f"--data-dir {directory} must hold the four canonical MNIST files unmodified; drop --data-dir to use "
           "the copy shipped with ticketlab, or train on other MNIST-format data with --dataset fashion-mnist")
    return _from_idx("mnist", directory, load_idx_dir(directory, MNIST_SHA256, fix))


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """Fashion-MNIST from `data_dir` (default: `FASHION_MNIST_DIR`, Debian's dataset-fashion-mnist).

    `download` is ignored: there is no download for it; install the Debian package instead."""
    directory = Path(data_dir or FASHION_MNIST_DIR)
    if not directory.is_dir():
        raise TicketlabError(
            f"Fashion-MNIST not found in {directory}: install Debian's dataset-fashion-mnist or pass --data-dir"
        )
    return _from_idx("fashion-mnist", directory, load_idx_dir(directory))
