"""The mask learners: frozen weights, the straight-through gradient, seeded masks, cohort == alone,
edge-popup's exact top-k with seeded ties."""
from __future__ import annotations

import torch

from ticketlab.data.dataset import Dataset
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.core.seeds import generator
from ticketlab.training import MemberStart, Schedule, train_cohort
from ticketlab.training.masks import BernoulliCohort, EdgePopupCohort, MaskLearner, MaskVariant, sampled_masks

FC = get_net("fc")


def _data(n: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 784, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def _dataset(shape: tuple[int, ...] = (784,)) -> Dataset:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (700, *shape), generator=g).float() / 255
    y = torch.randint(0, 10, (700,), generator=g)
    return Dataset("synthetic", x[:500], y[:500], x[500:600], y[500:600], x[600:], y[600:])


def _starts(k: int) -> list[MemberStart]:
    w = init_weights(FC, generator(0, "init"))
    return [MemberStart([t.clone() * (1 + 0.1 * m) for t in w]) for m in range(k)]


VARIANTS = [MaskVariant("a", 100.0, dwr=False), MaskVariant("b", 100.0, dwr=True), MaskVariant("c", 50.0, logit_init=0.5)]


def test_weights_and_biases_never_change():
    starts = _starts(3)
    cohort = BernoulliCohort(FC, starts, VARIANTS, 0, Schedule(5, 100.0, batch_size=50), torch.device("cpu"))
    x, y = _data(50)
    frozen0 = [f.clone() for f in cohort.frozen]
    biases0 = [b.clone() for b in cohort.biases]
    logits0 = [p.clone() for p in cohort.param]
    for _ in range(3):
        cohort.step(x, y)
    for a, b in zip(frozen0, cohort.frozen):
        assert torch.equal(a, b)
    for a, b in zip(biases0, cohort.biases):
        assert torch.equal(a, b)
    for m in range(3):
        for i, s in enumerate(starts[m].weights):
            assert torch.equal(cohort.frozen[i][m], s)
    assert any(not torch.equal(a, b) for a, b in zip(logits0, cohort.param))  # the logits did train


def test_trained_run_keeps_kernels_frozen():
    """Through the loop: every evaluated network is frozen kernel x a 0/1 mask (x a DWR scale)."""
    starts = _starts(2)
    learner = MaskLearner("bernoulli", VARIANTS[:2], 3)
    (r0, r1) = train_cohort(FC, _dataset(), starts, Schedule(6, 100.0, batch_size=100, eval_every=3), 3, learner=learner)
    for i, w in enumerate(r0.final_weights):
        kept = w != 0
        assert torch.equal(w[kept], starts[0].weights[i][kept])
        assert torch.equal(r0.final_biases[i], torch.zeros_like(r0.final_biases[i]))


def test_straight_through_gradient_is_analytic():
    """A 1-layer net (2 inputs -> 10 logits) by hand: dL/dlogit = dL/dW_eff * w * s(1-s) (* DWR scale)."""
    from ticketlab.nets import fc
    from ticketlab.nets.specs import Layer, NetSpec
    spec = NetSpec("tiny", (Layer("fc1", "fc", 2, 10, 0.9, relu=False),), (2,), "mnist", 1e-3, 1, forward=fc.forward,
                   dense_stack=True, eval_chunk=5000)
    g = torch.Generator().manual_seed(5)
    w = torch.randn(2, 10, generator=g)
    for dwr in (False, True):
        v = MaskVariant("t", 1.0, momentum=0.0, logit_init=0.3, dwr=dwr)
        c = BernoulliCohort(spec, [MemberStart([w.clone()])], [v], 0, Schedule(1, 1.0, batch_size=4), torch.device("cpu"))
        x = torch.rand(4, 2, generator=g)
        y = torch.tensor([1, 3, 5, 7])
        before = c.param[0][0].clone()
        c.step(x, y)
        mask = c.mask[0][0].clone()
        scale = mask.numel() / mask.sum().item() if dwr else 1.0
        weff = (w * mask * scale).double()
        logits = x.double() @ weff
        p = torch.softmax(logits, 1)
        onehot = torch.nn.functional.one_hot(y, 10).double()
        dweff = x.double().t() @ (p - onehot) / 4  # mean cross-entropy's gradient, by hand
        s = torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))
        expected = dweff * w.double() * scale * s * (1 - s)
        assert torch.allclose(before - c.param[0][0].double(), expected, rtol=1e-5, atol=1e-7)


def test_sampled_masks_reproducible():
    logits = [torch.randn(30, 20, generator=torch.Generator().manual_seed(0))]
    a = sampled_masks(logits, 7, "v", 3)
    b = sampled_masks(logits, 7, "v", 3)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))
    assert not torch.equal(a[0][0], a[1][0])  # independent samples
    assert not torch.equal(a[0][0], sampled_masks(logits, 8, "v", 1)[0][0])
    # training draws reproduce too
    starts = _starts(1)
    x, y = _data(50)
    masks = []
    for _ in range(2):
        c = BernoulliCohort(FC, starts, VARIANTS[:1], 0, Schedule(2, 100.0, batch_size=50), torch.device("cpu"))
        c.step(x, y)
        masks.append([m.clone() for m in c.mask])
    assert all(torch.equal(p, q) for p, q in zip(*masks))


def _cohort_vs_alone(learner: str, variants: list[MaskVariant]):
    data = _dataset()
    starts = _starts(len(variants))
    schedule = Schedule(6, 1.0, batch_size=100, eval_every=2)
    together = train_cohort(FC, data, starts, schedule, 4, learner=MaskLearner(learner, variants, 4))
    for m, v in enumerate(variants):
        (alone,) = train_cohort(FC, data, [starts[m]], schedule, 4, learner=MaskLearner(learner, [v], 4))
        for a, b in zip(alone.final_weights, together[m].final_weights):
            assert torch.equal(a, b)
        assert alone.history == together[m].history


def test_bernoulli_member_equals_alone():
    _cohort_vs_alone("bernoulli", VARIANTS)


def test_edge_popup_member_equals_alone():
    _cohort_vs_alone("edge_popup", [MaskVariant(f"k{k}", 0.5, kept_fraction=k) for k in (0.1, 0.5, 0.7)])


def test_edge_popup_keeps_exact_top_k_with_seeded_ties():
    starts = _starts(2)
    vs = [MaskVariant("k0.3", 0.1, kept_fraction=0.3), MaskVariant("k0.7", 0.1, kept_fraction=0.7)]
    c = EdgePopupCohort(FC, starts, vs, 0, Schedule(1, 0.1), torch.device("cpu"))
    for m, frac in enumerate((0.3, 0.7)):
        for i, layer in enumerate(FC.layers):
            mask = c.top_k(m, i)
            assert int(mask.sum()) == round(frac * layer.size)
            kept, dropped = c.param[i][m].abs()[mask], c.param[i][m].abs()[~mask]
            assert kept.min() >= dropped.max()
    # all scores tied: exactly k kept, chosen by the seeded order, the same for the same seed
    def tied(seed: int) -> torch.Tensor:
        e = EdgePopupCohort(FC, starts[:1], vs[:1], seed, Schedule(1, 0.1), torch.device("cpu"))
        e.param[2][0].fill_(0.25)
        return e.top_k(0, 2)
    a, b, other = tied(1), tied(1), tied(2)
    assert int(a.sum()) == 300 and torch.equal(a, b) and not torch.equal(a, other)


def test_conv_path_on_synthetic_cifar_shaped_data():
    """Conv2 on CIFAR-shaped random images (CIFAR-10 itself is not needed): kernels stay frozen,
    and a member equals itself trained alone."""
    spec = get_net("conv2")
    g = torch.Generator().manual_seed(2)
    data = Dataset("synthetic", torch.rand(40, 3, 32, 32, generator=g), torch.randint(0, 10, (40,), generator=g),
                   torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g),
                   torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
    w = init_weights(spec, generator(0, "init"))
    starts = [MemberStart(w), MemberStart([t * 2 for t in w])]
    vs = [MaskVariant("a", 100.0, dwr=True), MaskVariant("b", 100.0)]
    schedule = Schedule(2, 100.0, batch_size=20, eval_every=2)
    together = train_cohort(spec, data, starts, schedule, 0, learner=MaskLearner("bernoulli", vs, 0))
    (alone,) = train_cohort(spec, data, starts[1:], schedule, 0, learner=MaskLearner("bernoulli", vs[1:], 0))
    for a, b, s in zip(alone.final_weights, together[1].final_weights, starts[1].weights):
        assert torch.equal(a, b)
        assert torch.equal(a[a != 0], s[a != 0])
    assert alone.history == together[1].history
