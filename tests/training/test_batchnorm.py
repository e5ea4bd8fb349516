"""Nets with BatchNorm in the cohort engine (ResNet-20, VGG-16): a member trains to the same bits
alone and in any cohort, running statistics included; pruned kernel weights hold; BatchNorm's
parameters are never pruned and always train."""
from __future__ import annotations

import math

import pytest
import torch

from ticketlab.core.seeds import generator
from ticketlab.data.dataset import Dataset
from ticketlab.nets.specs import get_net, init_params, init_weights
from ticketlab.training.loop import train_cohort
from ticketlab.training.schedule import MemberStart, Schedule
from ticketlab.training.state import CohortState


def _data(shape, n_train=96, n_eval=40, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)

    def split(n):
        return torch.rand(n, math.prod(shape), generator=g), torch.randint(0, 10, (n,), generator=g)

    return Dataset("tiny", *split(n_train), *split(n_eval), *split(n_eval))  # flat rows, as IDX data sets give them


def _members(spec, densities, freeze=False):
    """Members with their own inits; density < 1: a random mask of the prunable layers, pruned weights
    zero (or, with freeze, at another draw's values: the freeze-at-init mask-0 actions)."""
    g = torch.Generator().manual_seed(9)
    out = []
    for m, d in enumerate(densities):
        w = init_weights(spec, generator(m, "init"))
        p = init_params(spec, generator(m, "init_params"))
        if d >= 1:
            out.append(MemberStart(w, None, p))
            continue
        masks = [torch.rand(t.shape, generator=g) < d if layer.prunable else torch.ones(t.shape, dtype=torch.bool)
                 for layer, t in zip(spec.layers, w)]
        held = init_weights(spec, generator(m + 50, "init")) if freeze else [torch.zeros_like(t) for t in w]
        out.append(MemberStart([torch.where(k, t, h) for t, k, h in zip(w, masks, held)], masks, p))
    return out


@pytest.fixture(scope="module")
def resnet_runs():
    spec = get_net("resnet20", (1, 8, 8))
    data = _data((1, 8, 8))
    members = _members(spec, [1.0, 0.5, 0.3], freeze=True)
    schedule = Schedule(iterations=5, learning_rate=1e-2, batch_size=16, eval_every=2)
    together = train_cohort(spec, data, members, schedule, seed=3)
    alone = [train_cohort(spec, data, [m], schedule, seed=3)[0] for m in members]
    return spec, members, together, alone


def test_member_is_bitwise_the_same_alone_and_in_a_cohort(resnet_runs):
    spec, _, together, alone = resnet_runs
    for t, a in zip(together, alone):
        for x, y in zip(t.final_weights + t.final_biases + t.final_buffers, a.final_weights + a.final_biases + a.final_buffers):
            assert torch.equal(x, y)
        assert t.history == a.history
    assert len(together[0].final_buffers) == len(spec.buffers) == 2 * sum(bool(l.batchnorm) for l in spec.layers)
    assert not torch.equal(together[0].final_weights[0], together[1].final_weights[0])


def test_pruned_kernel_weights_hold_and_batchnorm_always_trains(resnet_runs):
    spec, members, together, _ = resnet_runs
    for member, result in zip(members[1:], together[1:]):
        for start, final, mask in zip(member.weights, result.final_weights, member.masks):
            assert torch.equal(final[~mask], start[~mask])
        for t, start, final in zip(spec.params, member.biases, result.final_biases):
            assert not torch.equal(start, final), t.name  # BatchNorm scales and shifts, fc bias: all train
    for t, start in zip(spec.buffers, together[0].final_buffers):  # the running statistics moved off 0 and 1
        assert not torch.equal(start, torch.zeros_like(start) if t.name.endswith("mean") else torch.ones_like(start))


def test_batchnorm_parameters_are_never_held():
    """The optimiser holds pruned kernel weights by an infinite second moment; no other parameter gets one."""
    spec = get_net("resnet20", (1, 8, 8))
    state = CohortState(spec, _members(spec, [0.2, 1.0]), 1e-3, "cpu")
    n = len(spec.layers)
    assert len(state.biases) == len(spec.params) and len(state.exp_avg_sqs) == n + len(spec.params)
    assert all(torch.isinf(v[0]).any() for layer, v in zip(spec.layers, state.exp_avg_sqs) if layer.prunable)
    assert not any(torch.isinf(v).any() for v in state.exp_avg_sqs[n:])


def test_vgg16_member_alone_and_in_a_cohort():
    spec = get_net("vgg16", (1, 16, 16))
    data = _data((1, 16, 16), n_train=32, n_eval=8)
    members = _members(spec, [0.5, 1.0])
    schedule = Schedule(iterations=2, learning_rate=1e-3, batch_size=8, eval_every=2)
    together = train_cohort(spec, data, members, schedule, seed=1)
    alone = train_cohort(spec, data, [members[0]], schedule, seed=1)[0]
    for x, y in zip(together[0].final_weights + together[0].final_biases + together[0].final_buffers,
                    alone.final_weights + alone.final_biases + alone.final_buffers):
        assert torch.equal(x, y)
    assert together[0].history == alone.history
    # the output layer is not prunable: its mask keeps every weight, and it trains
    assert bool(members[0].masks[-1].all()) and not torch.equal(together[0].final_weights[-1], members[0].weights[-1])
