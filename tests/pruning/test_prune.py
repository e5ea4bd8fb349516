"""The count rule, the per-layer prune step, the percentile rule and the schedules (protocol §4, §5, §7)."""
import pytest
import torch

from ticketlab.core.errors import TicketlabError
from ticketlab.pruning.prune import (
    oneshot_prune_count,
    oneshot_schedule,
    percentile_rule_prune,
    prune_count,
    prune_layer,
    prune_lowest,
    prune_oneshot,
    pruning_schedule,
)

ALL5 = torch.ones(5, dtype=torch.bool)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- the count rule ---------------------------------------------------------------------------


def test_prune_count_is_the_float64_rule():
    assert prune_count(235200, 0.8) == 47039  # keeps 188,161, not 188,160
    assert prune_count(1000, 0.8) == 199  # 1000 * 19.999999999999996 / 100 = 199.99999999999997
    assert prune_count(10, 0.9) == 0  # (1 - 0.9) * 100 = 9.999999999999998
    assert prune_count(1000, 0.9) == 99
    assert prune_count(0, 0.8) == 0


def test_oneshot_prune_count():
    assert oneshot_prune_count(235200, 0.8, 1) == 47039
    assert oneshot_prune_count(1000, 0.8, 0) == 0
    assert oneshot_prune_count(1000, 0.8, 3) == 487  # (1 - 0.512) * 100 = 48.79999999999999


FC_TABLE = {  # Protocol §4: round -> (fc1, fc2, fc3, total)
    0: (235200, 30000, 1000, 266200),
    1: (188161, 24001, 901, 213063),
    2: (150529, 19201, 811, 170541),
    3: (120424, 15361, 730, 136515),
    4: (96340, 12289, 658, 109287),
    8: (39463, 5035, 433, 44931),
    12: (16165, 2065, 286, 18516),
    16: (6623, 848, 190, 7661),
    20: (2715, 349, 127, 3191),
    24: (1114, 145, 85, 1344),
}


def test_fc_schedule_matches_spec_table():
    schedule = pruning_schedule("fc", 24)
    assert len(schedule) == 25
    for r, (*layers, total) in FC_TABLE.items():
        assert schedule[r] == layers, r
        assert sum(schedule[r]) == total, r


@pytest.mark.parametrize("net,total", [("conv2", 23420), ("conv4", 31170), ("conv6", 28652)])
def test_conv_round24_totals(net, total):
    assert sum(pruning_schedule(net, 24)[24]) == total


def test_fc_axis_percentages():
    totals = [sum(r) for r in pruning_schedule("fc", 24)]
    pct = [round(100 * t / 266200, 2) for t in totals]
    assert pct[:5] == [100.0, 80.04, 64.06, 51.28, 41.05]
    assert pct[20] == 1.2 and pct[24] == 0.5


def test_oneshot_schedule():
    s = oneshot_schedule("fc", range(0, 25))
    assert s[0] == [235200, 30000, 1000]
    assert sum(s[3]) == 136514  # iterative round 3 keeps 136,515
    assert s[1] == pruning_schedule("fc", 1)[1]


def test_schedule_errors():
    with pytest.raises(TicketlabError, match="conv2"):
        pruning_schedule("resnet", 3)
    with pytest.raises(TicketlabError):
        pruning_schedule("fc", -1)


# ---- prune_lowest ---------------------------------------------------------------------------


def test_prune_lowest_hand_case():
    scores = torch.tensor([3.0, 1.0, 2.0, 0.0, 5.0])
    assert prune_lowest(scores, ALL5, 2, _gen()).tolist() == [True, False, True, False, True]
    # Position 3 (lowest score) is already pruned: it is not a candidate, so two MORE go.
    mask = torch.tensor([True, True, True, False, True])
    out = prune_lowest(scores, mask, 2, _gen())
    assert out.tolist() == [True, False, False, False, True]
    assert mask.tolist() == [True, True, True, False, True]  # input untouched


def test_pruned_weights_are_never_revived():
    # The highest-scored weight was pruned earlier: it stays pruned whatever n is.
    scores = torch.tensor([9.0, 1.0, 2.0, 3.0])
    mask = torch.tensor([False, True, True, True])
    assert prune_lowest(scores, mask, 0, _gen()).tolist() == [False, True, True, True]
    assert prune_lowest(scores, mask, 1, _gen()).tolist() == [False, False, True, True]
    assert prune_lowest(scores, mask, 3, _gen()).tolist() == [False, False, False, False]


def test_prune_lowest_keeps_shape():
    scores = torch.arange(12.0).reshape(3, 4)
    out = prune_lowest(scores, torch.ones(3, 4, dtype=torch.bool), 5, _gen())
    assert out.shape == (3, 4) and out.dtype == torch.bool
    assert out.reshape(-1).tolist() == [False] * 5 + [True] * 7


def test_prune_lowest_refuses_impossible_counts():
    with pytest.raises(ValueError):
        prune_lowest(torch.zeros(4), torch.tensor([True, True, False, False]), 3, _gen())


def test_ties_broken_by_the_seed():
    w = torch.full((1000,), 0.25)
    full = torch.ones(1000, dtype=torch.bool)
    a = prune_layer("large_final", w, w, full, 0.8, seed=1)
    b = prune_layer("large_final", w, w, full, 0.8, seed=1)
    c = prune_layer("large_final", w, w, full, 0.8, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert int(a.sum()) == int(c.sum()) == 801  # exactly prune_count(1000, 0.8) = 199 pruned
    # Ties are broken uniformly: the pruned set is not clumped at one end.
    pruned = torch.nonzero(~a).squeeze(1).float()
    assert 350 < float(pruned.mean()) < 650


def test_prune_layer_large_final_keeps_the_largest():
    w_f = torch.tensor([[0.3, -0.9, 0.05], [-0.2, 0.6, -0.01]])
    w_i = torch.zeros_like(w_f)
    # keep 0.5: pct = 50, n = int(6 * 50 / 100) = 3
    mask = prune_layer("large_final", w_i, w_f, torch.ones(2, 3, dtype=torch.bool), 0.5, seed=0)
    assert mask.tolist() == [[True, True, False], [False, True, False]]


def test_iterative_rounds_never_revive():
    g = _gen(5)
    w_i, w_f = torch.randn(40, 25, generator=g), torch.randn(40, 25, generator=g)
    mask = torch.ones(40, 25, dtype=torch.bool)
    for criterion in ("large_final", "random", "magnitude_increase_same_sign", "large_init_large_final"):
        m = mask
        for r in range(4):
            new = prune_layer(criterion, w_i, w_f, m, 0.8, seed=r)
            assert not bool((new & ~m).any()), criterion
            if criterion != "large_init_large_final":
                assert int(new.sum()) == int(m.sum()) - prune_count(int(m.sum()), 0.8)
            m = new


def test_random_criterion_is_seeded():
    w = torch.randn(500, generator=_gen(1))
    full = torch.ones(500, dtype=torch.bool)
    a = prune_layer("random", w, w, full, 0.8, seed=7)
    assert torch.equal(a, prune_layer("random", w, w, full, 0.8, seed=7))
    assert not torch.equal(a, prune_layer("random", w, w, full, 0.8, seed=8))
    assert int(a.sum()) == 500 - prune_count(500, 0.8)


def test_prune_layer_unknown_criterion():
    with pytest.raises(TicketlabError, match="large_final"):
        prune_layer("biggest", torch.zeros(3), torch.zeros(3), torch.ones(3, dtype=torch.bool), 0.8, 0)


def test_prune_oneshot_count_and_choice():
    w_f = torch.linspace(-1, 1, 1000)
    mask = prune_oneshot("large_final", torch.zeros(1000), w_f, 0.8, 3, seed=0)
    assert int((~mask).sum()) == 487
    assert float(w_f[~mask].abs().max()) <= float(w_f[mask].abs().min())
    assert prune_oneshot("large_final", torch.zeros(1000), w_f, 0.8, 0, seed=0).all()


# ---- the equal-percentile rule ----------------------------------------------------------------


def test_percentile_rule_correlated_case():
    # |w_i| and |w_f| rank the weights the same way: the rule is plain magnitude pruning.
    w_i = torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5, -0.6])
    w_f = torch.tensor([-0.15, 0.25, 0.35, -0.45, 0.55, 0.65])
    full = torch.ones(6, dtype=torch.bool)
    assert percentile_rule_prune(w_i, w_f, full, 2, small=False).tolist() == [False, False, True, True, True, True]
    assert percentile_rule_prune(w_i, w_f, full, 2, small=True).tolist() == [True, True, True, True, False, False]
    assert percentile_rule_prune(w_i, w_f, full, 0, small=False).all()
    # Weight 5 was pruned before: percentiles are over the 5 remaining, and it stays pruned.
    mask = torch.tensor([True, True, True, True, True, False])
    assert percentile_rule_prune(w_i, w_f, mask, 2, small=False).tolist() == [False, False, True, True, True, False]


def test_percentile_rule_needs_both_rankings():
    # a_i = [1, 2, 3, 4], a_f = [4, 3, 2, 1]: at any t with 0 < 3t/100 < 1 the threshold lies in (1, 2)
    # for both, dropping weight 0 (small init) and weight 3 (small final) at once.
    w_i = torch.tensor([1.0, 2.0, 3.0, 4.0])
    w_f = torch.tensor([4.0, -3.0, 2.0, -1.0])
    full = torch.ones(4, dtype=torch.bool)
    assert percentile_rule_prune(w_i, w_f, full, 2, small=False).tolist() == [False, True, True, False]
    # 1 cannot be hit (the count jumps 0 -> 2); of the two equally close counts the larger is taken.
    assert percentile_rule_prune(w_i, w_f, full, 1, small=False).tolist() == [False, True, True, False]


def test_percentile_rule_count_close_to_target():
    g = _gen(11)
    w_i, w_f = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    full = torch.ones(1000, dtype=torch.bool)
    for small in (False, True):
        n = prune_count(1000, 0.8)
        m1 = percentile_rule_prune(w_i, w_f, full, n, small=small)
        assert abs(int((~m1).sum()) - n) <= 3
        n2 = prune_count(int(m1.sum()), 0.8)
        m2 = percentile_rule_prune(w_i, w_f, m1, n2, small=small)
        assert not bool((m2 & ~m1).any())
        assert abs(int(m1.sum()) - int(m2.sum()) - n2) <= 3
    # Kept weights really are large in both: none of them is among the 10% smallest |w_f|.
    m = percentile_rule_prune(w_i, w_f, full, 500, small=False)
    assert float(w_f[m].abs().min()) > float(w_f.abs().quantile(0.1))
    assert float(w_i[m].abs().min()) > float(w_i.abs().quantile(0.1))


# ---- global pruning ---------------------------------------------------------------------------


def _tied_layers(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Three layers of integer scores 1..12 (hundreds of ties), some weights already pruned."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(30, 20), (20, 10), (10, 5)]
    scores = [torch.randint(1, 13, s, generator=g).float() * torch.where(torch.rand(s, generator=g) < 0.5, 1.0, -1.0)
              for s in shapes]
    masks = [torch.rand(s, generator=g) < 0.85 for s in shapes]
    return scores, masks


def test_global_pruning_keeps_the_top_of_one_ranking_over_every_layer():
    from ticketlab.pruning.prune import prune_global

    for seed in range(4):
        scores, masks = _tied_layers(seed)
        # an independent implementation: sort every kept |score| of the net and keep the top; with n
        # the count below a score value, the cut falls between two distinct values
        kept = torch.cat([s.abs()[m] for s, m in zip(scores, masks)])
        for t in (3.0, 7.0, 11.0):
            n = int((kept < t).sum())
            threshold = torch.sort(kept).values[n]  # the smallest kept score
            expected = [int((s.abs()[m] >= threshold).sum()) for s, m in zip(scores, masks)]
            new = prune_global("large_final", scores, scores, masks, n, seed=9)
            assert [int(m.sum()) for m in new] == expected
            assert all(not (nm & ~m).any() for nm, m in zip(new, masks))  # never revives a pruned weight


def test_global_pruning_breaks_ties_at_the_cut_at_random_and_seeded():
    from ticketlab.pruning.prune import prune_global

    scores, masks = _tied_layers(1)
    kept = torch.cat([s.abs()[m] for s, m in zip(scores, masks)])
    n = int((kept < 6).sum()) + 7  # seven of the tied 6s go: which, the seed decides
    draws = {tuple(int(m.sum()) for m in prune_global("large_final", scores, scores, masks, n, seed=s)) for s in range(12)}
    for counts in draws:
        assert sum(counts) == int(kept.numel()) - n
        for c, s, m in zip(counts, scores, masks):
            assert int((s.abs()[m] > 6).sum()) <= c <= int((s.abs()[m] >= 6).sum())
    assert len(draws) > 1  # the tied weights pruned differ with the seed
    again = prune_global("large_final", scores, scores, masks, n, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(again, prune_global("large_final", scores, scores, masks, n, seed=3)))


def test_global_prune_count_is_openlths_ceiling_of_the_written_rate():
    from ticketlab.pruning.prune import global_prune_count

    assert global_prune_count(266200, 0.2) == 53240  # exactly a fifth
    assert global_prune_count(7, 0.2) == 2  # ceil(1.4)
    assert global_prune_count(100, 0.55) == 55  # 0.55 * 100 is 55.00000000000001 in floats, whose ceiling is 56
    assert global_prune_count(0, 0.2) == 0
