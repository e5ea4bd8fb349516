from __future__ import annotations

import pytest
import torch

from ticketlab.data import load_dataset


@pytest.fixture(scope="session")
def mnist():
    return load_dataset("mnist")


@pytest.fixture(autouse=True)
def _fixed_threads():
    # Bitwise comparisons within a test must not depend on what an earlier test set.
    torch.set_num_threads(2)
    yield
