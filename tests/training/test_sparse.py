"""The sparse training path (nets.sparse): agreement with the dense reference, bitwise cohort-vs-alone
and rerun, pruned weights that never move, the path chosen from the mask alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ticketlab.core.seeds import generator
from ticketlab.nets import sparse
from ticketlab.nets.sparse import SparseLayer, backward_t, dense_kernel, forward_eval, trains_sparse
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.training.loop import train_cohort
from ticketlab.training.schedule import MemberStart, Schedule
from ticketlab.training.state import CohortState

FC = get_net("fc")
# SPEC's FC densities at rounds 0, 4, 8, 12, 16, 20 (fc1 and fc2 keep 0.8 per round, fc3 0.9)
ROUNDS = (0, 4, 8, 12, 16, 20)
SHAPES = ((784, 300), (300, 100), (100, 10))


def _masked(seed: int, rounds: list[int], frozen: bool = False) -> list[MemberStart]:
    init = init_weights(FC, generator(seed, "init"))
    g = torch.Generator().manual_seed(seed + 100)
    out = []
    for r in rounds:
        if r == 0:
            out.append(MemberStart(init))
            continue
        dens = (0.8**r, 0.8**r, 0.9**r)
        masks = [torch.rand(w.shape, generator=g) < d for w, d in zip(init, dens)]
        ws = [torch.where(m, w, w * 0.5) if frozen else w * m for w, m in zip(init, masks)]
        out.append(MemberStart(ws, masks))
    return out


def test_trains_sparse_is_a_function_of_the_mask():
    w = torch.randn(784, 300)
    low = torch.rand(784, 300, generator=torch.Generator().manual_seed(0)) < 0.05
    assert trains_sparse(low, w * low)
    assert not trains_sparse(low, w)  # pruned weights not zero: a frozen mask-0 action trains dense
    assert not trains_sparse(None, w)
    assert not trains_sparse(torch.ones(784, 300, dtype=torch.bool), w)
    odd = torch.rand(7, 5) < 0.05  # a shape without a measured threshold always trains dense
    assert not trains_sparse(odd, torch.randn(7, 5) * odd)


def test_sparse_layer_hand_computed():
    # W = [[1, 0], [0, 2], [3, 0]] (fan_in 3, fan_out 2), batch 2
    mask = torch.tensor([[True, False], [False, True], [True, False]])
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    layer = SparseLayer(mask, w)
    assert layer.nnz == 3 and list(layer.rows) == [0, 2, 1] and list(layer.cols) == [0, 2, 3]
    h = np.array([[1.0, -1.0], [2.0, 0.5], [1.0, 4.0]], dtype=np.float32)  # (fan_in, batch)
    out = np.empty((2, 2), dtype=np.float32)
    layer.forward_t(h, np.array([0.5, -10.0], dtype=np.float32), out, relu=False)
    # unit 0: 0.5 + 1*h0 + 3*h2 = [4.5, 11.5]; unit 1: -10 + 2*h1 = [-6, -9]
    assert out.tolist() == [[4.5, 11.5], [-6.0, -9.0]]
    layer.forward_t(h, np.array([0.5, -10.0], dtype=np.float32), out, relu=True)
    assert out.tolist() == [[4.5, 11.5], [0.0, 0.0]]
    dz = np.array([[1.0, 2.0], [3.0, -1.0]], dtype=np.float32)
    g, gb, dh = np.empty(3, np.float32), np.empty(2, np.float32), np.empty((3, 2), np.float32)
    prev = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    backward_t(layer, h, dz, g, gb, dh, prev)
    # g at (0,0): h0.dz0 = 1-2 = -1; (2,0): h2.dz0 = 1+8 = 9; (1,1): h1.dz1 = 6-0.5 = 5.5
    assert g.tolist() == [-1.0, 9.0, 5.5]
    assert gb.tolist() == [3.0, 2.0]
    # dh0 = 1*dz0 = [1, 2] masked by prev row 0 -> [1, 0]; dh1 = 2*dz1 = [6, -2]; dh2 = 3*dz0 = [3, 6]
    assert dh.tolist() == [[1.0, 0.0], [6.0, -2.0], [3.0, 6.0]]
    assert torch.equal(dense_kernel(layer), w)


@pytest.mark.parametrize("r", ROUNDS[1:])
@pytest.mark.parametrize("shape", SHAPES)
def test_sparse_layer_matches_dense_products(shape, r):
    fan_in, fan_out = shape
    g = torch.Generator().manual_seed(r)
    d = (0.9 if fan_out == 10 else 0.8) ** r
    mask = torch.rand(shape, generator=g) < d
    w = torch.randn(shape, generator=g) * mask
    layer = SparseLayer(mask, w)
    h = torch.randn(60, fan_in, generator=g).relu()
    b = torch.randn(fan_out, generator=g)
    dz = torch.randn(60, fan_out, generator=g)
    out = np.empty((fan_out, 60), np.float32)
    layer.forward_t(h.t().contiguous().numpy(), b.numpy(), out, relu=False)
    torch.testing.assert_close(torch.from_numpy(out).t(), torch.addmm(b, h, w), rtol=1e-5, atol=1e-5)
    gw, gb, dh = np.empty(layer.nnz, np.float32), np.empty(fan_out, np.float32), np.empty((fan_in, 60), np.float32)
    backward_t(layer, h.t().contiguous().numpy(), dz.t().contiguous().numpy(), gw, gb, dh, h.t().contiguous().numpy())
    full = (h.t() @ dz).reshape(-1)[torch.from_numpy(layer.flat)]
    torch.testing.assert_close(torch.from_numpy(gw), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(gb), dz.sum(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(dh).t(), (dz @ w.t()) * (h > 0), rtol=1e-5, atol=1e-5)


def _state_after(members: list[MemberStart], steps: int, mnist) -> CohortState:
    state = CohortState(FC, members, 1.2e-3, "cpu")
    for s in range(steps):
        state.step(mnist.train_x[s * 60 : (s + 1) * 60], mnist.train_y[s * 60 : (s + 1) * 60])
    return state


def test_sparse_training_agrees_with_dense(mnist, monkeypatch):
    members = _masked(0, list(ROUNDS))
    sparse_state = _state_after(members, 20, mnist)
    assert [sum(layer is not None for layer in row) for row in sparse_state.sparse_layers][-1] == 3
    monkeypatch.setattr(sparse, "SPARSE_BELOW", {})
    dense_state = _state_after(members, 20, mnist)
    assert not any(layer for row in dense_state.sparse_layers for layer in row)
    for a, b in zip(sparse_state.weights + sparse_state.biases, dense_state.weights + dense_state.biases):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # and the two paths do differ in the last bits (else the numerics version need not change)
    assert any(not torch.equal(a, b) for a, b in zip(sparse_state.weights, dense_state.weights))


def test_sparse_evaluation_agrees_with_dense(mnist):
    state = _state_after(_masked(1, [12, 20]), 5, mnist)
    x = mnist.val_x[:500]
    for m in range(2):
        layers = state.sparse_layers[m]
        assert any(layers)
        ws, bs = [w[m] for w in state.weights], [b[m] for b in state.biases]
        ref = torch.addmm(bs[0], x, ws[0]).relu()
        ref = torch.addmm(bs[1], ref, ws[1]).relu()
        ref = torch.addmm(bs[2], ref, ws[2])
        torch.testing.assert_close(forward_eval(layers, ws, bs, x), ref, rtol=1e-4, atol=1e-4)
        # the compressed values are the dense view's
        for i, layer in enumerate(layers):
            if layer is not None:
                assert torch.equal(dense_kernel(layer), ws[i])


@pytest.fixture(scope="module")
def sparse_runs(mnist):
    members = _masked(2, [0, 8, 12, 16, 20]) + _masked(3, [12], frozen=True)
    schedule = Schedule(iterations=150, learning_rate=1.2e-3, eval_every=50)
    together = train_cohort(FC, mnist, members, schedule, seed=4)
    again = train_cohort(FC, mnist, members, schedule, seed=4)
    alone = [train_cohort(FC, mnist, [m], schedule, seed=4)[0] for m in members[2:5]]
    return members, together, again, alone


def test_sparse_cohort_member_bitwise_equals_alone_and_rerun(sparse_runs):
    members, together, again, alone = sparse_runs
    for t, a in zip(together[2:5], alone):
        assert all(torch.equal(x, y) for x, y in zip(t.final_weights + t.final_biases, a.final_weights + a.final_biases))
        assert t.history == a.history
    for t, a in zip(together, again):
        assert all(torch.equal(x, y) for x, y in zip(t.final_weights + t.final_biases, a.final_weights + a.final_biases))
        assert t.history == a.history


def test_sparse_pruned_weights_never_move(sparse_runs):
    members, together, _, _ = sparse_runs
    for member, result in zip(members[1:], together[1:]):
        for start, final, mask in zip(member.weights, result.final_weights, member.masks):
            assert torch.equal(final[~mask], start[~mask])
            assert not torch.equal(final[mask], start[mask])
