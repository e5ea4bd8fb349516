"""CIFAR-10 loading from small files in the official format: layout, scaling, split, errors, download."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab.data import cifar, load_dataset
from ticketlab.core.errors import TicketlabError

N_PER_BATCH = 1100  # 5 x 1100 = 5500 >= the 5000 validation images from_arrays draws
N_TEST = 200
N_TRAIN = 5 * N_PER_BATCH


def py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled exactly as Python 2 wrote the official files: protocol 2, byte strings,
    `numpy.core.multiarray._reconstruct` (the pre-numpy-2 name)."""
    n = len(data)
    parts = [
        b"\x80\x02}(U\x04data",
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01",
        b"J" + struct.pack("<i", n) + b"M\x00\x0c\x86",  # shape (n, 3072)
        b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
        b"\x89T" + struct.pack("<I", data.nbytes) + np.ascontiguousarray(data).tobytes() + b"tb",
        b"U\x06labels](",
        *(b"K" + bytes([label]) for label in labels),
        b"eu.",
    ]
    return b"".join(parts)


def make_arrays(seed: int = 123) -> tuple[list[np.ndarray], list[list[int]], np.ndarray, list[int]]:
    rng = np.random.RandomState(seed)
    train = [rng.randint(0, 256, (N_PER_BATCH, 3072)).astype(np.uint8) for _ in range(5)]
    labels = [rng.randint(0, 10, N_PER_BATCH).tolist() for _ in range(5)]
    test = rng.randint(0, 256, (N_TEST, 3072)).astype(np.uint8)
    test_labels = rng.randint(0, 10, N_TEST).tolist()
    # Known pixels in the first test image: R plane (row 2, col 5) = 255, G (0, 0) = 51, B (31, 31) = 0.
    test[0, 0 * 1024 + 2 * 32 + 5] = 255
    test[0, 1 * 1024 + 0 * 32 + 0] = 51
    test[0, 2 * 1024 + 31 * 32 + 31] = 0
    return train, labels, test, test_labels


def write_batches(folder: Path, train, labels, test, test_labels) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (x, y) in enumerate(zip(train, labels), start=1):
        (folder / f"data_batch_{i}").write_bytes(py2_pickle(x, y))
    (folder / "test_batch").write_bytes(py2_pickle(test, test_labels))
    return folder


@pytest.fixture(scope="module")
def arrays():
    return make_arrays()


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory, arrays) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_batches(root / "cifar-10-batches-py", *arrays)
    return root


@pytest.fixture(scope="module")
def loaded(cifar_root):
    return cifar.load_cifar10(cifar_root)


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    """A complete but tiny copy, for error cases that fail before the split needs 5000 images."""
    rng = np.random.RandomState(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in (*cifar.TRAIN_FILES, cifar.TEST_FILE):
        (folder / name).write_bytes(py2_pickle(rng.randint(0, 256, (4, 3072)).astype(np.uint8), [0, 1, 2, 3]))
    return tmp_path


def error_of(root, **kwargs) -> str:
    with pytest.raises(TicketlabError) as info:
        cifar.load_cifar10(root, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- layout, scaling, split -------------------------------------------------------------------------


def test_shapes_and_dtypes(loaded):
    assert loaded.name == "cifar10"
    assert loaded.train_x.shape == (N_TRAIN - 5000, 3, 32, 32)
    assert loaded.val_x.shape == (5000, 3, 32, 32)
    assert loaded.test_x.shape == (N_TEST, 3, 32, 32)
    for x in (loaded.train_x, loaded.val_x, loaded.test_x):
        assert x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    for y in (loaded.train_y, loaded.val_y, loaded.test_y):
        assert y.dtype == torch.int64


def test_scaling_and_channel_major_layout(loaded):
    image = loaded.test_x[0]
    assert image[0, 2, 5].item() == 1.0
    assert image[1, 0, 0].item() == float(np.float32(51) / np.float32(255))
    assert image[2, 31, 31].item() == 0.0


def test_test_split_matches_file(loaded, arrays):
    _, _, test, test_labels = arrays
    expected = test.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)
    assert np.array_equal(loaded.test_x.numpy(), expected)
    assert loaded.test_y.tolist() == test_labels


def test_val_and_train_follow_spec_split_in_file_order(loaded, arrays):
    train, labels, _, _ = arrays
    all_x = np.concatenate(train).reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)
    all_y = np.concatenate([np.array(y) for y in labels])
    val = np.random.RandomState(0).choice(N_TRAIN, 5000, replace=False)
    rest = np.setdiff1d(np.arange(N_TRAIN), val)  # sorted: file order
    assert np.array_equal(loaded.val_x.numpy(), all_x[val])
    assert loaded.val_y.tolist() == all_y[val].tolist()
    assert np.array_equal(loaded.train_x.numpy(), all_x[rest])
    assert loaded.train_y.tolist() == all_y[rest].tolist()


def test_accepts_the_batches_folder_itself_and_load_dataset(cifar_root, loaded):
    direct = cifar.load_cifar10(cifar_root / "cifar-10-batches-py")
    assert torch.equal(direct.val_x, loaded.val_x)
    via_data = load_dataset("cifar10", cifar_root)
    assert torch.equal(via_data.test_y, loaded.test_y)


def test_default_dir_from_env(monkeypatch, tmp_path, cifar_root):
    monkeypatch.setenv("TICKETLAB_DATA", str(tmp_path))
    assert cifar.default_data_dir() == tmp_path / "cifar10"
    (tmp_path / "cifar10").symlink_to(cifar_root, target_is_directory=True)
    assert cifar.load_cifar10(None).test_x.shape == (N_TEST, 3, 32, 32)
    monkeypatch.delenv("TICKETLAB_DATA")
    assert cifar.default_data_dir() == Path.home() / ".cache" / "ticketlab" / "cifar10"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_also_load(tmp_path, protocol):
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": data, "labels": [3, 7]}, protocol=protocol))
    x, y = cifar.read_batch(path)
    assert x.shape == (2, 3, 32, 32) and np.array_equal(x.reshape(2, -1), data)
    assert y.tolist() == [3, 7]


# --- errors -----------------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    message = error_of(tmp_path / "nope")
    assert "does not exist" in message and "--data-dir" in message and "--download" in message


def test_directory_without_batches(tmp_path):
    message = error_of(tmp_path)
    assert "cifar-10-batches-py" in message and "--download" in message


def test_missing_batch(tiny_root):
    (tiny_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    message = error_of(tiny_root)
    assert "missing" in message and "data_batch_3" in message


def test_corrupt_pickle(tiny_root):
    (tiny_root / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x02}(U\x04data garbage")
    message = error_of(tiny_root)
    assert "not a valid" in message and "data_batch_2" in message


def test_pickle_that_is_not_a_dict(tiny_root):
    (tiny_root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    assert "not a dict" in error_of(tiny_root)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_forbidden_global_is_refused_without_running_it(tiny_root, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}, protocol=2)
    (tiny_root / "cifar-10-batches-py" / "data_batch_1").write_bytes(payload)
    message = error_of(tiny_root)
    assert "forbidden" in message and "system" in message
    assert not marker.exists()


def test_codec_other_than_latin1_is_refused(tmp_path):
    # _codecs.encode is allowed only for the latin1 byte strings Python 3 protocol-2 pickles contain.
    class Rot13:
        def __reduce__(self):
            import _codecs

            return (_codecs.encode, ("abc", "rot13"))

    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": Rot13(), b"labels": []}, protocol=2))
    with pytest.raises(TicketlabError, match="codec"):
        cifar.read_batch(path)


@pytest.mark.parametrize(
    "data, labels, word",
    [
        (np.zeros((4, 3000), np.uint8), [0, 1, 2, 3], "shape"),
        (np.zeros((4, 3, 32, 32), np.uint8), [0, 1, 2, 3], "shape"),
        (np.zeros((4, 3072), np.float32), [0, 1, 2, 3], "uint8"),
        (np.zeros((4, 3072), np.uint8), [0, 1, 2], "labels"),
        (np.zeros((4, 3072), np.uint8), [0, 1, 2, 10], "0..9"),
        (np.zeros((4, 3072), np.uint8), [0, 1, 2, -1], "0..9"),
        (np.zeros((4, 3072), np.uint8), ["a", "b", "c", "d"], "labels"),
    ],
)
def test_wrong_shapes(tiny_root, data, labels, word):
    (tiny_root / "cifar-10-batches-py" / "data_batch_4").write_bytes(
        pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
    )
    message = error_of(tiny_root)
    assert word in message and "data_batch_4" in message


# --- download ---------------------------------------------------------------------------------------


def make_tarball(path: Path, arrays, extra: dict[str, bytes] | None = None) -> str:
    """A tar.gz shaped like the official one; returns its MD5."""
    train, labels, test, test_labels = arrays
    files = {f"cifar-10-batches-py/data_batch_{i}": py2_pickle(x, y) for i, (x, y) in enumerate(zip(train, labels), 1)}
    files["cifar-10-batches-py/test_batch"] = py2_pickle(test, test_labels)
    files["cifar-10-batches-py/readme.html"] = b"<html></html>"
    files.update(extra or {})
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(folder)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tarball(tmp_path_factory, arrays) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("archive") / "cifar-10-python.tar.gz"
    return path, make_tarball(path, arrays)


def test_download_from_file_url(tmp_path, tarball, loaded):
    path, md5 = tarball
    root = tmp_path / "data"
    assert cifar.download_cifar10(root, url=path.as_uri(), md5=md5) == root / "cifar-10-batches-py"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # no temp files left
    again = cifar.load_cifar10(root)
    assert torch.equal(again.val_x, loaded.val_x) and torch.equal(again.test_y, loaded.test_y)


def test_load_with_download_uses_module_constants(tmp_path, tarball, monkeypatch, loaded):
    path, md5 = tarball
    monkeypatch.setattr(cifar, "CIFAR10_URL", path.as_uri())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", md5)
    data = cifar.load_cifar10(tmp_path / "fresh", download=True)
    assert torch.equal(data.train_x, loaded.train_x)


def test_download_checksum_mismatch_leaves_nothing(tmp_path, tarball):
    path, _ = tarball
    root = tmp_path / "data"
    with pytest.raises(TicketlabError, match="checksum"):
        cifar.download_cifar10(root, url=path.as_uri(), md5="0" * 32)
    assert not (root / "cifar-10-batches-py").exists()
    assert list(root.iterdir()) == []


def test_download_refuses_path_traversal(tmp_path, arrays):
    path = tmp_path / "evil.tar.gz"
    md5 = make_tarball(path, arrays, extra={"cifar-10-batches-py/../../escaped": b"x"})
    root = tmp_path / "data"
    with pytest.raises(TicketlabError, match="unsafe"):
        cifar.download_cifar10(root, url=path.as_uri(), md5=md5)
    assert not (root / "cifar-10-batches-py").exists()
    assert not (tmp_path / "escaped").exists()


def test_download_unreachable_url(tmp_path):
    with pytest.raises(TicketlabError, match="cannot download"):
        cifar.download_cifar10(tmp_path, url=(tmp_path / "absent.tar.gz").as_uri(), md5="0" * 32)
    assert list(tmp_path.iterdir()) == []
