"""The one `Dataset` type of protocol §1 and how uint8 arrays become one: fixed train/val split, pixels
scaled to [0, 1]. The loaders (`idx`, `cifar`) build on it; it imports none of them, and knows no
dataset by name (the registry in `ticketlab.data` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import TicketlabError

if TYPE_CHECKING:  # torch loads with the data, not with the registry (the command line parses first)
    import torch

# One example image as (channels, height, width); the FC net takes it flattened.
ImageShape = tuple[int, int, int]
N_CLASSES = 10
VAL_SIZE = 5000
SPLIT_SEED = 0
# The fixed validation split plus one batch of protocol §3's 60: a training file with fewer images
# cannot be split and trained on at all.
MIN_TRAIN_IMAGES = VAL_SIZE + 60


@dataclass(frozen=True)
class Dataset:
    """The three splits as tensors: x float32 in [0, 1] (N, 784) or (N, C, H, W); y int64."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def to(self, device: torch.device | str) -> "Dataset":
        return Dataset(self.name, *(getattr(self, f).to(device) for f in _TENSOR_FIELDS))


_TENSOR_FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


def split_indices(n_train: int, n_val: int = VAL_SIZE, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of protocol §1: val drawn by legacy numpy; train = the rest in file order."""
    val = np.random.RandomState(seed).choice(n_train, n_val, replace=False)
    is_val = np.zeros(n_train, dtype=bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), val


def from_arrays(name: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                source: str | None = None) -> Dataset:
    """Build a Dataset from uint8 arrays: split the training set (protocol §1) and scale by 1/255.

    At least `MIN_TRAIN_IMAGES` training images and one test image are needed; `source` (default:
    the name) says in the error where the data came from."""
    source = source or name
    if len(train_x) < MIN_TRAIN_IMAGES:
        raise TicketlabError(
            f"{source} has {len(train_x):,} training images, fewer than the {MIN_TRAIN_IMAGES:,} needed "
            f"(protocol §1 holds out {VAL_SIZE:,} for validation, and training needs a batch of 60 more): "
            "use the complete dataset"
        )
    if len(test_x) == 0:
        raise TicketlabError(f"{source} has no test images: use the complete dataset")
    train_idx, val_idx = split_indices(len(train_x))

    import torch

    def pixels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / np.float32(255.0))

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(
        name,
        pixels(train_x[train_idx]),
        labels(train_y[train_idx]),
        pixels(train_x[val_idx]),
        labels(train_y[val_idx]),
        pixels(test_x),
        labels(test_y),
    )
