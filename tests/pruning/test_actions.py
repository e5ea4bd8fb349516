"""Mask-1 and mask-0 actions of protocol §6 on hand-computed cases."""
import pytest
import torch

from ticketlab.pruning.actions import (
    MASK0_ACTIONS,
    MASK1_ACTIONS,
    check_mask0,
    check_mask1,
    mask1_start,
    start_weights,
)
from ticketlab.core.errors import TicketlabError

W0 = torch.tensor([0.5, -0.2, 0.3, -0.4, 0.1, 0.6], dtype=torch.float64)
C = 0.3593976442141304  # np.std(W0): mean 0.15, sum of squared deviations 0.775, / 6, sqrt
DENSE = torch.tensor([0.7, -0.1, -0.3, 0.2, -0.5, 0.4], dtype=torch.float64)
C_DENSE = 0.41096093353126506  # np.std(DENSE): mean 1/15, sqrt((1.04 - 6 / 225) / 6)
MASK = torch.tensor([True, False, True, True, False, True])  # 4 of 6 kept: rescaling x 1.5


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sorted(t: torch.Tensor) -> list[float]:
    return sorted(round(float(x), 12) for x in t)


def test_action_names():
    assert MASK1_ACTIONS[:7] == (
        "rewind", "reinit", "signed_reinit", "reshuffle", "signed_reshuffle", "constant", "signed_constant",
    )
    assert set(MASK1_ACTIONS[7:]) == {f"{a}_rescaled" for a in MASK1_ACTIONS[1:7]}
    assert MASK0_ACTIONS == (
        "zero", "freeze_init", "freeze_init_zero_mask", "freeze_init_zero_all", "freeze_init_zero_random",
    )


def test_unknown_actions_list_the_valid_names():
    with pytest.raises(TicketlabError, match="rewind.*signed_constant_rescaled"):
        check_mask1("rewinds")
    with pytest.raises(TicketlabError, match="zero.*freeze_init_zero_random"):
        check_mask0("freeze")
    with pytest.raises(TicketlabError):
        start_weights("rewind", "nope", W0, W0, W0, W0, MASK, _gen())


def test_rewind():
    assert torch.equal(mask1_start("rewind", W0, DENSE, MASK, _gen()), W0)


def test_reinit_permutes_the_whole_layer():
    outs = [mask1_start("reinit", W0, W0, MASK, _gen(s)) for s in range(5)]
    for out in outs:
        assert _sorted(out) == _sorted(W0)
    assert any(not torch.equal(o, W0) for o in outs)
    assert any(not torch.equal(o[MASK], outs[0][MASK]) for o in outs)


def test_reinit_draws_from_the_dense_init_not_the_holes():
    # The previous start holds zeros at pruned positions; reinit must not draw them in.
    holed = torch.where(MASK, DENSE, torch.zeros_like(DENSE))
    for s in range(10):
        out = mask1_start("reinit", holed, DENSE, MASK, _gen(s))
        assert _sorted(out) == _sorted(DENSE)


def test_signed_reinit():
    for s in range(5):
        out = mask1_start("signed_reinit", W0, W0, MASK, _gen(s))
        assert torch.equal(torch.sign(out), torch.sign(W0))
        assert _sorted(out.abs()) == _sorted(W0.abs())


def test_reshuffle_permutes_kept_values_only():
    outs = [mask1_start("reshuffle", W0, DENSE, MASK, _gen(s)) for s in range(8)]
    for out in outs:
        assert _sorted(out[MASK]) == [-0.4, 0.3, 0.5, 0.6]
    assert any(not torch.equal(o[MASK], W0[MASK]) for o in outs)


def test_signed_reshuffle():
    outs = [mask1_start("signed_reshuffle", W0, DENSE, MASK, _gen(s)) for s in range(8)]
    for out in outs:
        assert torch.equal(torch.sign(out[MASK]), torch.sign(W0[MASK]))
        assert _sorted(out[MASK].abs()) == [0.3, 0.4, 0.5, 0.6]
    assert any(not torch.equal(o[MASK], W0[MASK]) for o in outs)


def test_constant_has_random_signs_of_std_magnitude():
    outs = [mask1_start("constant", W0, W0, MASK, _gen(s)) for s in range(8)]
    for out in outs:
        torch.testing.assert_close(out.abs(), torch.full((6,), C, dtype=torch.float64))
        assert int((out > 0).sum()) == 4  # a permutation of sign(W0): four +, two -
    assert any(not torch.equal(torch.sign(o), torch.sign(W0)) for o in outs)


def test_signed_constant():
    out = mask1_start("signed_constant", W0, W0, MASK, _gen())
    torch.testing.assert_close(out, C * torch.tensor([1.0, -1, 1, -1, 1, 1], dtype=torch.float64))


def test_rescaled_forms_start_from_the_dense_init_times_size_over_sum():
    out = mask1_start("signed_constant_rescaled", W0, DENSE, MASK, _gen())
    torch.testing.assert_close(out, 1.5 * C_DENSE * torch.sign(DENSE))
    out = mask1_start("reshuffle_rescaled", W0, DENSE, MASK, _gen())
    assert _sorted(out[MASK]) == _sorted(1.5 * DENSE[MASK])  # 1.5 * {0.7, -0.3, 0.2, 0.4}
    out = mask1_start("reinit_rescaled", W0, DENSE, MASK, _gen())
    assert _sorted(out) == _sorted(1.5 * DENSE)
    out = mask1_start("signed_reinit_rescaled", W0, DENSE, MASK, _gen())
    assert torch.equal(torch.sign(out), torch.sign(DENSE))
    assert _sorted(out.abs()) == _sorted(1.5 * DENSE.abs())
    out = mask1_start("signed_reshuffle_rescaled", W0, DENSE, MASK, _gen())
    assert torch.equal(torch.sign(out[MASK]), torch.sign(DENSE[MASK]))
    out = mask1_start("constant_rescaled", W0, DENSE, MASK, _gen())
    torch.testing.assert_close(out.abs(), torch.full((6,), 1.5 * C_DENSE, dtype=torch.float64))
    with pytest.raises(ValueError):
        mask1_start("reinit_rescaled", W0, DENSE, torch.zeros(6, dtype=torch.bool), _gen())


# ---- mask-0 actions: previous run started at W_I and ended at W_F ----------------------------
W_I = torch.tensor([0.5, -0.2, 0.3, -0.4, 0.1, 0.6])
W_F = torch.tensor([0.2, -0.5, 0.35, -0.1, 0.1, 0.7])
# moved toward zero (|w_f| < |w_i|, strict): [yes, no, no, yes, no (equal), no]
M = torch.tensor([False, False, True, True, False, True])  # pruned: 0, 1, 4


def _start(mask0: str, seed: int = 0, w_i=W_I, w_f=W_F) -> list[float]:
    out = start_weights("rewind", mask0, w_i, w_i, w_f, w_i, M, _gen(seed))
    return [round(float(x), 6) for x in out]


def test_mask0_hand_cases():
    assert _start("zero") == [0.0, 0.0, 0.3, -0.4, 0.0, 0.6]
    assert _start("freeze_init") == [0.5, -0.2, 0.3, -0.4, 0.1, 0.6]
    assert _start("freeze_init_zero_mask") == [0.0, -0.2, 0.3, -0.4, 0.1, 0.6]  # Variant 1
    assert _start("freeze_init_zero_all") == [0.0, -0.2, 0.3, 0.0, 0.1, 0.6]  # Variant 2: kept 3 shrank


def test_random_control_zeroes_as_many_as_variant1():
    chosen = set()
    for s in range(30):
        out = _start("freeze_init_zero_random", seed=s)
        assert out[2:4] + out[5:] == [0.3, -0.4, 0.6]  # kept untouched
        zeros = [i for i in (0, 1, 4) if out[i] == 0.0]
        assert len(zeros) == 1  # Variant 1 zeroes one pruned weight
        assert all(out[i] == round(float(W_I[i]), 6) for i in (0, 1, 4) if i not in zeros)
        chosen.update(zeros)
    assert chosen == {0, 1, 4}  # any pruned weight may be the one


def test_random_control_skips_weights_already_held_at_zero():
    # Weight 0 was zeroed in an earlier round (held at 0, so w_f = w_i = 0); weight 1 shrank now.
    w_i = torch.tensor([0.0, -0.2, 0.3, -0.4, 0.5, 0.6])
    w_f = torch.tensor([0.0, -0.1, 0.35, -0.5, 0.7, 0.7])
    for s in range(20):
        out = _start("freeze_init_zero_random", seed=s, w_i=w_i, w_f=w_f)
        assert [out[i] for i in (0, 1, 4)].count(0.0) == 2


def test_start_weights_mixes_kept_and_held():
    # reshuffle on kept positions, Variant 2 on top: kept weight 3 shrank, so it starts at 0.
    out = start_weights("reshuffle", "freeze_init_zero_all", W_I, W_I, W_F, W_I, M, _gen(4))
    expect_kept = mask1_start("reshuffle", W_I, W_I, M, _gen(4))
    assert float(out[3]) == 0.0
    assert torch.equal(out[[2, 5]], expect_kept[[2, 5]])
    assert [round(float(x), 6) for x in out[[0, 1, 4]]] == [0.0, -0.2, 0.1]
    # seeded: same generator seed, same tensor
    again = start_weights("reshuffle", "freeze_init_zero_all", W_I, W_I, W_F, W_I, M, _gen(4))
    assert torch.equal(out, again)


# ---- the mask-1 table -------------------------------------------------------------------------


def test_the_table_gives_every_action_its_label_and_colour_and_the_figures_read_it():
    from ticketlab.analysis.style import curve_style, mask1_label, sort_key
    from ticketlab.pruning.actions import MASK1_TABLE

    plain = [a for a in MASK1_TABLE if not a.rescaled]
    assert len({a.color for a in plain}) == len(plain)  # one hue per plain action
    for a in MASK1_TABLE:
        drawn = curve_style("mask1", a.name)
        assert drawn["color"] == a.color and drawn["label"] == mask1_label(a.name) == a.label
        assert drawn["linestyle"] == ("--" if a.rescaled else "-")
    for a in MASK1_TABLE:
        if a.rescaled:  # a rescaled form is its action's hue, and says so
            base = next(b for b in plain if f"{b.name}_rescaled" == a.name)
            assert a.color == base.color and a.label == f"{base.label} (rescaled)"
    assert sorted(reversed(MASK1_ACTIONS), key=lambda n: sort_key("mask1", n)) == list(MASK1_ACTIONS)


def test_round_start_reads_the_previous_run_from_the_context():
    from ticketlab.pruning.actions import Mask1Context, round_start

    out = round_start("rewind", "freeze_init_zero_all", Mask1Context(W_I, W_I * 3, W_F, M, _gen()))
    assert torch.equal(out, start_weights("rewind", "freeze_init_zero_all", W_I, W_I, W_F, W_I * 3, M, _gen()))
    assert [round(float(x), 6) for x in out] == [0.0, -0.2, 0.3, 0.0, 0.1, 0.6]


def test_a_registered_action_is_a_valid_sweep_field_and_starts_as_its_entry_says(tmp_path):
    from ticketlab.experiments.spec import load_sweep
    from ticketlab.pruning.actions import (Mask1Action, Mask1Context, kept_start, register_mask1_action,
                                           unregister_mask1_action)

    path = tmp_path / "half.toml"
    path.write_text('name = "half"\nkind = "iterative"\nmask1 = ["halved"]\n')
    with pytest.raises(TicketlabError, match="unknown mask1 'halved'"):
        load_sweep(str(path), "full")
    register_mask1_action(Mask1Action("halved", lambda c: c.w0 * 0.5, "half the start", "#000000"))
    try:
        assert load_sweep(str(path), "full").params.mask1 == ("halved",)
        out = kept_start("halved", Mask1Context(W0, DENSE, W0, MASK, _gen()))
        assert torch.equal(out, W0 * 0.5)
        with pytest.raises(ValueError, match="twice"):
            register_mask1_action(Mask1Action("halved", lambda c: c.w0, "again", "#000000"))
    finally:
        unregister_mask1_action("halved")
    with pytest.raises(ValueError, match="stay"):
        unregister_mask1_action("rewind")


def test_rewind_rewinds_its_chain_to_the_step_it_was_given():
    from ticketlab.pruning.actions import Mask1Context, kept_start, mask1_action

    # w0 is the chain's rewind point (the dense run's weights at k, as earlier rounds left them)
    w_k = torch.tensor([0.45, -0.25, 0.3, 0.0, 0.15, 0.55], dtype=torch.float64)
    assert torch.equal(kept_start("rewind", Mask1Context(w_k, DENSE, W0, MASK, _gen())), w_k)
    assert mask1_action("rewind").rewinds  # so a sweep may set rewind_iteration for it, and its rounds train from k
    assert not any(mask1_action(a).rewinds for a in MASK1_ACTIONS if a != "rewind")
