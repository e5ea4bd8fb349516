"""Every random draw of a run comes from a generator derived here from the run's identity."""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *purpose: object) -> int:
    """A 63-bit seed for one purpose of one run: a hash, so purposes never share a stream."""
    text = repr((int(seed),) + tuple(purpose)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def generator(seed: int, *purpose: object) -> torch.Generator:
    """A CPU generator for (seed, purpose): CPU so that CPU and CUDA runs draw the same numbers."""
    return torch.Generator().manual_seed(derive_seed(seed, *purpose))
