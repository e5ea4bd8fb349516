"""The sparse training path (nets.sparse): agreement with the dense reference on the paper's densities,
bitwise cohort-vs-alone and rerun, pruned weights that never move, the path chosen from the masks
alone, evaluation through the same kernels, denormals flushed on the kernels' threads."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import njit

from ticketlab.core.numerics import flush_denormals
from ticketlab.core.seeds import generator
from ticketlab.data.dataset import Dataset
from ticketlab.nets.sparse import SPARSE_BELOW, trains_sparse
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.training.evaluation import evaluate
from ticketlab.training.loop import train_cohort
from ticketlab.training.schedule import MemberStart, Schedule
from ticketlab.training.state import CohortState

FC = get_net("fc")
ROUNDS = (4, 8, 12, 16, 20)  # the paper's densities of rounds 4..20: fc1 and fc2 keep 0.8 a round, fc3 0.9
SHAPES = ((784, 300), (300, 100), (100, 10))


def _masked(seed: int, rounds, frozen: bool = False) -> list[MemberStart]:
    g = torch.Generator().manual_seed(seed + 100)
    out = []
    for j, r in enumerate(rounds):
        init = init_weights(FC, generator(seed + j, "init"))
        if r == 0:
            out.append(MemberStart(init))
            continue
        dens = (0.8**r, 0.8**r, 0.9**r)
        masks = [torch.rand(w.shape, generator=g) < d for w, d in zip(init, dens)]
        ws = [torch.where(m, w, w * 0.5) if frozen else w * m for w, m in zip(init, masks)]
        out.append(MemberStart(ws, masks))
    return out


def _batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(60, 784, generator=g), torch.randint(0, 10, (60,), generator=g)) for _ in range(n)]


def test_trains_sparse_is_a_function_of_masks_and_weights():
    w = [torch.randn(s) for s in SHAPES]
    low = [torch.rand(s, generator=torch.Generator().manual_seed(i)) < 0.05 for i, s in enumerate(SHAPES)]
    assert trains_sparse([a * m for a, m in zip(w, low)], low)
    assert not trains_sparse(w, low)  # pruned weights not zero (a frozen mask-0 action): dense
    assert not trains_sparse(w, None)
    full = [torch.ones(s, dtype=torch.bool) for s in SHAPES]
    assert not trains_sparse(w, full)
    assert not trains_sparse([a * m for a, m in zip(w, low)], low, below={})  # no threshold: dense
    assert SPARSE_BELOW[SHAPES] < 0.41 < 1  # round 4 measured no faster sparse (nets.sparse)


@pytest.mark.parametrize("r", ROUNDS)
def test_sparse_gradients_match_dense_at_spec_densities(r):
    members = _masked(3, [r, r])
    # every member sparse, round 4 too (above the threshold: the kernels must agree there as well)
    sp = CohortState(FC, members, FC.learning_rate, "cpu", sparse_below={SHAPES: 1.0})
    de = CohortState(FC, members, FC.learning_rate, "cpu", sparse_below={})
    assert sp.sparse is not None and sp.sparse.members == [0, 1] and de.sparse is None
    x, y = _batches(1)[0]
    sp.compute_grads(x, y)
    de.compute_grads(x, y)
    s = sp.sparse
    ref = de.flat[1].numpy()[s.dest]
    assert np.abs(s.grads - ref).max() <= 1e-6 * max(1.0, np.abs(ref).max())
    # one Adam step from the same gradients: the same weights to float tolerance
    s.grads[:] = ref
    sp.update()
    de.update()
    for a, b in zip(sp.weights + sp.biases, de.weights + de.biases):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


def test_hand_computed_two_layer_step():
    # a 3-2-2 net, kernels (in, out): W1 keeps (0,0)=1, (2,0)=3, (1,1)=2; W2 keeps (0,0)=1, (1,1)=-1
    from ticketlab.nets.sparse import SparseMembers
    w1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    w2 = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    flat = torch.zeros(64)
    s = SparseMembers([0], [[w1, w2]], [[torch.zeros(2), torch.zeros(2)]], [[w1 != 0, w2 != 0]],
                      [([0, 16], [32, 48])], flat, learning_rate=0.1)
    x = torch.tensor([[1.0, 1.0, 1.0]])  # one example: h = relu([1 + 3, 2]) = [4, 2]; z = [4, -2]
    assert s.logits([0], x)[0].tolist() == [[4.0, -2.0]]
    s.grads_step(x, torch.tensor([0]))
    p = torch.softmax(torch.tensor([4.0, -2.0]), 0)
    dz = p - torch.tensor([1.0, 0.0])  # d loss / d z, batch of one
    dh = torch.tensor([dz[0] * 1.0, dz[1] * -1.0])  # both hidden units are active
    # parameter order: W1 by output unit (kept inputs ascending), W2 likewise, then the biases
    expect = [dh[0] * 1, dh[0] * 1, dh[1] * 1, dz[0] * 4, dz[1] * 2, dh[0], dh[1], dz[0], dz[1]]
    assert np.allclose(s.grads, torch.stack(expect).numpy(), atol=1e-7)
    s.update(1)  # TF1 Adam's first step moves each weight by lr * g / (|g| + eps / sqrt(1 - beta2))
    s.write_back()
    g0 = float(dh[0])
    assert flat[0].item() == pytest.approx(1 - 0.1 * g0 / (abs(g0) + 1e-8 / (1 - 0.999) ** 0.5), abs=1e-6)
    assert flat[[1, 2, 5, 17, 18]].eq(0).all()  # pruned positions of both kernels never written


def _train(members, k_batches=40, threads=None):
    if threads is not None:
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        st = CohortState(FC, members, FC.learning_rate, "cpu")
        for x, y in _batches(k_batches):
            st.step(x, y)
        return st
    finally:
        if threads is not None:
            torch.set_num_threads(old)


def test_member_bitwise_alone_and_in_any_cohort_and_rerun():
    flush_denormals()
    members = _masked(5, [12, 4, 16, 0, 20, 8])  # sparse and dense members mixed
    cohort = _train(members)
    assert cohort.sparse is not None and cohort.sparse.members == [0, 2, 4, 5]
    again = _train(members)
    two = _train(members, threads=1)
    for i, t in enumerate(cohort.weights + cohort.biases):
        assert torch.equal(t, again.weights[i] if i < 3 else again.biases[i - 3])  # rerun
        assert torch.equal(t, two.weights[i] if i < 3 else two.biases[i - 3])  # one thread
    for m in (0, 1, 4):
        alone = _train([members[m]])
        for a, b in zip(alone.weights + alone.biases, cohort.weights + cohort.biases):
            assert torch.equal(a[0], b[m]), m


def test_pruned_weights_never_move():
    members = _masked(6, [12, 16])
    st = _train(members, k_batches=20)
    for m, s in enumerate(members):
        for w, mask, w0 in zip(st.weights, s.masks, s.weights):
            assert torch.equal(w[m][~mask], w0[~mask])
            assert not torch.equal(w[m][mask], w0[mask])  # the kept ones trained


def test_frozen_pruned_weights_train_dense():
    st = CohortState(FC, _masked(7, [12], frozen=True), FC.learning_rate, "cpu")
    assert st.sparse is None


def test_evaluation_through_sparse_kernels_matches_dense():
    members = _masked(8, [12, 16])
    st = _train(members, k_batches=10)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(600, 784, generator=g), torch.randint(0, 10, (600,), generator=g)
    sl, sa = evaluate(FC, st.weights, st.biases, x, y, sparse=st.sparse)
    dl, da = evaluate(FC, st.weights, st.biases, x, y)
    assert sl == pytest.approx(dl, rel=1e-5) and sa == pytest.approx(da, abs=2 / 600)
    one, _ = evaluate(FC, st.weights, st.biases, x, y, members=[1], sparse=st.sparse)
    assert one == [sl[1]]  # a member's numbers do not depend on who is evaluated with it


def test_train_cohort_runs_sparse_members_and_returns_their_weights():
    g = torch.Generator().manual_seed(2)
    data = Dataset("synthetic", torch.rand(600, 784, generator=g), torch.randint(0, 10, (600,), generator=g),
                   torch.rand(100, 784, generator=g), torch.randint(0, 10, (100,), generator=g),
                   torch.rand(100, 784, generator=g), torch.randint(0, 10, (100,), generator=g))
    members = _masked(9, [12, 0])
    sched = Schedule(30, FC.learning_rate, eval_every=10)
    run = train_cohort(FC, data, members, sched, seed=0)
    st = _train(members, k_batches=0)
    assert st.sparse is not None and st.sparse.members == [0]
    for w, mask in zip(run[0].final_weights, members[0].masks):
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
    assert len(run[0].history["val_loss"]) == 4 and all(np.isfinite(run[0].history["val_loss"]))


@njit
def _product(a, b):  # pragma: no cover - compiled
    return a * b


def test_kernel_threads_flush_denormals():
    members = _masked(10, [16, 16])
    st = CohortState(FC, members, FC.learning_rate, "cpu")
    pool = st.sparse._pool
    if pool is None:
        pytest.skip("one thread: the kernels run on the caller's thread")
    tiny = np.float32(1e-30)
    assert pool.submit(_product, tiny, np.float32(1e-10)).result() == 0.0


def test_a_caller_that_does_not_flush_denormals_gets_the_flushing_pool():
    import threading

    st = CohortState(FC, _masked(11, [16]), FC.learning_rate, "cpu")
    assert st.sparse is not None and st.sparse._pool is None  # one member: on the caller's thread
    x, y = _batches(1)[0]
    seen = []

    def no_flush() -> None:
        torch.set_flush_denormal(False)
        st.compute_grads(x, y)
        seen.append(st.sparse._pool is not None)

    t = threading.Thread(target=no_flush)
    t.start()
    t.join()
    assert seen == [True]


def test_labels_out_of_range_are_refused():
    st = CohortState(FC, _masked(12, [16]), FC.learning_rate, "cpu")
    x, _ = _batches(1)[0]
    with pytest.raises(ValueError, match="labels must lie in"):
        st.compute_grads(x, torch.full((60,), 10))
