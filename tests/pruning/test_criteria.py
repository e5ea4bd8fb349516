"""The 13 mask criteria of protocol §5, pinned on hand-computed scores."""
import pytest
import torch

from ticketlab.pruning.criteria import CRITERIA, check_criterion, is_percentile_rule, score
from ticketlab.core.errors import TicketlabError
from ticketlab.pruning.prune import prune_lowest

# sign(w_i) = [+, -, 0, +, -], sign(w_f) = [+, +, +, +, -]: same sign at 0, 3, 4.
W_I = torch.tensor([0.5, -0.2, 0.0, 0.3, -0.4], dtype=torch.float64)
W_F = torch.tensor([0.1, 0.3, 0.2, 0.6, -0.1], dtype=torch.float64)

EXPECTED = {
    "large_final": [0.1, 0.3, 0.2, 0.6, 0.1],
    "small_final": [-0.1, -0.3, -0.2, -0.6, -0.1],
    "large_init": [0.5, 0.2, 0.0, 0.3, 0.4],
    "small_init": [-0.5, -0.2, -0.0, -0.3, -0.4],
    "magnitude_increase": [-0.4, 0.1, 0.2, 0.3, -0.3],
    "movement": [0.4, 0.5, 0.2, 0.3, 0.3],
    "large_final_same_sign": [0.1, 0.0, 0.0, 0.6, 0.1],
    "large_final_diff_sign": [0.0, 0.3, 0.2, 0.0, 0.0],
    "magnitude_increase_same_sign": [-0.4, 0.0, 0.0, 0.3, -0.3],
    "magnitude_increase_diff_sign": [0.0, 0.1, 0.2, 0.0, 0.0],
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_thirteen_names_in_spec_order():
    assert CRITERIA == (
        "large_final", "small_final", "large_init", "small_init", "magnitude_increase", "movement",
        "random", "large_final_same_sign", "large_final_diff_sign", "magnitude_increase_same_sign",
        "magnitude_increase_diff_sign", "large_init_large_final", "small_init_small_final",
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_score_hand_computed(name):
    got = score(name, W_I, W_F, _gen())
    torch.testing.assert_close(got, torch.tensor(EXPECTED[name], dtype=torch.float64))


def test_sign_of_zero_is_zero():
    # (0, 0): same sign; (0, 0.5): changed (0 vs +); (-0.3, 0): changed (- vs 0).
    w_i = torch.tensor([0.0, 0.0, -0.3])
    w_f = torch.tensor([0.0, 0.5, 0.0])
    torch.testing.assert_close(score("large_final_diff_sign", w_i, w_f, _gen()), torch.tensor([0.0, 0.5, 0.0]))
    torch.testing.assert_close(score("large_final_same_sign", w_i, w_f, _gen()), torch.tensor([0.0, 0.0, 0.0]))
    torch.testing.assert_close(score("magnitude_increase_diff_sign", w_i, w_f, _gen()), torch.tensor([0.0, 0.5, -0.3]))
    torch.testing.assert_close(score("magnitude_increase_same_sign", w_i, w_f, _gen()), torch.tensor([0.0, 0.0, 0.0]))


def test_same_sign_shrinkers_go_before_sign_flips():
    # magnitude_increase_same_sign scores [-0.4, 0, 0, 0.3, -0.3]: the two same-sign weights that
    # shrank score below the sign-flipped ones (score 0, not -inf) and are pruned first.
    s = score("magnitude_increase_same_sign", W_I, W_F, _gen())
    mask = prune_lowest(s, torch.ones(5, dtype=torch.bool), 2, _gen())
    assert mask.tolist() == [False, True, True, True, False]
    # The diff-sign variant scores every same-sign weight 0, below the two sign flips (0.1, 0.2),
    # so pruning 3 keeps exactly the flips.
    s = score("magnitude_increase_diff_sign", W_I, W_F, _gen())
    mask = prune_lowest(s, torch.ones(5, dtype=torch.bool), 3, _gen())
    assert mask.tolist() == [False, True, True, False, False]


def test_random_is_uniform_and_seeded():
    w = torch.zeros(2000)
    a = score("random", w, w, _gen(3))
    b = score("random", w, w, _gen(3))
    c = score("random", w, w, _gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == w.shape and 0.0 <= float(a.min()) and float(a.max()) < 1.0
    assert abs(float(a.mean()) - 0.5) < 0.03
    assert a.unique().numel() == a.numel()


def test_percentile_rules_are_not_scores():
    assert is_percentile_rule("large_init_large_final") and is_percentile_rule("small_init_small_final")
    assert not any(is_percentile_rule(c) for c in CRITERIA[:11])
    with pytest.raises(ValueError, match="percentile"):
        score("large_init_large_final", W_I, W_F, _gen())


def test_unknown_criterion_lists_valid_names():
    with pytest.raises(TicketlabError, match="large_final.*small_init_small_final") as e:
        check_criterion("largest_final")
    assert "\n" not in str(e.value)
    with pytest.raises(TicketlabError):
        score("largest_final", W_I, W_F, _gen())
    with pytest.raises(TicketlabError):
        is_percentile_rule("nope")


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        score("movement", torch.zeros(3), torch.zeros(4), _gen())
