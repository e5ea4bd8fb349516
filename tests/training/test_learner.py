"""The trainer's two seams: another optimiser plugs into the cohort state, another learner into the loop."""
from __future__ import annotations

import torch

from ticketlab.core.seeds import generator
from ticketlab.nets.forward import forward, member_losses
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.training import CohortState, MemberStart, Schedule, train_cohort

FC = get_net("fc")


class PlainSGD:
    """A toy optimiser: p -= lr * g, no state; it cannot hold pruned weights, so the cohort masks their gradients."""

    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate
        self.calls = 0

    def hold(self, slots, member, masks) -> bool:
        return False

    def step(self, params, grads, slots, iteration, learning_rate) -> None:
        self.calls += 1
        torch._foreach_add_(params, grads, alpha=-learning_rate)


def _batch(mnist, n: int = 60):
    return mnist.train_x[:n], mnist.train_y[:n]


def test_an_optimiser_plugs_into_the_cohort_state(mnist):
    init = init_weights(FC, generator(0, "init"))
    g = torch.Generator().manual_seed(1)
    masks = [torch.rand(w.shape, generator=g) < 0.5 for w in init]
    start = [w * m for w, m in zip(init, masks)]
    members = [MemberStart(init), MemberStart(start, masks)]
    sgd = PlainSGD(0.5)
    state = CohortState(FC, members, 0.5, "cpu", optimizer=sgd)
    before = [w.clone() for w in state.weights]
    x, y = _batch(mnist)
    state.compute_grads(x, y)
    grads = [gw.clone() for gw in state.grad_weights]
    state.mask_grads()
    state.update()
    assert sgd.calls == 1 and state.iteration == 1 and state.slots == {}
    for i, mask in enumerate(masks):
        # the dense member moved by exactly -lr * g; the masked one only where it keeps weights
        assert torch.equal(state.weights[i][0], before[i][0] - 0.5 * grads[i][0])
        assert torch.equal(state.weights[i][1][~mask], before[i][1][~mask])
        assert torch.equal(state.weights[i][1][mask], (before[i][1] - 0.5 * grads[i][1])[mask])
        assert not torch.equal(state.weights[i][0], before[i][0])


class BiasesOnly:
    """A toy learner: the kernels stay frozen at their start values, the biases train by SGD (autograd),
    the way a learned-supermask learner trains its scores over frozen weights."""

    def __init__(self, spec, starts, schedule, device):
        self.spec, self.lr = spec, schedule.learning_rate
        self.weights = [torch.stack([s.weights[i] for s in starts]).to(device) for i in range(len(spec.layers))]
        self.biases = [torch.zeros(len(starts), layer.out_channels, device=device) for layer in spec.layers]
        self.steps = 0

    def step(self, x, y) -> None:
        self.steps += 1
        biases = [b.detach().requires_grad_() for b in self.biases]
        with torch.enable_grad():
            loss = member_losses(forward(self.spec, self.weights, biases, x), y).mean(1).sum()
            grads = torch.autograd.grad(loss, biases)
        with torch.no_grad():
            for b, g in zip(self.biases, grads):
                b.sub_(self.lr * g)


def test_a_learner_plugs_into_the_loop(mnist):
    init = init_weights(FC, generator(0, "init"))
    made: list[BiasesOnly] = []

    def learner(spec, starts, schedule, device):
        made.append(BiasesOnly(spec, starts, schedule, device))
        return made[0]

    schedule = Schedule(iterations=30, learning_rate=0.1, eval_every=10)
    (result,) = train_cohort(FC, mnist, [MemberStart(init)], schedule, seed=3, learner=learner)
    assert made[0].steps == 30
    assert result.history["iteration"] == [0, 10, 20, 30]
    assert all(torch.equal(w, w0) for w, w0 in zip(result.final_weights, init))  # frozen
    assert any(b.abs().sum() > 0 for b in result.final_biases)  # trained
    # the loop evaluated the learner's networks: the loss moved as the biases trained
    assert result.history["val_loss"][-1] != result.history["val_loss"][0]
