"""Datasets of protocol §1: the one `Dataset` type, and the loaders by name in one registry.

Adding a dataset is one `register_dataset(name, loader, image_shape, train_size)` call, where the loader is
`(data_dir, download) -> Dataset` (build it with `ticketlab.data.dataset.from_arrays`). `DATASETS`,
`IMAGE_SHAPES` and `load_dataset` all read the registry, so a registration shows in each at once.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..core.errors import TicketlabError
from . import cifar, idx
from .dataset import N_CLASSES, Dataset, ImageShape

__all__ = ["DATASETS", "IMAGE_SHAPES", "Dataset", "Loader", "classes", "load_dataset", "register_dataset", "train_size"]

# (data_dir, download) -> Dataset; data_dir None means the loader's own default location.
Loader = Callable[[str | os.PathLike | None, bool], Dataset]


@dataclass(frozen=True)
class _Entry:
    load: Loader
    image_shape: ImageShape
    train_size: int | None  # training images after the validation split, where known before loading
    classes: int = N_CLASSES


# Name -> entry, in registration order: the order the command line lists the datasets in.
_REGISTRY: dict[str, _Entry] = {}


class _Names(Sequence[str]):
    """The registered names, read live: `DATASETS` is imported by value elsewhere (argparse choices,
    config checks), so it must not be a snapshot taken before a later registration."""

    def __init__(self, registry: dict[str, _Entry]) -> None:
        self._registry = registry

    def __getitem__(self, i: Any) -> Any:  # an int gives a name, a slice a tuple of them
        return tuple(self._registry)[i]

    def __len__(self) -> int:
        return len(self._registry)

    def __contains__(self, name: object) -> bool:
        return name in self._registry

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._registry))

    def __eq__(self, other: object) -> bool:
        # Compares like the tuple it used to be: DATASETS == ("mnist", "fashion-mnist", "cifar10").
        if isinstance(other, (tuple, _Names)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # live, so unhashable like any mutable container

    def __repr__(self) -> str:
        return repr(tuple(self))


class _Shapes(Mapping[str, ImageShape]):
    """Name -> image shape (channels, height, width) of each registered dataset, read live."""

    def __init__(self, registry: dict[str, _Entry]) -> None:
        self._registry = registry

    def __getitem__(self, name: str) -> ImageShape:
        return self._registry[name].image_shape

    def __len__(self) -> int:
        return len(self._registry)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._registry))

    def __repr__(self) -> str:
        return repr(dict(self))


DATASETS: Sequence[str] = _Names(_REGISTRY)
IMAGE_SHAPES: Mapping[str, ImageShape] = _Shapes(_REGISTRY)


def register_dataset(name: str, load: Loader, image_shape: ImageShape, train_size: int | None = None,
                     classes: int = N_CLASSES) -> None:
    """Make `load_dataset(name, data_dir, download)` return `load(data_dir, download)`.

    `image_shape` is one example as (channels, height, width): it decides which nets fit the
    dataset. `train_size`, the training images left after protocol §1's validation split, makes "an
    epoch" a number of steps before the data is loaded (`TrainConfig.epochs`); without it a config of
    that dataset must give `iterations`. `classes`: how many labels (0..classes-1), the nets' outputs.
    A name can be registered once; a second registration is a programming error."""
    if name in _REGISTRY:
        raise ValueError(f"dataset {name!r} is already registered")
    shape = tuple(image_shape)  # a list would do as well; stored as a tuple like the built-ins
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"image_shape of {name!r} must be three positive ints (channels, height, width), got {shape}")
    if train_size is not None and not (isinstance(train_size, int) and train_size > 0):
        raise ValueError(f"train_size of {name!r} must be a positive int, got {train_size!r}")
    if not (isinstance(classes, int) and classes > 1):
        raise ValueError(f"classes of {name!r} must be an int above 1, got {classes!r}")
    _REGISTRY[name] = _Entry(load, cast(ImageShape, shape), train_size, classes)


def classes(name: str) -> int:
    """The number of classes of a registered dataset (its labels are 0..classes-1)."""
    return _REGISTRY[name].classes


def train_size(name: str) -> int | None:
    """The training images of a registered dataset after the validation split (None: not known before loading)."""
    return _REGISTRY[name].train_size


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """Load a registered dataset by name. `data_dir` overrides where non-shipped data is read;
    `download` lets a loader that can fetch its data (cifar10) do so."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise TicketlabError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return entry.load(data_dir, download)


# Protocol §1: 60,000 training images less 5,000 for validation; CIFAR-10: 50,000 less 5,000
register_dataset("mnist", idx.load_mnist, idx.IMAGE_SHAPE, 55_000)
register_dataset("fashion-mnist", idx.load_fashion_mnist, idx.IMAGE_SHAPE, 55_000)
register_dataset("cifar10", cifar.load_cifar10, cifar.IMAGE_SHAPE, 45_000)
