"""Row selection and seed statistics: experiments by kind, curve keys, seed means, the summary tables."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from synthetic import synthetic_results, toy_iterative, toy_supermask
from ticketlab.analysis.stats import (
    curve_keys,
    experiment_rows,
    experiments,
    nearest_level,
    published_comparison,
    seed_stats,
    summary_tables,
)
from ticketlab.core.errors import TicketlabError
from ticketlab.experiments.kinds import get_kind
from ticketlab.experiments.spec import preset_kinds


@pytest.fixture(scope="module")
def mixed() -> pd.DataFrame:
    """Two presets and two experiments of a user's own, one per kind."""
    presets = synthetic_results(seeds=(0, 1), experiments=("criteria", "supermask-at-init"))
    return pd.concat([toy_supermask(), presets, toy_iterative()], ignore_index=True)


def test_kinds_come_from_the_presets_else_from_the_rows(mixed):
    found = experiments(mixed)
    assert list(found) == ["criteria", "supermask-at-init", "my-exp", "my-sm"]  # presets first, in the papers' order
    assert {n: e.kind for n, e in found.items()} == {
        "criteria": preset_kinds()["criteria"], "supermask-at-init": "supermask", "my-exp": "iterative",
        "my-sm": "supermask"}
    assert found["my-sm"].curves == get_kind("supermask").curves
    assert found["my-exp"].curves == get_kind("iterative").curves
    assert found["criteria"].preset and not found["my-exp"].preset


def test_a_kinds_mapping_wins(mixed):
    found = experiments(mixed, {"my-sm": "supermask", "criteria": "supermask"})
    assert found["criteria"].kind == "supermask" and not found["criteria"].preset  # not the preset any more
    with pytest.raises(TicketlabError, match="unknown experiment kind 'nope'"):
        experiments(mixed, {"my-exp": "nope"})


def test_no_experiment_column_means_no_experiments():
    assert experiments(pd.DataFrame({"net": ["fc"]})) == {}
    assert experiments(synthetic_results().iloc[0:0]) == {}


def test_curve_keys_follow_the_kind(mixed):
    found = experiments(mixed)
    sm = experiment_rows(mixed, found["my-sm"])
    assert curve_keys(sm, found["my-sm"]) == ["base", "start", "dwr", "criterion"]
    it = experiment_rows(mixed, found["my-exp"])
    assert curve_keys(it, found["my-exp"]) == ["criterion"]
    # two varying keys: the first names the curve, the other tells curves apart
    it2 = it.assign(mask1=[("rewind", "reinit")[i % 2] for i in range(len(it))])
    assert curve_keys(it2, found["my-exp"]) == ["mask1", "criterion"]


def test_supermask_columns_read_after_a_csv_round_trip(tmp_path):
    rows = toy_supermask()
    path = tmp_path / "r.csv"
    rows.assign(dwr=rows["dwr"].map(str)).drop(columns=["base"]).to_csv(path, index=False)
    back = pd.read_csv(path)
    found = experiments(back)
    assert found["my-sm"].kind == "supermask"
    read = experiment_rows(back, found["my-sm"])
    assert set(read["base"]) == {"converged"} and read["dwr"].map(type).eq(bool).all()
    assert set(zip(read["start"], read["dwr"])) == {("init", False), ("signed_constant", True)}


def test_each_seed_counts_once():
    rows = pd.DataFrame({"seed": [0, 0, 1], "round": 1, "remaining_percent": 80.0, "v": [0.5, 0.7, 0.9]})
    stats = seed_stats(rows, "v")
    assert stats["mean"].iloc[0] == pytest.approx(75.0)  # seed 0 averages to 60%, seed 1 is 90%
    assert stats["n"].iloc[0] == 2


def test_nearest_level_within_a_factor():
    stats = pd.DataFrame({"remaining_percent": [100.0, 41.0, 10.7]})
    assert nearest_level(stats, 41.0)["remaining_percent"] == 41.0
    assert nearest_level(stats, 7.0) is None  # 10.7 is more than 1.5x away


def test_a_users_experiment_gets_a_summary_table(mixed):
    tables = summary_tables(mixed)
    assert list(tables) == ["criteria", "supermask-at-init", "my-exp", "my-sm"]
    mine = tables["my-exp"].set_index("criterion")
    assert list(mine.index) == ["large_final", "small_final", "random"]  # the paper's order
    rows = mixed[(mixed["experiment"] == "my-exp") & (mixed["criterion"] == "large_final") & (mixed["round"] == 8)]
    per_seed = rows.groupby("seed")["test_accuracy_at_early_stop"].mean() * 100
    assert mine.loc["large_final", "at_17_mean"] == pytest.approx(per_seed.mean())
    assert mine.loc["large_final", "at_17_std"] == pytest.approx(per_seed.std())
    sm = tables["my-sm"]
    assert {"base", "start", "dwr", "criterion"} <= set(sm.columns) and len(sm) == 2 * 3
    assert math.isnan(mine.loc["random", "at_7_mean"])


def test_the_published_comparison_reads_the_presets_only(mixed):
    # a user's own dense FC at 50%: the papers' numbers compare with the presets' protocol only
    odd = toy_iterative(name="my-dense").assign(test_accuracy_at_early_stop=0.5)
    with_odd = published_comparison(pd.concat([mixed, odd], ignore_index=True)).set_index("quantity")
    alone = published_comparison(mixed).set_index("quantity")
    quantity = "Dense FC, MNIST: test accuracy at early stop"
    assert with_odd.loc[quantity, "ours"] == alone.loc[quantity, "ours"] > 90
