"""Datasets of SPEC §1 (one `Dataset` type, the loaders by name)."""
from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import TicketlabError
from .dataset import DATASETS, IMAGE_SHAPES, Dataset
from .idx import FASHION_MNIST_DIR, MNIST_SHA256, _from_idx, load_idx_dir, mnist_dir

__all__ = ["DATASETS", "IMAGE_SHAPES", "Dataset", "load_dataset"]


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """Load a dataset of SPEC §1 by name. `data_dir` overrides where non-shipped data is read."""
    if name == "mnist":
        if not data_dir:
            return _from_idx(name, mnist_dir(), load_idx_dir(mnist_dir(), MNIST_SHA256))
        # MNIST is checksum-pinned: a --data-dir for it must hold the canonical files, not just any IDX data.
        directory = Path(data_dir)
        fix = (f"--data-dir {directory} must hold the four canonical MNIST files unmodified; drop --data-dir to use "
               "the copy shipped with ticketlab, or train on other MNIST-format data with --dataset fashion-mnist")
        return _from_idx(name, directory, load_idx_dir(directory, MNIST_SHA256, fix))
    if name == "fashion-mnist":
        directory = Path(data_dir or FASHION_MNIST_DIR)
        if not directory.is_dir():
            raise TicketlabError(
                f"Fashion-MNIST not found in {directory}: install Debian's dataset-fashion-mnist or pass --data-dir"
            )
        return _from_idx(name, directory, load_idx_dir(directory))
    if name == "cifar10":
        from ..data.cifar import load_cifar10

        return load_cifar10(data_dir, download=download)
    raise TicketlabError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
