"""The benchmark's output, and every fast path of the trainer against the straightforward one.

No timing assertions: speed depends on the machine."""
from __future__ import annotations

import json
import math

import pytest
import torch

from ticketlab import bench

from ticketlab.nets import forward as fwd

from ticketlab.training import adam, state as cohort_state
from ticketlab.nets.forward import fc_grads, forward, loss_grad, member_losses
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.core.numerics import flush_denormals
from ticketlab.core.seeds import generator
from ticketlab.training.adam import _adam_step
from ticketlab.training.evaluation import evaluate
from ticketlab.training.loop import train_cohort
from ticketlab.training.schedule import MemberStart, Schedule
from ticketlab.training.state import CohortState

FC = get_net("fc")
CPU = torch.device("cpu")
REQUIRED = (
    "gemm_gflops", "fc_single_samples_per_s", "fc_cohort13_net_samples_per_s", "plain_loop_samples_per_s",
    "cohort_speedup_vs_plain", "fraction_of_peak_single", "fraction_of_peak_cohort13", "eval_samples_per_s",
    "eval_overhead_full_fc_single_on_best", "eval_overhead_full_fc_single_all",
    "eval_overhead_full_fc_cohort13_on_best", "eval_overhead_full_fc_cohort13_all",
    "on_best_test_evals_estimated_cohort13", "fc_single_run_step_ms", "fc_cohort13_run_step_ms",
    "conv2_cohort2_net_samples_per_s", "projected_criteria_full_hours", "threads",
    "fc_cohort13_grads_ms", "fc_cohort13_adam_ms", "fc_cohort13_adam_gparams_per_s", "fraction_of_peak_cohort13_grads",
    "fraction_of_peak_cohort13_phases", "vmap_cohort13_net_samples_per_s", "cohort_speedup_vs_vmap",
    "vmap_cohort13_step_ms", "projected_criteria_full_hours_dense", "projected_criteria_sparse_saving",
    "fc_cohort13_r12_dense_step_ms", "fc_cohort13_r12_chosen_step_ms", "conv2_plain_samples_per_s",
    "conv2_cohort2_vs_plain",
)


def _members(spec, densities, seed=0):
    """Members with different inits; density 1.0 = dense (no mask), else a random mask, pruned = 0."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for m, d in enumerate(densities):
        init = init_weights(spec, generator(seed + m, "init"))
        if d >= 1.0:
            out.append(MemberStart(init))
        else:
            masks = [torch.rand(w.shape, generator=g) < d for w in init]
            out.append(MemberStart([w * mk for w, mk in zip(init, masks)], masks))
    return out


def _batches(data, n, seed=0, device=CPU):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        idx = torch.randint(0, len(data.train_x), (60,), generator=g)
        yield data.train_x[idx].to(device), data.train_y[idx].to(device)


def _state_tensors(s: CohortState) -> list[torch.Tensor]:
    return s.weights + s.biases + s.exp_avgs + s.exp_avg_sqs


def test_run_bench_quick_json(capsys, monkeypatch):
    calls = []
    real_step = CohortState.step

    def counting_step(self, x, y):
        calls.append(self.k)
        return real_step(self, x, y)

    monkeypatch.setattr(CohortState, "step", counting_step)
    res = bench.run_bench(as_json=True, quick=True, device="cpu")
    out = capsys.readouterr().out.strip().splitlines()
    parsed = json.loads(out[-1])
    for key in REQUIRED:
        for source in (res, parsed):
            assert isinstance(source[key], (int, float)) and math.isfinite(source[key]) and source[key] > 0, key
    assert parsed["device"] == res["device"] == "cpu"
    assert parsed["fc_step_flops_per_net"] == 67_608_000
    assert "SGEMM peak" in "\n".join(out[:-1])
    assert "cohort of 13 vs vmap" in "\n".join(out[:-1])
    # the speedup over the vmap peer is the ratio of the two reported rates
    assert res["cohort_speedup_vs_vmap"] == pytest.approx(
        res["fc_cohort13_net_samples_per_s"] / res["vmap_cohort13_net_samples_per_s"])
    assert res["vmap_cohort13_net_samples_per_s"] == pytest.approx(13 * 60 / (res["vmap_cohort13_step_ms"] / 1e3))
    # the bench timed the production step, for a lone network and for a 13-member cohort
    assert 1 in calls and 13 in calls
    # evaluation costs more when the test set is evaluated at every point
    for name in ("single", "cohort13"):
        assert res[f"eval_overhead_full_fc_{name}_all"] > res[f"eval_overhead_full_fc_{name}_on_best"]
    # the sparse path: the paper's densities of rounds 0-20, the path chosen from the threshold alone, and
    # the chosen projection the dense one wherever every level trained dense
    levels = res["sparse_levels"]
    assert [lv["round"] for lv in levels] == [0, 4, 8, 12, 16, 20]
    from ticketlab.nets.sparse import SPARSE_BELOW
    threshold = SPARSE_BELOW[((784, 300), (300, 100), (100, 10))]
    assert [lv["path"] for lv in levels] == ["sparse" if 0.8 ** lv["round"] < threshold else "dense" for lv in levels]
    assert res["projected_criteria_sparse_saving"] == pytest.approx(
        res["projected_criteria_full_hours_dense"] / res["projected_criteria_full_hours"])
    assert "round 12" in "\n".join(out[:-1])
    # the conv net's cohort beside a plain loop of the same net: the ratio of the two reported rates
    assert res["conv2_cohort2_vs_plain"] == pytest.approx(
        res["conv2_cohort2_net_samples_per_s"] / res["conv2_plain_samples_per_s"])
    assert "Conv2 training, plain PyTorch loop" in "\n".join(out[:-1])


def _reference_grads(member: MemberStart, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """One member's masked weight gradients ((in, out), as ticketlab stores kernels), plain autograd."""
    ws = [w.to(x.device).clone().requires_grad_() for w in member.weights]
    h = x
    for i, w in enumerate(ws):
        h = h @ w  # biases start at zero
        h = h.relu() if i < len(ws) - 1 else h
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(h, y), ws)
    if member.masks is None:
        return list(grads)
    return [g * mk.to(g.device) for g, mk in zip(grads, member.masks)]


def test_vmap_peer_gradients_equal_per_member_autograd(mnist, device):
    """The bench's vmap peer: each member's gradient is what autograd gives that member alone, masked;
    exactly zero where the member is pruned."""
    members = _members(FC, [1.0, 0.8, 0.2])
    peer = bench.VmapCohort(FC, members, 1.2e-3, device)
    x, y = next(_batches(mnist, 1, device=device))
    grads = peer.grads(x, y)
    names = [n for n in grads if n.endswith("weight")]
    for m, member in enumerate(members):
        for i, ref in enumerate(_reference_grads(member, x, y)):
            got = grads[names[i]][m].T
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)
            if member.masks is not None:
                assert torch.count_nonzero(got[~member.masks[i].to(device)]) == 0
    assert all(torch.count_nonzero(g) > 0 for g in grads.values())


def test_vmap_peer_trains_and_keeps_pruned_weights_zero(mnist, device):
    """A few vmap steps on a fixed batch: every member's loss goes down, pruned weights stay exactly
    zero, kept weights move."""
    members = _members(FC, [1.0, 0.8, 0.2, 0.05])
    peer = bench.VmapCohort(FC, members, 1.2e-3, device)
    x, y = next(_batches(mnist, 1, device=device))
    before = peer.losses(x, y)
    start = {n: p.clone() for n, p in peer.params.items()}
    for _ in range(5):
        peer.step(x, y)
    after = peer.losses(x, y)
    # every member learns; the sparsest (5% of the weights) slowly
    assert before.shape == (4,) and bool((after < before).all()) and after[0] < before[0] - 0.5, (before, after)
    names = [n for n in peer.params if n.endswith("weight")]
    for m, member in enumerate(members):
        for i, name in enumerate(names):
            w, w0 = peer.params[name][m].T, start[name][m].T
            keep = member.masks[i].to(device) if member.masks is not None else torch.ones_like(w, dtype=torch.bool)
            assert torch.count_nonzero(w[~keep]) == 0
            assert not torch.equal(w[keep], w0[keep])


def test_train_cohort_runs_the_benchmarked_step(mnist, monkeypatch):
    calls = []
    real_step = CohortState.step

    def counting_step(self, x, y):
        calls.append(1)
        return real_step(self, x, y)

    monkeypatch.setattr(CohortState, "step", counting_step)
    train_cohort(FC, mnist, _members(FC, [1.0]), Schedule(iterations=7, learning_rate=1e-3, eval_every=5), seed=0)
    assert len(calls) == 7


def test_manual_steps_reproduce_train_cohort(mnist):
    """train_cohort = CohortState.step on the seed's batches, nothing else touches the weights."""
    members = _members(FC, [1.0, 0.5])
    sched = Schedule(iterations=25, learning_rate=1.2e-3, eval_every=10)
    results = train_cohort(FC, mnist, members, sched, seed=3)
    state = CohortState(FC, members, sched.learning_rate, CPU)
    perm = torch.randperm(len(mnist.train_x), generator=generator(3, "batch_order"))
    for it in range(25):
        idx = perm[it * 60 : (it + 1) * 60]
        state.step(mnist.train_x.index_select(0, idx), mnist.train_y.index_select(0, idx))
    for m, r in enumerate(results):
        assert all(torch.equal(w[m], f) for w, f in zip(state.weights, r.final_weights))
        assert all(torch.equal(b[m], f) for b, f in zip(state.biases, r.final_biases))


def test_hand_written_fc_backward_equals_autograd_bitwise(mnist, device):
    members = _members(FC, [1.0, 0.7, 0.1])
    state = CohortState(FC, members, 1e-3, device)
    g = torch.Generator().manual_seed(1)
    for w in state.weights:  # trained-looking weights and biases, not just the init
        w.add_(torch.randn(w.shape, generator=g).to(device) * 0.01)
    for b in state.biases:
        b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    for x, y in _batches(mnist, 3, device=device):
        ws = [w.clone().requires_grad_() for w in state.weights]
        bs = [b.clone().requires_grad_() for b in state.biases]
        expected = torch.autograd.grad(member_losses(forward(FC, ws, bs, x), y).mean(1).sum(), ws + bs)
        gw = [torch.full_like(w, float("nan")) for w in state.weights]
        gb = [torch.full_like(b, float("nan")) for b in state.biases]
        fc_grads(state.weights, state.biases, x, y, gw, gb)
        assert all(torch.equal(a, b) for a, b in zip(expected, gw + gb))
        # and into the trainer's own (strided) views of its flat gradient buffer
        state.grads[0].fill_(float("nan"))
        fc_grads(state.weights, state.biases, x, y, state.grad_weights, state.grad_biases)
        assert all(torch.equal(a, b) for a, b in zip(expected, state.grads))
        if device.type == "cpu":  # the CPU trainer's pass, its views and buffers made once, reused
            fc_pass = fwd.FCPass(state.weights, state.biases, state.grad_weights, state.grad_biases, len(x))
            for _ in range(2):
                state.grads[0].fill_(float("nan"))
                fc_pass.grads(x, y)
                assert all(torch.equal(a, b) for a, b in zip(expected, state.grads))


@pytest.mark.parametrize("rows", [60, 59, 128, 200, 250, 256, 512, 1000])
def test_lone_member_affine_equals_its_cohort_product(rows, device):
    """A member's product alone gives the bits it gets in a cohort, and under autograd the gradients
    of a member computed alone and in a cohort are the same."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(rows, 784, generator=g).to(device)
    w = (torch.randn(3, 784, 300, generator=g) * 0.05).to(device)
    b = torch.randn(3, 300, generator=g).to(device)
    cohort = fwd.affine(x.expand(3, rows, 784), w, b)
    for m in range(3):
        assert torch.equal(fwd.affine(x.expand(1, rows, 784), w[m : m + 1], b[m : m + 1])[0], cohort[m])
    ws, w1 = w.clone().requires_grad_(), w[1:2].clone().requires_grad_()
    (gs,) = torch.autograd.grad(fwd.affine(x.expand(3, rows, 784), ws, b).relu().sum(), ws)
    (g1,) = torch.autograd.grad(fwd.affine(x.expand(1, rows, 784), w1, b[1:2]).relu().sum(), w1)
    assert torch.equal(g1[0], gs[1])
    # the hand-written backward's products: weight gradients and the gradient of a layer's input
    h = torch.rand(3, rows, 300, generator=g).to(device)
    dz = torch.randn(3, rows, 100, generator=g).to(device)
    w2 = torch.randn(3, 300, 100, generator=g).to(device)
    grad_w, grad_h = fwd.product(h.transpose(1, 2), dz), fwd.product(dz, w2.transpose(1, 2))
    for m in range(3):
        out = torch.full((1, 300, 100), float("nan"), device=device)
        fwd.product(h[m : m + 1].transpose(1, 2), dz[m : m + 1], out=out)
        assert torch.equal(out[0], grad_w[m])
        assert torch.equal(fwd.product(dz[m : m + 1], w2[m : m + 1].transpose(1, 2))[0], grad_h[m])


@pytest.mark.parametrize("batch", [60, 1, 7, 128, 1000])
def test_loss_grad_equals_autograd_bitwise(batch, device):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(4, batch, 10, generator=g) * 5).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    z = logits.clone().requires_grad_()
    (expected,) = torch.autograd.grad(member_losses(z, y).mean(1).sum(), z)
    assert torch.equal(loss_grad(logits, y), expected)


def _assert_same_training(fast: CohortState, ref: CohortState, members: list[MemberStart]) -> None:
    """Same weights and biases bitwise; same Adam moments wherever a weight is kept."""
    assert all(torch.equal(a, b) for a, b in zip(fast.weights + fast.biases, ref.weights + ref.biases))
    n = len(fast.weights)
    for i in range(2 * n):
        for m, member in enumerate(members):
            if member.masks is not None and i < n:
                keep = member.masks[i].to(fast.exp_avgs[i].device)
            else:
                keep = torch.ones_like(fast.exp_avgs[i][m], dtype=torch.bool)
            assert torch.equal(fast.exp_avgs[i][m][keep], ref.exp_avgs[i][m][keep])
            assert torch.equal(fast.exp_avg_sqs[i][m][keep], ref.exp_avg_sqs[i][m][keep])


@pytest.mark.parametrize("densities", [[1.0, 0.8, 0.05], [0.8, 0.3, 0.5, 0.9, 0.2], [1.0, 1.0]])
def test_fused_step_equals_straightforward_reference(mnist, densities, device):
    """step with pruned weights held by an infinite second moment = step with pruned weights held by
    zero gradients (the straightforward way)."""
    members = _members(FC, densities)
    fast = CohortState(FC, members, 1.2e-3, device)
    ref = CohortState(FC, members, 1.2e-3, device, hold_by_inf=False)
    for x, y in _batches(mnist, 6, device=device):
        fast.step(x, y)
        ref.step(x, y)
    _assert_same_training(fast, ref, members)
    for m, member in enumerate(members):  # the pruned weights really held, the kept ones moved
        if member.masks is not None:
            for w, w0, mask in zip(fast.weights, member.weights, member.masks):
                w = w[m].cpu()
                assert torch.equal(w[~mask], w0[~mask]) and not torch.equal(w[mask], w0[mask])


def _assert_members_train_as_alone(mnist, members: list[MemberStart], compared: int, steps: int,
                                   device: torch.device = CPU) -> CohortState:
    """Train the cohort and its first `compared` members alone for `steps` steps; every state tensor
    of each compared member is bitwise the same. Returns the cohort's state."""
    cohort = CohortState(FC, members, 1.2e-3, device)
    alone = [CohortState(FC, [m], 1.2e-3, device) for m in members[:compared]]
    for x, y in _batches(mnist, steps, device=device):
        cohort.step(x, y)
        for a in alone:
            a.step(x, y)
    for m, a in enumerate(alone):
        for ts, ta in zip(_state_tensors(cohort), _state_tensors(a)):
            assert torch.equal(ts[m], ta[0])
    return cohort


def test_cohort_of_13_step_is_bitwise_member_invariant(mnist, device):
    """The criteria cohort size, with dense and masked members: one Adam call over the whole flat
    buffer gives each member what it gets alone."""
    densities = [1.0, 0.8, 0.64, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.9]
    members = _members(FC, densities)
    cohort = _assert_members_train_as_alone(mnist, members, len(members), steps=4, device=device)
    # pruned weights held exactly, kept weights moved
    for m, member in enumerate(members):
        if member.masks is None:
            continue
        for w, w0, mask in zip(cohort.weights, member.weights, member.masks):
            w = w[m].cpu()
            assert torch.equal(w[~mask], w0[~mask])
            assert not torch.equal(w[mask], w0[mask])


def _misaligned(t: torch.Tensor, floats: int = 8) -> torch.Tensor:
    """A copy of t whose data starts `floats` floats past a 64-byte boundary, members packed."""
    buf = torch.empty(t.numel() + 64, dtype=t.dtype)
    skip = (-(buf.data_ptr() // t.element_size())) % 16 + floats
    return buf[skip : skip + t.numel()].view(t.shape).copy_(t)


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
def test_products_do_not_depend_on_where_members_sit_in_memory(threads):
    """On an AMD EPYC (torch 2.13, MKL) a member block starting 32 bytes off a 64-byte line summed in
    another order: a (60, 10) block is 2,400 bytes, so every odd member of a packed cohort differed
    from itself alone, even with one thread. Products align their operands and outputs; here every
    member of packed, misaligned operands equals the member alone, at several thread counts."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(3)
        for width in (300, 100, 10):
            dz = _misaligned(torch.randn(5, 60, width, generator=g))
            h = _misaligned(torch.rand(5, 60, 100, generator=g))
            w = _misaligned(torch.randn(5, 100, width, generator=g))
            b = _misaligned(torch.randn(5, width, generator=g))
            grad_b = fwd.bias_grad(dz)
            into = _misaligned(torch.full((5, width), float("nan")))
            assert torch.equal(fwd.bias_grad(dz, out=into), grad_b) and torch.equal(into, grad_b)
            grad_w, grad_h = fwd.product(h.transpose(1, 2), dz), fwd.product(dz, w.transpose(1, 2))
            out = fwd.affine(h, w, b)
            for m in range(5):
                alone = [t[m : m + 1].clone() for t in (dz, h, w, b)]
                assert torch.equal(fwd.bias_grad(alone[0])[0], grad_b[m])
                assert torch.equal(fwd.product(alone[1].transpose(1, 2), alone[0])[0], grad_w[m])
                assert torch.equal(fwd.product(alone[0], alone[2].transpose(1, 2))[0], grad_h[m])
                assert torch.equal(fwd.affine(alone[1], alone[2], alone[3])[0], out[m])
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
def test_a_member_trains_to_the_same_bits_in_any_cohort(mnist, threads):
    """The case an AMD EPYC host found: the same member trained in a cohort of 3 and in a cohort of 2
    ended with different weights (the cohort of 2 resumed a round whose other member was done, so a
    resumed sweep differed from an uninterrupted one). Alone, in a cohort of 2 and in one of 3, at
    several thread counts, a member's whole state is the same after 30 steps."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    flush_denormals(True)  # on threads the pool just created too
    try:
        members = _members(FC, [0.5, 1.0, 0.2])
        cohorts = [CohortState(FC, group, 1.2e-3, CPU) for group in (members, members[1:], members[2:])]
        for x, y in _batches(mnist, 30):
            for c in cohorts:
                c.step(x, y)
        last = [_state_tensors(c) for c in cohorts]
        for a, b, c in zip(*last):
            assert torch.equal(a[2], b[1]) and torch.equal(a[2], c[0])
            assert torch.equal(a[1], b[0])
    finally:
        torch.set_num_threads(before)
        flush_denormals(True)


@pytest.fixture
def many_threads():
    """16 intra-op threads (as on a 16-core machine; oversubscribed here), denormals flushed on the
    new ones too; afterwards the previous thread count, denormals flushed (as conftest sets them)."""
    before = torch.get_num_threads()
    torch.set_num_threads(16)
    flush_denormals(True)
    yield 16
    torch.set_num_threads(before)
    flush_denormals(True)


def test_cohort_member_equals_lone_member_with_many_threads(mnist, many_threads):
    """With 16 threads torch's sum over the batch split differently for a cohort than for a lone
    member (the 100-unit layer's bias gradient differed); bias gradients are products now."""
    _assert_members_train_as_alone(mnist, _members(FC, [1.0, 0.8, 0.3] + [0.5] * 10), 3, steps=2)


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
def test_bias_grad_is_the_batch_sum_member_by_member(threads):
    """bias_grad: the sum over the batch (to rounding), each member's the same in any cohort."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        for width in (300, 100, 10):
            dz = torch.randn(13, 60, width, generator=g)
            cohort = fwd.bias_grad(dz)
            torch.testing.assert_close(cohort, dz.double().sum(1).float(), rtol=1e-5, atol=1e-5)
            for m in range(13):
                assert torch.equal(fwd.bias_grad(dz[m : m + 1])[0], cohort[m])
    finally:
        torch.set_num_threads(before)


def test_fused_tf1_adam_matches_the_foreach_reference():
    """Same TF1 update as the straightforward foreach form (to rounding); zero gradient = no move."""
    g = torch.Generator().manual_seed(0)
    p0 = [torch.randn(1000, generator=g), torch.randn(37, generator=g)]
    p_ref, p_fused = [p.clone() for p in p0], [p.clone() for p in p0]
    m_ref, v_ref = [torch.zeros_like(p) for p in p0], [torch.zeros_like(p) for p in p0]
    m_f, v_f = [torch.zeros_like(p) for p in p0], [torch.zeros_like(p) for p in p0]
    step_t = torch.zeros(())
    for step in range(1, 300):
        grads = [torch.randn(p.shape, generator=g) * 0.1 for p in p0]
        grads[0][:100] = 0.0  # "pruned"
        _adam_step(p_ref, grads, m_ref, v_ref, step, 1.2e-3)
        step_t.fill_(step)
        torch._fused_adam_(p_fused, grads, m_f, v_f, [], [step_t] * 2, **adam.tf1_adam_fused_args(step, 1.2e-3))
    for a, b in zip(p_ref, p_fused):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(p_fused[0][:100], p0[0][:100])
    assert torch.count_nonzero(m_f[0][:100]) == 0 and torch.count_nonzero(v_f[0][:100]) == 0


@pytest.mark.parametrize("net", ["fc", "conv2"])
@pytest.mark.parametrize("per_member", [True, False])
def test_evaluate_a_member_alone_in_a_subset_or_in_the_cohort(mnist, net, per_member, device):
    """A member's val loss and accuracy are the same bits whichever members are evaluated with it,
    one member at a time (the CPU default, and conv nets' everywhere) or together (batched products;
    the GPU default for FC, in padded groups of forward.CUDA_LANES)."""
    spec = get_net(net)
    state = CohortState(spec, _members(spec, [1.0, 0.5, 0.2, 0.9]), 1e-3, device)
    g = torch.Generator().manual_seed(3)
    for b in state.biases:
        b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    if not spec.dense_stack:
        x = torch.rand(300, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, 10, (300,), generator=g).to(device)
    else:
        x, y = mnist.val_x.to(device), mnist.val_y.to(device)

    def ev(ws, bs, members=None):
        return evaluate(spec, ws, bs, x, y, members=members, per_member=per_member)

    every = ev(state.weights, state.biases)
    some = ev(state.weights, state.biases, members=[3, 1])
    one = ev(state.weights, state.biases, members=[2])
    alone = [ev([w[m : m + 1].clone() for w in state.weights], [b[m : m + 1].clone() for b in state.biases])
             for m in range(4)]
    assert len(set(every[0])) == 4  # the members differ
    assert some == ([every[0][3], every[0][1]], [every[1][3], every[1][1]])
    assert one == ([every[0][2]], [every[1][2]])
    assert every == ([a[0][0] for a in alone], [a[1][0] for a in alone])
    # and both ways compute the same losses, up to rounding
    other = evaluate(spec, state.weights, state.biases, x, y, per_member=not per_member)
    assert other[0] == pytest.approx(every[0], rel=1e-5) and other[1] == pytest.approx(every[1], abs=2 / len(x))


def test_batched_evaluation_of_more_members_than_lanes(mnist, device):
    """15 members evaluated together: on a GPU two calls of forward.CUDA_LANES members, the second
    padded; a member's numbers are the same alone, in a subset, or in either group."""
    state = CohortState(FC, _members(FC, [1.0, 0.5, 0.2] * 5), 1e-3, device)
    x, y = mnist.val_x[:1000].to(device), mnist.val_y[:1000].to(device)
    every = evaluate(FC, state.weights, state.biases, x, y, per_member=False)
    assert len(set(every[0])) == 15
    for m in (0, 12, 13, 14):
        alone = evaluate(FC, [w[m : m + 1].clone() for w in state.weights],
                         [b[m : m + 1].clone() for b in state.biases], x, y, per_member=False)
        assert alone == ([every[0][m]], [every[1][m]])
    some = evaluate(FC, state.weights, state.biases, x, y, members=[14, 13, 0], per_member=False)
    assert some == ([every[0][i] for i in (14, 13, 0)], [every[1][i] for i in (14, 13, 0)])


def test_conv_step_equals_reference(device):
    spec = get_net("conv2")
    members = _members(spec, [1.0, 0.7])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (60,), generator=g).to(device)
    fast = CohortState(spec, members, 2e-4, device)
    ref = CohortState(spec, members, 2e-4, device, hold_by_inf=False)
    for _ in range(2):
        fast.step(x, y)
        ref.step(x, y)
    _assert_same_training(fast, ref, members)
    # and the autograd gradients are the plain ones
    ws = [torch.stack([m.weights[i] for m in members]).to(device).requires_grad_() for i in range(len(spec.layers))]
    bs = [torch.zeros(2, layer.out_channels, device=device, requires_grad=True) for layer in spec.layers]
    expected = torch.autograd.grad(member_losses(forward(spec, ws, bs, x), y).mean(1).sum(), ws + bs)
    state = CohortState(spec, members, 2e-4, device)
    state.compute_grads(x, y)
    assert all(torch.equal(a, b) for a, b in zip(expected, state.grads))


def test_flop_count_and_eval_points():
    # forward 2BP + backward-weights 2BP for all layers, backward-data 2BP for fc2 and fc3
    assert bench.fc_step_flops(FC, 60) == 4 * 60 * 266_200 + 2 * 60 * (30_000 + 1_000)
    assert bench.eval_points(50_380, 100) == 505  # 0, 100, ..., 50,300 and 50,380
    assert bench.eval_points(200, 100) == 3


def test_on_best_test_eval_count():
    # member 0 improves at points 0, 1, 3; member 1 at 0, 2: any-member improvements at 0, 1, 2, 3
    losses = [[3.0, 2.0, 2.5, 1.0, 1.5], [3.0, 3.5, 2.0, 2.5, 2.1]]
    measured, total = bench.on_best_test_evals(losses, total_points=5)
    assert measured == 4 and total == pytest.approx(5.0)  # nothing left to model but the final point
    _, more = bench.on_best_test_evals(losses, total_points=505)
    assert 5.0 < more < 505.0
    assert bench._record_probability_sum(1, 3) == pytest.approx(1 / 2 + 1 / 3 + 1 / 4)


@pytest.mark.parametrize("lanes", [4, 13])
@pytest.mark.parametrize("k", [1, 3, 4, 5, 13, 14, 27])
def test_products_in_lanes_equal_one_batched_call(k, lanes):
    """forward._in_lanes (how a CUDA GPU runs every batched product) pads and chunks without changing
    a number: checked here on the CPU, where a batched product's item does not depend on the batch."""
    g = torch.Generator().manual_seed(k)
    x = torch.rand(60, 784, generator=g)
    w = torch.randn(k, 784, 30, generator=g)
    b = torch.randn(k, 30, generator=g)
    h = torch.rand(k, 60, 30, generator=g)
    dz = torch.randn(k, 60, 10, generator=g)
    cases = [  # (op, operands) as the forward and backward passes call them: expanded, transposed, broadcast
        (torch.baddbmm, (b.unsqueeze(1), x.expand(k, 60, 784), w)),
        (torch.bmm, (h.transpose(1, 2), dz)),
        (torch.bmm, (dz, torch.randn(k, 30, 10, generator=g).transpose(1, 2))),
        (torch.bmm, (x.expand(k, 60, 784).transpose(1, 2), h)),
    ]
    for op, operands in cases:
        expected = op(*(t.expand(2, *t.shape[1:]) if k == 1 else t for t in operands))[:k]
        assert torch.equal(fwd._in_lanes(op, *operands, lanes=lanes), expected)
        if op is not torch.bmm:
            continue  # only gradients (bmm) are written into caller buffers
        n = expected[0].numel()
        out = torch.full((k, n + 16), float("nan"))[:, :n].view(expected.shape)  # strided, as a gradient view
        assert fwd._in_lanes(op, *operands, out=out, lanes=lanes) is out and torch.equal(out, expected)


def test_padded_members_keep_their_layout():
    t = torch.rand(3, 60, 300)
    assert fwd._pad_members(t.transpose(1, 2), 13).transpose(1, 2).is_contiguous()
    assert torch.equal(fwd._pad_members(t.transpose(1, 2), 13)[3:], t[0].T.expand(10, 300, 60))
    assert fwd._pad_members(torch.rand(60, 784).expand(3, 60, 784), 13).stride(0) == 0
    assert fwd._pad_members(t, 3) is t
    # a transposed view of a flat-buffer block with gaps between members (FC's 100x10 kernel)
    gapped = torch.rand(3, 1008)[:, :1000].view(3, 100, 10).transpose(1, 2)
    padded = fwd._pad_members(gapped, 13)
    assert padded.stride(1) == 1 and torch.equal(padded[:3], gapped) and torch.equal(padded[12], gapped[0])


@pytest.mark.parametrize("densities", [[1.0, 0.5, 0.2], [0.8] * 5])
def test_cohort_padded_with_fillers_trains_its_members_unchanged(mnist, monkeypatch, densities):
    """An FC cohort on a CUDA GPU is padded to a multiple of forward.CUDA_LANES with filler members;
    the padding, forced here on the CPU (4 lanes: 3 -> 4 members, 5 -> 8), changes no real member's
    numbers, and every view shows the real members only."""
    members = _members(FC, densities)
    plain = CohortState(FC, members, 1.2e-3, CPU)
    monkeypatch.setattr(cohort_state, "cohort_lanes", lambda spec, device: 4)
    padded = CohortState(FC, members, 1.2e-3, CPU)
    assert padded.layout.k == 4 * -(-len(members) // 4) > len(members)
    # the gradients run in one batched pass per group of lanes; without lanes, one for the cohort
    assert len(padded._lane_groups) == padded.layout.k // 4 and len(plain._lane_groups) == 1
    for x, y in _batches(mnist, 3):
        plain.step(x, y)
        padded.step(x, y)
    assert all(t.shape[0] == len(members) for t in _state_tensors(padded) + padded.grads)
    assert all(torch.equal(a, b) for a, b in zip(_state_tensors(plain), _state_tensors(padded)))
    sched = Schedule(iterations=30, learning_rate=1.2e-3, eval_every=15)
    with_fillers = train_cohort(FC, mnist, members, sched, seed=0)
    monkeypatch.undo()
    without = train_cohort(FC, mnist, members, sched, seed=0)
    for a, b in zip(with_fillers, without):
        assert a.history == b.history and all(torch.equal(p, q) for p, q in zip(a.final_weights, b.final_weights))
    assert len(with_fillers) == len(members)
