from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from ticketlab.data import load_dataset
from ticketlab.core.numerics import flush_denormals

# The test folders mirror the packages, and some tests build on another room's helpers (CIFAR batch
# files from tests/data/test_cifar.py, synthetic results from tests/analysis/synthetic.py): every
# room is importable by its module name.
sys.path[:0] = sorted(str(p) for p in Path(__file__).parent.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))

# As the command line does: before any torch work starts the thread pool, so every thread flushes.
flush_denormals(check=False)

# The per-machine cost measurement of sweeps (`training.cost`) is cached under XDG_CACHE_HOME: the
# suite keeps its own, out of the user's home, measured once per run of the suite.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ticketlab-test-cache-")


_NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=_NEEDS_CUDA)])
def device(request) -> torch.device:
    """Tests that take `device` check their fast path on the CPU, and on a CUDA GPU where torch sees
    one (CI has none: those are skipped there, and run on a GPU machine by hand)."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def mnist():
    return load_dataset("mnist")


@pytest.fixture(autouse=True)
def _fixed_threads():
    # Bitwise comparisons within a test must not depend on what an earlier test set.
    torch.set_num_threads(2)
    yield
