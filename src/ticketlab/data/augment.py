"""Data augmentation of a training batch, as the CIFAR-10 recipes of ResNets and VGGs use it: a
random crop of the image zero-padded by 4 pixels on each side, and a horizontal flip of half the
images (He et al. 2016, §4.2; OpenLTH's CIFAR-10 training set).

It is seeded and recorded: each step's draws come from a generator of the run's data order (its
data-order seed, else its seed) and the step, so every member of a cohort sees the same augmented
batches, a rerun the same ones, and a round that starts at a late-rewinding step the ones the whole
schedule has there; the choice is part of the run's config (`--augment`), hence of its name.
Validation and test images are never augmented.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

AUGMENTATIONS = ("none", "crop_flip")
CROP_PADDING = 4


def crop_flip(x: "torch.Tensor", image_shape: tuple[int, int, int], generator: "torch.Generator",
              padding: int = CROP_PADDING) -> "torch.Tensor":
    """x (B, ...) as images of `image_shape`, each cropped at a random offset from its zero-padded copy
    and flipped left-right with probability 1/2; returned in x's own shape. Draws B crop offsets (rows,
    then columns) and B flips from `generator` (a CPU generator: the same draws on every device)."""
    import torch
    import torch.nn.functional as F

    b = len(x)
    c, h, w = image_shape
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator)
    flips = torch.randint(0, 2, (b,), generator=generator).bool()
    padded = F.pad(x.reshape(b, c, h, w), (padding, padding, padding, padding))
    rows = offsets[:, :1] + torch.arange(h)  # (B, H): the rows each image keeps
    cols = offsets[:, 1:] + torch.arange(w)
    cols = torch.where(flips.unsqueeze(1), cols.flip(1), cols)  # a flip reads its columns backwards
    index = [t.to(x.device) for t in (torch.arange(b).view(b, 1, 1, 1), torch.arange(c).view(1, c, 1, 1),
                                      rows.view(b, 1, h, 1), cols.view(b, 1, 1, w))]
    return padded[tuple(index)].reshape(x.shape)
