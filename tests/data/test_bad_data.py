"""Bad data contents through the command line: one line on stderr, exit 2, and no run left behind."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from test_cifar import py2_pickle
from ticketlab.cli import main


def write_idx(folder: Path, n_train: int = 5100, n_test: int = 20, side: int = 28, max_label: int = 9) -> Path:
    """The four IDX files of an MNIST-format dataset (raw, not gzipped: both are read)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    arrays = {
        "train-images-idx3-ubyte": rng.randint(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": rng.randint(0, max_label + 1, n_train),
        "t10k-images-idx3-ubyte": rng.randint(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": rng.randint(0, max_label + 1, n_test),
    }
    for stem, a in arrays.items():
        a = a.astype(np.uint8)
        header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        (folder / stem).write_bytes(header + a.tobytes())
    return folder


def write_cifar(root: Path, per_batch: list[int]) -> Path:
    """cifar-10-batches-py with data_batch_1..5 of the given sizes and a 20-image test batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for i, n in enumerate(per_batch, start=1):
        data = rng.randint(0, 256, (n, 3072)).astype(np.uint8)
        (folder / f"data_batch_{i}").write_bytes(py2_pickle(data, rng.randint(0, 10, n).tolist()))
    test = rng.randint(0, 256, (20, 3072)).astype(np.uint8)
    (folder / "test_batch").write_bytes(py2_pickle(test, rng.randint(0, 10, 20).tolist()))
    return root


def refused(args: list[str], capsys, *needles: str) -> str:
    """Run the command line; assert exit 2 and one `ticketlab: error:` line containing every needle."""
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticketlab: error: "), captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "shape,needles",
    [
        ({"n_train": 100}, ("100 training images", "5,060", "validation")),
        ({"max_label": 255}, ("train-labels-idx1-ubyte", "labels outside 0..9", "255")),
        ({"side": 10}, ("train-images-idx3-ubyte", "10 x 10", "28 x 28")),
    ],
    ids=["100-images", "labels-to-255", "10x10-images"],
)
def test_fashion_mnist_contents(tmp_path, capsys, shape, needles):
    data = write_idx(tmp_path / "fm", **shape)
    out = tmp_path / "out"
    refused(["train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--iterations", "1", "--out", str(out)],
            capsys, *needles)
    assert not list(out.glob("train_*"))


@pytest.mark.parametrize("per_batch,total", [([100] * 5, "500"), ([1000, 1000, 1000, 1000, 1001], "5,001")])
def test_cifar10_too_few_images(tmp_path, capsys, per_batch, total):
    root = write_cifar(tmp_path / "cifar", per_batch)
    out = tmp_path / "out"
    refused(["train", "--net", "conv2", "--data-dir", str(root), "--iterations", "1", "--out", str(out)],
            capsys, f"{total} training images", "cifar-10-batches-py", "5,060")
    assert not list(out.glob("train_*"))


def test_a_batch_larger_than_the_small_training_split_is_refused(tmp_path, capsys):
    data = write_idx(tmp_path / "fm", n_train=5100)  # 100 left for training after the validation split
    refused(["train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--batch-size", "500",
             "--iterations", "1", "--out", str(tmp_path / "out")], capsys, "--batch-size 500", "100 training images")


def test_sweep_file_with_a_net_that_does_not_fit_writes_nothing(tmp_path, capsys):
    """(The command line's train is in tests/training/test_config.py.)"""
    from test_config import registry_restored
    from ticketlab.data import load_dataset, register_dataset

    spec = tmp_path / "cm.toml"
    spec.write_text('name = "cm"\nkind = "iterative"\nnet = "conv6"\ndataset = "toy-6x6"\nseeds = 1\niterations = 5\n'
                    'rounds = 1\n')
    out = tmp_path / "out"
    with registry_restored():
        register_dataset("toy-6x6", lambda data_dir, download: load_dataset("mnist"), (1, 6, 6), train_size=600)
        refused(["sweep", str(spec), "--out", str(out)], capsys, "cm.toml:3: field 'net' conv6 does not fit dataset toy-6x6")
    assert not out.exists()  # no "running" manifest in OUT/sweeps


def test_mnist_data_dir_that_is_not_canonical_mnist_says_what_is_wrong_with_it(tmp_path, capsys):
    data = write_idx(tmp_path / "other")
    line = refused(["train", "--data-dir", str(data), "--iterations", "1", "--out", str(tmp_path / "out")], capsys,
                   "checksum mismatch", f"--data-dir {data} must hold the four canonical MNIST files")
    assert "reinstall" not in line
