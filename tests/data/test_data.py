"""Protocol §1: the MNIST split, scaling, and the checks that refuse bad data files."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from ticketlab.data import load_dataset
from ticketlab.data.dataset import split_indices
from ticketlab.data.idx import IDX_FILES, mnist_dir
from ticketlab.core.errors import TicketlabError


def test_val_indices_equal_the_legacy_numpy_rule():
    train, val = split_indices(60000)
    np.random.seed(0)
    expected = np.random.choice(range(60000), size=5000, replace=False)
    assert np.array_equal(val, expected)
    assert val[:5].tolist() == [3048, 19563, 58303, 8870, 40228]
    assert len(train) == 55000 and np.all(np.diff(train) > 0)
    assert len(np.intersect1d(train, val)) == 0


def test_mnist_split_sizes_scaling_and_order(mnist):
    assert (len(mnist.train_x), len(mnist.val_x), len(mnist.test_x)) == (55000, 5000, 10000)
    assert mnist.train_x.shape[1] == 784
    assert float(mnist.train_x.min()) == 0.0 and float(mnist.train_x.max()) == 1.0
    # The canonical first training labels are 5 0 4 1 9 2 1 3 1 4; index 0..9 are all train (val starts elsewhere).
    train_idx, val_idx = split_indices(60000)
    assert mnist.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    raw = gzip.decompress((mnist_dir() / "train-images-idx3-ubyte.gz").read_bytes())
    pixels = np.frombuffer(raw, np.uint8, offset=16).reshape(60000, 784)
    i = int(val_idx[7])
    assert np.array_equal(mnist.val_x[7].numpy(), pixels[i].astype(np.float32) / np.float32(255))
    assert np.array_equal(mnist.train_x[-1].numpy(), pixels[train_idx[-1]].astype(np.float32) / np.float32(255))


@pytest.fixture
def mnist_copy(tmp_path) -> Path:
    for stem in IDX_FILES:
        shutil.copy(mnist_dir() / f"{stem}.gz", tmp_path / f"{stem}.gz")
    return tmp_path


def _rewrite(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data, compresslevel=1))


def test_checksum_failure_on_corrupted_copy(mnist_copy):
    path = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[100] = (data[100] + 1) % 10  # one label changed: still a valid IDX file
    _rewrite(path, bytes(data))
    with pytest.raises(TicketlabError, match="checksum mismatch.*t10k-labels"):
        load_dataset("mnist", mnist_copy)


def test_truncated_gzip(mnist_copy):
    path = mnist_copy / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(TicketlabError, match="truncated or corrupt gzip"):
        load_dataset("mnist", mnist_copy)


def _fashion_like(tmp_path: Path, mutate=None) -> Path:
    """A tiny IDX dataset in MNIST format (6000 train so the 5000-image val split fits)."""
    rng = np.random.RandomState(1)
    arrays = {
        "train-images-idx3-ubyte": rng.randint(0, 256, (6000, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte": rng.randint(0, 10, 6000).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.randint(0, 256, (50, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.randint(0, 10, 50).astype(np.uint8),
    }
    for stem, a in arrays.items():
        header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        data = header + a.tobytes()
        if mutate is not None:
            data = mutate(stem, data)
        (tmp_path / stem).write_bytes(data)  # raw, not gzipped: both are accepted
    return tmp_path


def test_fashion_mnist_reads_idx_directory(tmp_path):
    ds = load_dataset("fashion-mnist", _fashion_like(tmp_path))
    assert (len(ds.train_x), len(ds.val_x), len(ds.test_x)) == (1000, 5000, 50)
    assert ds.train_x.shape[1] == 784


def test_wrong_idx_magic(tmp_path):
    def bad_magic(stem, data):
        return b"\x00\x00\x09" + data[3:] if stem == "t10k-images-idx3-ubyte" else data

    with pytest.raises(TicketlabError, match="wrong magic"):
        load_dataset("fashion-mnist", _fashion_like(tmp_path, bad_magic))


def test_idx_size_mismatch(tmp_path):
    def cut(stem, data):
        return data[:-7] if stem == "train-images-idx3-ubyte" else data

    with pytest.raises(TicketlabError, match="IDX header promises"):
        load_dataset("fashion-mnist", _fashion_like(tmp_path, cut))


def test_missing_files(tmp_path):
    with pytest.raises(TicketlabError, match="missing data file"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(TicketlabError, match="Fashion-MNIST not found"):
        load_dataset("fashion-mnist", tmp_path / "nowhere")


def test_unknown_dataset():
    with pytest.raises(TicketlabError, match="unknown dataset 'svhn'.*mnist"):
        load_dataset("svhn")
