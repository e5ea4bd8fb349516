"""The papers' claims, checked with seed-level statistics on synthetic results."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from synthetic import synthetic_results, toy_iterative
from ticketlab.analysis import claims as claims_module
from ticketlab.analysis.claims import check_claims, paired_ci, t_quantile_975
from ticketlab.pruning.criteria import straddle_pairs


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return synthetic_results()


def test_t_interval_by_hand():
    mean, lo, hi, n = paired_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert lo == pytest.approx(2 - 4.303 / math.sqrt(3)) and hi == pytest.approx(2 + 4.303 / math.sqrt(3))
    assert paired_ci([5.0])[:1] == (5.0,) and math.isnan(paired_ci([5.0])[1])
    assert t_quantile_975(30) == 2.042
    assert t_quantile_975(40) == pytest.approx(2.021, abs=1e-3)
    assert t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)


def _claims(results) -> dict[str, object]:
    return {c.name: c for c in check_claims(results)}


def test_claims_hold_on_synthetic_data(results):
    claims = _claims(results)
    for name in ("large_final/small_final straddle random [FC]", "large_init/small_init straddle random [FC]",
                 "large_final_same_sign/large_final_diff_sign straddle random [FC]",
                 "large_final beats random [FC]", "rewind beats reinit [FC]",
                 "large_final_same_sign beats large_final at init [FC]",
                 "better-trained bases give better supermasks [FC]"):
        assert claims[name].holds is True, (name, claims[name].evidence)
        assert claims[name].n == 3


def test_reversed_pair_does_not_hold(results):
    swap = {"large_final": "small_final", "small_final": "large_final"}
    flipped = results.assign(criterion=results["criterion"].map(lambda c: swap.get(c, c)))
    claim = _claims(flipped)["large_final/small_final straddle random [FC]"]
    assert claim.holds is False
    assert claim.ci_high < 0
    assert _claims(flipped)["large_final beats random [FC]"].holds is False


def test_one_seed_is_insufficient(results):
    claim = _claims(results[results["seed"] == 0])["large_final/small_final straddle random [FC]"]
    assert claim.holds is None and claim.n == 1
    assert not math.isnan(claim.mean_diff) and math.isnan(claim.ci_low)
    assert "n=1: no interval" in claim.evidence


def test_straddle_difference_matches_hand_computation(results):
    crit = results[(results["experiment"] == "criteria")]
    piv = crit.pivot_table(index=["seed", "round"], columns="criterion", values="test_accuracy_at_early_stop")
    moderate = sorted(crit.loc[(crit["remaining_percent"] <= 50) & (crit["round"] > 0), "round"].unique())
    sel = piv[piv.index.get_level_values("round").isin(moderate)]
    up = ((sel["large_final"] - sel["random"]) * 100).groupby(level="seed").mean()
    mean, lo, _, _ = paired_ci(list(up))
    claim = _claims(results)["large_final/small_final straddle random [FC]"]
    assert f"{mean:+.2f} pp, 95% CI [{lo:+.2f}" in claim.evidence


def test_straddle_pairs_come_from_the_criteria_table(results, monkeypatch):
    names = {c.name for c in check_claims(results)}
    assert {f"{a}/{b} straddle random [FC]" for a, b in straddle_pairs()} <= names
    monkeypatch.setattr(claims_module, "straddle_pairs", lambda: (("large_init", "small_init"),))
    straddles = [c.name for c in check_claims(results) if "straddle" in c.name]
    assert straddles == ["large_init/small_init straddle random [FC]"]


def test_claims_read_the_presets_only():
    # a user's own iterative sweep is reported, but the papers' claims are about the papers' protocol
    assert check_claims(toy_iterative("my-exp")) == []
    renamed = synthetic_results(seeds=(0, 1), experiments=("criteria",)).assign(experiment="my-criteria")
    assert check_claims(renamed) == []
    assert check_claims(renamed, kinds={"my-criteria": "iterative"}) == []


def test_large_final_tickets_are_more_stable_than_random_masks_paired_by_seed_density_and_k():
    from synthetic import stability_results

    (claim,) = check_claims(stability_results())
    assert claim.name == "large_final tickets are more stable than random masks [FC]" and claim.holds is True
    # random's barrier is 1 pp + 0.1 pp x seed above the ticket's at every (density, k): per seed 1.0, 1.1, 1.2
    assert claim.mean_diff == pytest.approx(1.1) and claim.n == 3
    assert claim.ci_low == pytest.approx(1.1 - 4.303 * 0.1 / math.sqrt(3))
    (reversed_,) = check_claims(stability_results(random_gap=-0.01))
    assert reversed_.holds is False and reversed_.mean_diff < 0
    (one_seed,) = check_claims(stability_results(seeds=(0,)))
    assert one_seed.holds is None
    # a table of the dense start alone, or a user's own sweep, claims nothing
    assert check_claims(stability_results(experiment="stability-dense")) == []
    assert check_claims(stability_results(experiment="mine"), {"mine": "stability"}) == []
