"""Denormals flushed to zero on every CPU thread that trains (numerics.py)."""
from __future__ import annotations

import subprocess
import sys

import torch

from ticketlab.nets.specs import get_net, init_weights
from ticketlab.core.numerics import flush_everywhere
from ticketlab.core.seeds import generator
from ticketlab.training.schedule import MemberStart
from ticketlab.training.state import CohortState

SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def test_this_process_flushes_on_every_thread():
    # conftest sets the mode before any torch work, as the command line does
    assert flush_everywhere()
    assert torch.tensor([1e-30]).mul(1e-10).item() == 0.0


def test_a_pool_started_before_is_set_too():
    # torch's pool starts with the first parallel op; only the main thread gets the mode from
    # set_flush_denormal, and flush_denormals must reach the pool's other threads.
    code = (
        "import torch, warnings; warnings.simplefilter('error'); torch.set_num_threads(2); "
        "torch.randn(2048, 2048).sum(); "
        "from ticketlab.core.numerics import flush_everywhere, flush_denormals; "
        "torch.set_flush_denormal(True); before = flush_everywhere(); "
        "print(before, flush_denormals(), flush_everywhere())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]


def test_adam_moments_decay_to_zero_not_to_denormals():
    # A weight whose input is always zero gets zero gradients: its first moment decays by 0.9 a
    # step, and without flushing it would pass through the (slow) denormal range.
    fc = get_net("fc")
    state = CohortState(fc, [MemberStart(init_weights(fc, generator(0, "init")))], 1e-3, torch.device("cpu"))
    state.exp_avgs[0][0, 0].fill_(1e-36)  # pixel 0 of the inputs below is always 0
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 784, generator=g)
    x[:, 0] = 0
    y = torch.randint(0, 10, (60,), generator=g)
    for _ in range(60):  # 1e-36 * 0.9**60 ~ 2e-39: denormal unless flushed
        state.step(x, y)
    moments = torch.cat([m.flatten() for m in state.exp_avgs + state.exp_avg_sqs])
    tiny = moments[moments != 0].abs()
    assert state.exp_avgs[0][0, 0].eq(0).all()
    assert bool((tiny >= SMALLEST_NORMAL).all())
