"""The dataset registry of `ticketlab.data` (a loader registered by name loads through `load_dataset`),
and the data room's import graph: dataset.py at the bottom, idx.py and cifar.py on it, no cycle."""
from __future__ import annotations

import ast
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import ticketlab.data as data
from ticketlab.core.errors import TicketlabError
from ticketlab.data import DATASETS, IMAGE_SHAPES, Dataset, load_dataset, register_dataset
from ticketlab.data.dataset import MIN_TRAIN_IMAGES, VAL_SIZE, from_arrays, split_indices

BUILT_IN = ("mnist", "fashion-mnist", "cifar10")
TOY_SHAPE = (1, 6, 6)
N_TOY_TEST = 7


@contextlib.contextmanager
def registry_restored() -> Iterator[None]:
    """Put the registry back as it was on entry, whatever was registered meanwhile: DATASETS and
    IMAGE_SHAPES are views of it, so a toy left behind would show in every later test."""
    saved = dict(data._REGISTRY)
    try:
        yield
    finally:
        data._REGISTRY.clear()
        data._REGISTRY.update(saved)


@pytest.fixture
def registry() -> Iterator[None]:
    with registry_restored():
        yield


def toy_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Just enough training images for the split and one batch of 60 (protocol §1, §3)."""
    rng = np.random.RandomState(5)
    train_x = rng.randint(0, 256, (MIN_TRAIN_IMAGES, *TOY_SHAPE)).astype(np.uint8)
    test_x = rng.randint(0, 256, (N_TOY_TEST, *TOY_SHAPE)).astype(np.uint8)
    return train_x, rng.randint(0, 10, MIN_TRAIN_IMAGES), test_x, rng.randint(0, 10, N_TOY_TEST)


def register_toy(calls: list[tuple[object, bool]]) -> None:
    def load(data_dir: object, download: bool) -> Dataset:
        calls.append((data_dir, download))
        return from_arrays("toy", *toy_arrays())

    register_dataset("toy", load, TOY_SHAPE)


def test_the_built_in_datasets_in_command_line_order():
    assert DATASETS == BUILT_IN and tuple(DATASETS) == BUILT_IN
    assert dict(IMAGE_SHAPES) == {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def test_a_registered_loader_loads_by_name(registry, tmp_path):
    calls: list[tuple[object, bool]] = []
    register_toy(calls)
    assert "toy" in DATASETS and DATASETS[-1] == "toy" and IMAGE_SHAPES["toy"] == TOY_SHAPE

    ds = load_dataset("toy", tmp_path, download=True)
    assert calls == [(tmp_path, True)]  # data_dir and download reach the loader unchanged
    assert ds.name == "toy"
    assert (len(ds.train_x), len(ds.val_x), len(ds.test_x)) == (MIN_TRAIN_IMAGES - VAL_SIZE, VAL_SIZE, N_TOY_TEST)
    train_x, train_y, test_x, _ = toy_arrays()
    train_idx, val_idx = split_indices(MIN_TRAIN_IMAGES)
    assert np.array_equal(ds.val_x.numpy(), train_x[val_idx].astype(np.float32) / np.float32(255))
    assert np.array_equal(ds.train_y.numpy(), train_y[train_idx])
    assert ds.test_x.shape == (N_TOY_TEST, *TOY_SHAPE)

    load_dataset("toy")
    assert calls[-1] == (None, False)


def test_an_unknown_name_lists_the_registered_ones(registry):
    with pytest.raises(TicketlabError) as info:
        load_dataset("svhn")
    assert str(info.value) == "unknown dataset 'svhn': choose one of mnist, fashion-mnist, cifar10"
    register_toy([])
    with pytest.raises(TicketlabError, match="choose one of mnist, fashion-mnist, cifar10, toy$"):
        load_dataset("svhn")


@pytest.mark.parametrize(
    "name,shape,message",
    [
        ("mnist", (1, 28, 28), "'mnist' is already registered"),
        ("toy", (6, 6), "three positive ints"),
        ("toy", (1, 0, 6), "three positive ints"),
        ("toy", (1.0, 6, 6), "three positive ints"),
    ],
    ids=["twice", "two-dims", "zero-side", "float"],
)
def test_a_bad_registration_is_refused_and_changes_nothing(registry, name, shape, message):
    with pytest.raises(ValueError, match=message):
        register_dataset(name, lambda data_dir, download: load_dataset("mnist"), shape)
    assert DATASETS == BUILT_IN


def test_a_registration_is_undone_after_the_test():
    with registry_restored():
        register_toy([])
        assert "toy" in DATASETS
    assert DATASETS == BUILT_IN and "toy" not in IMAGE_SHAPES


DATA_DIR = Path(data.__file__).parent
SUBMODULES = {p.stem for p in DATA_DIR.glob("*.py") if p.stem != "__init__"}


def data_imports(path: Path) -> set[str]:
    """The modules of ticketlab.data that a file imports anywhere, lazy imports in functions included
    ('__init__' for the package itself): the old cycle hid in such a lazy import."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            # A relative import counts from ticketlab.data: one dot is the package, two are ticketlab.
            base = ["ticketlab", "data"][: max(0, 3 - node.level)] if node.level else []
            parts = base + (node.module.split(".") if node.module else [])
            if parts[:2] != ["ticketlab", "data"]:
                continue
            if len(parts) > 2:
                found.add(parts[2])
            else:  # `from . import x`: a submodule, or a name of the package's __init__
                found.update(a.name if a.name in SUBMODULES else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[:2] == ["ticketlab", "data"]:
                    found.add(parts[2] if len(parts) > 2 else "__init__")
    return found


def test_the_data_room_imports_in_layers_without_a_cycle():
    graph = {p.stem: data_imports(p) for p in DATA_DIR.glob("*.py")}
    assert graph["dataset"] == set()
    assert graph["idx"] == {"dataset"} and graph["cifar"] == {"dataset"}
    assert graph["__init__"] >= {"dataset", "idx", "cifar"}
    # Any module added later: still no cycle (depth-first search for a back edge).
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module not in done:
            for dep in graph.get(module, ()):
                visit(dep, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())


# Imports one module of ticketlab.data with the package's __init__ left out (an empty package stands
# in for it), so only what that module itself imports is loaded; prints the data modules loaded.
_ALONE = """
import importlib, json, sys, types
from pathlib import Path
import ticketlab
package = types.ModuleType("ticketlab.data")
package.__path__ = [str(Path(ticketlab.__file__).parent / "data")]
sys.modules["ticketlab.data"] = package
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("ticketlab.data."))))
"""


@pytest.mark.parametrize(
    "module,loaded",
    [("dataset", ["dataset"]), ("idx", ["dataset", "idx"]), ("cifar", ["cifar", "dataset"])],
)
def test_each_loader_module_imports_only_dataset(module, loaded):
    proc = subprocess.run([sys.executable, "-c", _ALONE, f"ticketlab.data.{module}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [f"ticketlab.data.{m}" for m in loaded]


def test_a_registered_dataset_trains_by_epochs_only_with_its_train_size(registry):
    from ticketlab.core.errors import TicketlabError
    from ticketlab.training.config import TrainConfig

    # (1, 28, 28) images fit the FC net; without a train size "an epoch" is no number of steps yet
    register_dataset("toy-28", lambda data_dir, download: load_dataset("mnist"), (1, 28, 28))
    with pytest.raises(TicketlabError, match="dataset toy-28 does not say its training size .* give --iterations"):
        TrainConfig(dataset="toy-28").validate()
    TrainConfig(dataset="toy-28", iterations=10).validate()
    register_dataset("toy-sized", lambda data_dir, download: load_dataset("mnist"), (1, 28, 28), train_size=600)
    assert TrainConfig(dataset="toy-sized", epochs=2).resolved().iterations == 2 * (600 // 60)
    with pytest.raises(ValueError, match="train_size of 'bad' must be a positive int"):
        register_dataset("bad", lambda data_dir, download: load_dataset("mnist"), (1, 28, 28), train_size=0)
