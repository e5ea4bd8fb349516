"""Optimisers and learning-rate schedules beside protocol §3's: torch.optim's numbers on kept weights,
pruned weights held, cohort invariance, training from a later step, the batch-order seed, errors."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ticketlab.core.errors import TicketlabError
from ticketlab.core.seeds import generator
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.training import CohortState, MemberStart, Schedule, train_cohort
from ticketlab.training.config import TrainConfig
from ticketlab.training.optimizers import SGD, TorchAdam
from ticketlab.training.recipes import LR_SCHEDULES, OPTIMIZERS, learning_rate
from ticketlab.training.schedule import Recipe

FC = get_net("fc")


def _masked_members() -> list[MemberStart]:
    """A dense member and a masked one whose pruned weights hold non-zero values (freeze at init)."""
    init = init_weights(FC, generator(0, "init"))
    g = torch.Generator().manual_seed(3)
    masks = [torch.rand(w.shape, generator=g) < 0.6 for w in init]
    return [MemberStart(init), MemberStart([w.clone() for w in init], masks)]


def _against_torch(mnist, ours, theirs, steps: int = 6) -> None:
    """Step our state and torch.optim side by side on the same gradients (our state's): every kernel
    of the dense member and every kept kernel weight of the masked one equal, bitwise, at every step;
    the masked member's pruned weights never move."""
    members = _masked_members()
    state = CohortState(FC, members, 0.05, "cpu", optimizer=ours)
    refs = [[torch.nn.Parameter(w.clone()) for w in m.weights] for m in members]
    opts = [theirs(r) for r in refs]
    for step in range(steps):
        x, y = mnist.train_x[step * 60:(step + 1) * 60], mnist.train_y[step * 60:(step + 1) * 60]
        state.compute_grads(x, y)
        for m, (ref, opt) in enumerate(zip(refs, opts)):
            for p, g in zip(ref, state.grad_weights):
                p.grad = g[m].clone()
            opt.step()
        state.mask_grads()
        state.update()
        for i, mask in enumerate(members[1].masks):
            assert torch.equal(state.weights[i][0], refs[0][i].detach())
            assert torch.equal(state.weights[i][1][mask], refs[1][i].detach()[mask])
            assert torch.equal(state.weights[i][1][~mask], members[1].weights[i][~mask])  # held, not decayed
            assert not torch.equal(state.weights[i][1][mask], members[1].weights[i][mask])


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_momentum_and_weight_decay_is_torch_sgd_on_kept_weights(mnist, nesterov):
    _against_torch(mnist, SGD(0.05, momentum=0.9, nesterov=nesterov, weight_decay=5e-3),
                   lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=5e-3))


def test_adam_with_weight_decay_is_torch_adam_on_kept_weights(mnist):
    _against_torch(mnist, TorchAdam(0.05, weight_decay=5e-3),
                   lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=5e-3))


def _settings(**kw) -> Recipe:
    return Recipe(**kw)


def test_schedules_are_torchs_closed_forms_and_the_constant_one_is_the_base_float():
    base, total = 0.1, 50
    ms = _settings(lr_schedule="multistep", milestones=(10, 30), gamma=0.5)
    cos = _settings(lr_schedule="cosine")
    for s in range(total):
        # torch's MultiStepLR / CosineAnnealingLR(T_max=total) after s scheduler steps
        assert learning_rate(base, s, total, ms) == pytest.approx(base * 0.5 ** ((s >= 10) + (s >= 30)), rel=1e-15)
        assert learning_rate(base, s, total, cos) == pytest.approx(base * (1 + math.cos(math.pi * s / total)) / 2,
                                                                   rel=1e-12)
        assert learning_rate(1.2e-3, s, total, _settings()) == 1.2e-3
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10, 30], gamma=0.5)
    for s in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(learning_rate(base, s, total, ms), rel=1e-12)
        opt.step()
        sched.step()
    # warmup multiplies any schedule by min(1, (s + 1) / warmup_steps): 1/4, 2/4, 3/4, then 1
    warm = _settings(warmup_steps=4)
    assert [learning_rate(0.8, s, 10, warm) for s in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8], rel=1e-15)
    warm_cos = _settings(lr_schedule="cosine", warmup_steps=4)
    assert learning_rate(0.8, 4, 10, warm_cos) == 0.8  # the cosine starts after warmup
    assert learning_rate(0.8, 7, 10, warm_cos) == pytest.approx(0.4)  # half way through the other 6 steps


def _three_members() -> list[MemberStart]:
    """Dense; mask-0 'zero' at 10% (trains sparse under TF1 Adam); 'freeze at init' at 50%."""
    init = init_weights(FC, generator(0, "init"))
    other = init_weights(FC, generator(1, "init"))
    g = torch.Generator().manual_seed(5)
    sparse = [torch.rand(w.shape, generator=g) < 0.1 for w in init]
    frozen = [torch.rand(w.shape, generator=g) < 0.5 for w in init]
    return [MemberStart(init), MemberStart([w * m for w, m in zip(init, sparse)], sparse),
            MemberStart([torch.where(m, w, w0) for w, w0, m in zip(other, init, frozen)], frozen)]


RECIPES = {
    "sgd, nesterov, decay, multistep": Recipe(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-3,
                                              lr_schedule="multistep", milestones=(5, 11), gamma=0.5),
    "adam, decay, cosine, warmup": Recipe(optimizer="adam", weight_decay=1e-3, lr_schedule="cosine", warmup_steps=5),
    "tf1_adam, cosine, warmup": Recipe(lr_schedule="cosine", warmup_steps=5),
    "sgd, constant": Recipe(optimizer="sgd"),
}


@pytest.fixture(scope="module")
def short_eval(mnist):
    """MNIST with 1,000 val and test images: these tests compare training, not accuracy."""
    return dataclasses.replace(mnist, val_x=mnist.val_x[:1000], val_y=mnist.val_y[:1000],
                               test_x=mnist.test_x[:1000], test_y=mnist.test_y[:1000])


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_member_alone_equals_itself_in_a_cohort_under_every_optimiser_and_schedule(short_eval, name):
    members = _three_members()
    lr = 0.05 if RECIPES[name].optimizer == "sgd" else 2e-3
    schedule = Schedule(iterations=16, learning_rate=lr, eval_every=8, recipe=RECIPES[name])
    together = train_cohort(FC, short_eval, members, schedule, seed=4)
    for m, member in enumerate(members):
        alone = train_cohort(FC, short_eval, [member], schedule, seed=4)[0]
        assert all(torch.equal(a, b) for a, b in zip(together[m].final_weights, alone.final_weights))
        assert all(torch.equal(a, b) for a, b in zip(together[m].final_biases, alone.final_biases))
        assert together[m].history == alone.history
        if member.masks is not None:
            for start, final, mask in zip(member.weights, together[m].final_weights, member.masks):
                assert torch.equal(final[~mask], start[~mask])
    assert OPTIMIZERS == ("tf1_adam", "adam", "sgd") and LR_SCHEDULES == ("constant", "multistep", "cosine")


def test_only_tf1_adam_trains_members_sparse():
    members = _three_members()
    assert CohortState(FC, members, 1e-3, "cpu").sparse is not None
    from ticketlab.training.optimizers import make_optimizer

    for recipe in (Recipe(optimizer="sgd"), Recipe(optimizer="adam")):
        assert CohortState(FC, members, 1e-3, "cpu", optimizer=make_optimizer(recipe, 1e-3)).sparse is None


def test_training_from_a_later_step_continues_the_schedules_batches_and_rates(short_eval):
    """With a stateless optimiser (SGD without momentum) a fresh state loses nothing, so training steps
    24..40 from the weights at step 23 must give the whole run's weights: the same batches (across
    an epoch boundary: 10 steps per epoch here) and the same learning rates (a multistep schedule)."""
    small = dataclasses.replace(short_eval, train_x=short_eval.train_x[:600], train_y=short_eval.train_y[:600])
    init = init_weights(FC, generator(0, "init"))
    recipe = Recipe(optimizer="sgd", lr_schedule="multistep", milestones=(30,), gamma=0.5)
    whole = Schedule(iterations=40, learning_rate=0.05, eval_every=10, recipe=recipe, snapshot_iterations=(23,))
    (run,) = train_cohort(FC, small, [MemberStart(init)], whole, seed=2)
    w23, b23, _ = run.snapshots["iteration_23"]
    late = dataclasses.replace(whole, start_iteration=23, snapshot_iterations=())
    (rest,) = train_cohort(FC, small, [MemberStart(w23, biases=b23)], late, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(rest.final_weights, run.final_weights))
    assert all(torch.equal(a, b) for a, b in zip(rest.final_biases, run.final_biases))
    assert rest.history["iteration"] == [23, 30, 40]
    # a schedule window that ends early stops there, with the whole schedule's rates up to it
    early = dataclasses.replace(whole, end_iteration=23, snapshot_iterations=())
    (cut,) = train_cohort(FC, small, [MemberStart(init)], early, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(cut.final_weights, w23)) and cut.history["iteration"][-1] == 23


def test_the_data_order_seed_changes_the_batches_not_the_init(tmp_path):
    from ticketlab.experiments.train import run_train
    from ticketlab.store.files import load_arrays

    def run(**kw):
        path = run_train(TrainConfig(iterations=20, eval_every=10, **kw), tmp_path, torch.device("cpu"))
        return load_arrays(path / "start.npz"), load_arrays(path / "final.npz"), path.name

    (s0, f0, n0), (s7, f7, n7), (s_same, f_same, n_same) = run(), run(data_order_seed=7), run(data_order_seed=0)
    assert all((s0[k] == s7[k]).all() for k in s0)  # one init
    assert not (f0["fc1.weight"] == f7["fc1.weight"]).all()  # other batches
    # the batch order derives from the data-order seed as it does from the run's seed: seed 0 is the default's
    assert all((f0[k] == f_same[k]).all() for k in f0)
    assert len({n0, n7, n_same}) == 3  # each its own run: the seed given is part of the name


@pytest.mark.parametrize("fields, message", [
    ({"optimizer": "adamw"}, r"--optimizer is 'adamw': choose one of tf1_adam, adam, sgd"),
    ({"optimizer": "sgd", "momentum": -0.5}, r"--momentum must be >= 0, got -0.5"),
    ({"momentum": 0.9}, r"--momentum is for optimizer sgd, not tf1_adam"),
    ({"weight_decay": 1e-4}, r"--weight-decay is for optimizer adam, sgd, not tf1_adam"),
    ({"optimizer": "sgd", "nesterov": True}, r"--nesterov needs a momentum above 0"),
    ({"lr_schedule": "multistep", "milestones": (300, 100)}, r"--milestones must be strictly increasing steps, got \[300, 100\]"),
    ({"lr_schedule": "multistep"}, r"--milestones must list at least one step"),
    ({"lr_schedule": "multistep", "milestones": (100, 1000)}, r"--milestones must lie within the schedule \(below its 1,000 steps\)"),
    ({"milestones": (100,)}, r"--milestones is for lr_schedule multistep, not constant"),
    ({"lr_schedule": "cosine", "warmup_steps": 1000}, r"--warmup-steps must be below the schedule's 1,000 steps"),
    ({"gamma": 0.0, "lr_schedule": "multistep", "milestones": (5,)}, r"--gamma must be > 0"),
    ({"lr_schedule": "linear"}, r"--lr-schedule is 'linear': choose one of constant, multistep, cosine"),
])
def test_bad_recipes_are_one_line_errors_naming_the_flag(fields, message):
    with pytest.raises(TicketlabError, match=message) as e:
        TrainConfig(iterations=1000, **fields).validate()
    assert "\n" not in str(e.value)


def test_recipe_flags_parse_and_defaults_keep_every_run_name():
    from ticketlab.cli import build_parser
    from ticketlab.core.fields import dataclass_from_namespace
    from ticketlab.store.naming import identity, run_name

    ns = build_parser().parse_args(["train", "--optimizer", "sgd", "--momentum", "0.9", "--lr-schedule", "multistep",
                                    "--milestones", "100", "200", "--learning-rate", "0.1"])
    config = dataclass_from_namespace(TrainConfig, ns)
    assert config.milestones == (100, 200) and config.recipe.optimizer == "sgd"
    config.validate()
    assert identity(config)["milestones"] == (100, 200) and identity(config)["optimizer"] == "sgd"
    defaults = TrainConfig(optimizer="tf1_adam", lr_schedule="constant", momentum=0.0, gamma=0.1, milestones=(),
                           warmup_steps=0, data_order_seed=None, weight_decay=0.0, nesterov=False)
    assert run_name("train", identity(defaults)) == run_name("train", identity(TrainConfig())) == "train_f0c283eb29dfba0b"
