from __future__ import annotations

import pytest
import torch

from ticketlab.data import load_dataset
from ticketlab.numerics import flush_denormals

# As the command line does: before any torch work starts the thread pool, so every thread flushes.
flush_denormals(check=False)


@pytest.fixture(scope="session")
def mnist():
    return load_dataset("mnist")


@pytest.fixture(autouse=True)
def _fixed_threads():
    # Bitwise comparisons within a test must not depend on what an earlier test set.
    torch.set_num_threads(2)
    yield
