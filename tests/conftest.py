from __future__ import annotations

import pytest
import torch

from ticketlab.data.idx import load_dataset
from ticketlab.core.numerics import flush_denormals

# As the command line does: before any torch work starts the thread pool, so every thread flushes.
flush_denormals(check=False)


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
