"""The cohort trainer: bitwise cohort-vs-alone, held pruned weights, schedule, seeded batches."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ticketlab.data import load_dataset
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.core.seeds import generator
from ticketlab.training.loop import train_cohort
from ticketlab.training.schedule import MemberStart, Schedule

FC = get_net("fc")


def _members() -> list[MemberStart]:
    """Three different members: dense; mask-0 'zero'; mask-0 'freeze at init' (other seed's init)."""
    init = init_weights(FC, generator(0, "init"))
    other = init_weights(FC, generator(1, "init"))
    g = torch.Generator().manual_seed(5)
    masks_a = [torch.rand(w.shape, generator=g) < 0.5 for w in init]
    masks_b = [torch.rand(w.shape, generator=g) < 0.2 for w in init]
    zeroed = [w * m for w, m in zip(init, masks_a)]
    frozen = [torch.where(m, w, w0) for w, w0, m in zip(other, init, masks_b)]
    return [MemberStart(init), MemberStart(zeroed, masks_a), MemberStart(frozen, masks_b)]


@pytest.fixture(scope="module")
def cohort_and_alone(mnist, device):
    members = _members()
    schedule = Schedule(iterations=230, learning_rate=1.2e-3, eval_every=100)
    together = train_cohort(FC, mnist, members, schedule, seed=4, device=device)
    alone = [train_cohort(FC, mnist, [m], schedule, seed=4, device=device)[0] for m in members]
    return members, together, alone


def test_cohort_member_bitwise_equals_alone(cohort_and_alone):
    _, together, alone = cohort_and_alone
    for t, a in zip(together, alone):
        assert all(torch.equal(x, y) for x, y in zip(t.final_weights, a.final_weights))
        assert all(torch.equal(x, y) for x, y in zip(t.final_biases, a.final_biases))
        assert t.history == a.history


def test_members_differ_and_training_moves_weights(cohort_and_alone):
    members, together, _ = cohort_and_alone
    assert not torch.equal(together[0].final_weights[0], together[1].final_weights[0])
    assert not torch.equal(together[0].final_weights[0], members[0].weights[0])


def test_pruned_weights_hold_their_value_exactly(cohort_and_alone):
    members, together, _ = cohort_and_alone
    for member, result in zip(members[1:], together[1:]):
        for start, final, mask in zip(member.weights, result.final_weights, member.masks):
            assert torch.equal(final[~mask], start[~mask])
            assert not torch.equal(final[mask], start[mask])
    # mask-0 'zero' holds exact zeros; the frozen member holds nonzero init values
    assert torch.count_nonzero(together[1].final_weights[0][~members[1].masks[0]]) == 0
    assert torch.count_nonzero(together[2].final_weights[0][~members[2].masks[0]]) > 0


def test_evaluation_points_and_early_stop(cohort_and_alone):
    _, together, _ = cohort_and_alone
    h = together[0].history
    assert h["iteration"] == [0, 100, 200, 230]
    i = together[0].early_stop_index
    assert h["val_loss"][i] == min(h["val_loss"])
    assert together[0].summary()["early_stop_iteration"] == h["iteration"][i]
    assert 0.0 < h["test_accuracy"][0] < 0.3 and h["test_accuracy"][-1] > 0.85


def test_first_argmin_on_ties():
    from ticketlab.training.schedule import MemberResult

    r = MemberResult({"iteration": [0, 100, 200], "val_loss": [2.0, 0.5, 0.5], "val_accuracy": [0.1, 0.9, 0.9],
                      "test_loss": [2.0, 0.4, 0.3], "test_accuracy": [0.1, 0.8, 0.85]}, [], [])
    assert r.summary()["early_stop_iteration"] == 100
    assert r.summary()["test_accuracy_at_early_stop"] == 0.8


def test_rerun_is_bitwise_identical_and_seed_changes_batches(mnist, device):
    start = [MemberStart(init_weights(FC, generator(0, "init")))]
    schedule = Schedule(iterations=50, learning_rate=1.2e-3, eval_every=25)
    a = train_cohort(FC, mnist, start, schedule, seed=0, device=device)[0]
    b = train_cohort(FC, mnist, start, schedule, seed=0, device=device)[0]
    c = train_cohort(FC, mnist, start, schedule, seed=1, device=device)[0]
    assert torch.equal(a.final_weights[0], b.final_weights[0]) and a.history == b.history
    assert not torch.equal(a.final_weights[0], c.final_weights[0])


def test_epoch_permutations_cover_the_training_set(mnist):
    """With batch = N/2, two steps are one epoch: every example is seen once per epoch."""
    small = dataclasses.replace(mnist, train_x=mnist.train_x[:120], train_y=mnist.train_y[:120])
    start = [MemberStart([torch.zeros(l.weight_shape) for l in FC.layers])]
    # lr tiny and weights zero: the logits' gradient wrt fc3 bias is mean(softmax - onehot), so after
    # one epoch the bias moves by a function of the label counts of the whole set, not of the order.
    sched = Schedule(iterations=2, learning_rate=1e-3, batch_size=60, eval_every=1)
    r = train_cohort(FC, small, start, sched, seed=0)[0]
    assert len(r.history["iteration"]) == 3


def test_stop_at_val_accuracy_and_snapshots(mnist):
    start = [MemberStart(init_weights(FC, generator(0, "init")))]
    sched = Schedule(iterations=500, learning_rate=1.2e-3, stop_at_val_accuracy=0.5,
                     snapshot_val_accuracies=(0.25,), snapshot_iterations=(3,))
    r = train_cohort(FC, mnist, start, sched, seed=0)[0]
    last = r.history["iteration"][-1]
    assert 0 < last < 100 and r.history["val_accuracy"][-1] >= 0.5
    assert r.snapshot_iterations["iteration_3"] == 3
    assert 0 <= r.snapshot_iterations["val_accuracy_0.25"] <= last
    # the snapshot at the stop point equals the final weights
    full = train_cohort(FC, mnist, start, dataclasses.replace(sched, stop_at_val_accuracy=None, iterations=last,
                                                               snapshot_val_accuracies=()), seed=0)[0]
    assert torch.equal(full.final_weights[0], r.final_weights[0])


def test_conv_training_smoke_on_cifar_format_files(tmp_path, device):
    from test_cifar import make_arrays, write_batches

    write_batches(tmp_path / "cifar-10-batches-py", *make_arrays())
    ds = load_dataset("cifar10", tmp_path)
    ds = dataclasses.replace(ds, val_x=ds.val_x[:120], val_y=ds.val_y[:120])
    spec = get_net("conv2")
    init = init_weights(spec, generator(0, "init"))
    masks = [torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) < 0.7 for w in init]
    members = [MemberStart(init), MemberStart([w * m for w, m in zip(init, masks)], masks)]
    sched = Schedule(iterations=6, learning_rate=2e-4, eval_every=3)
    together = train_cohort(spec, ds, members, sched, seed=0, device=device)
    alone = train_cohort(spec, ds, members[1:], sched, seed=0, device=device)[0]
    assert together[1].history == alone.history
    assert all(torch.equal(x, y) for x, y in zip(together[1].final_weights, alone.final_weights))
    for start, final, m in zip(members[1].weights, together[1].final_weights, masks):
        assert torch.equal(final[~m], start[~m])
    h = together[0].history
    assert h["iteration"] == [0, 3, 6]
    assert all(0 < v < 10 for v in h["val_loss"])
    assert not torch.equal(together[0].final_weights[0], init[0])


def test_on_best_test_history_is_independent_of_the_cohort(mnist, device):
    import math

    def gaps(h):
        return [None if math.isnan(v) else v for v in h["test_accuracy"]]

    members = _members()
    # a large learning rate makes val loss bounce, so some points are not new minima
    schedule = Schedule(iterations=300, learning_rate=2e-2, eval_every=20, test_eval="on_best")
    together = train_cohort(FC, mnist, members, schedule, seed=2, device=device)
    for m in range(3):
        alone = train_cohort(FC, mnist, members[m : m + 1], schedule, seed=2, device=device)[0]
        assert gaps(together[m].history) == gaps(alone.history)
    patterns = [[v is None for v in gaps(r.history)] for r in together]
    assert any(any(p) for p in patterns)  # some points really skipped the test set
    assert patterns[0] != patterns[1] or patterns[1] != patterns[2]  # and not all members alike
    for r in together:  # the early-stopping point always has its test accuracy
        assert not math.isnan(r.summary()["test_accuracy_at_early_stop"])


def test_timing_counts_the_phases_of_a_run(mnist):
    timing: dict[str, float] = {}
    schedule = Schedule(iterations=250, learning_rate=1.2e-3, eval_every=100, test_eval="on_best")
    (run,) = train_cohort(FC, mnist, _members()[:1], schedule, seed=0, timing=timing)
    assert timing["steps"] == 250 and timing["points"] == len(run.history["iteration"]) == 4  # 0, 100, 200, 250
    tested = sum(v == v for v in run.history["test_accuracy"])  # NaN where the test set was skipped
    assert timing["test_evals"] == tested and 2 <= tested <= 4
    assert timing["train_s"] > 0 and timing["val_s"] > 0 and timing["test_s"] > 0 and timing["other_eval_s"] == 0


def test_gathered_cpu_batches_are_64_byte_aligned():
    # the dense products round by their operands' alignment (nets.forward), so a gathered batch must
    # start on a 64-byte line whatever the allocator's history
    from ticketlab.training.loop import gather_batch

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1000, 784, generator=g), torch.randint(0, 10, (1000,), generator=g)
    for i in range(20):
        idx = torch.randperm(1000, generator=g)[:60]
        xb, yb = gather_batch(x, y, idx)
        assert xb.data_ptr() % 64 == 0 and torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
