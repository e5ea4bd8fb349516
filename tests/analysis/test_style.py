"""The plot style: labels, orders and colours, the criteria's from the criteria table."""
from __future__ import annotations

import pytest

from ticketlab.analysis import style
from ticketlab.analysis.style import (
    base_label,
    curve_style,
    describe_figure,
    key_text,
    legend_rank,
    mask1_label,
    measure_text,
    panel_label,
    sort_key,
    start_dwr_label,
)
from ticketlab.pruning.criteria import CRITERIA, complementary_pairs, criterion_colors


def test_criterion_colours_are_the_tables():
    colors = criterion_colors()
    assert [curve_style("criterion", c)["color"] for c in CRITERIA] == [colors[c] for c in CRITERIA]
    assert len(set(colors.values())) == len(CRITERIA)


def test_a_changed_table_changes_the_style(monkeypatch):
    monkeypatch.setattr(style, "criterion_colors", lambda: {"large_final": "#000001"})
    monkeypatch.setattr(style, "complementary_pairs", lambda: (("small_final", "large_final"),))
    drawn = curve_style("criterion", "large_final")
    assert drawn["color"] == "#000001" and drawn["marker"] == "s"  # now the second of its pair
    assert curve_style("criterion", "small_final")["marker"] == "o"


def test_second_of_each_pair_is_drawn_with_squares():
    for first, second in complementary_pairs():
        assert curve_style("criterion", first)["marker"] == "o"
        assert curve_style("criterion", second)["marker"] == "s"
    assert curve_style("criterion", "random")["marker"] == "D"


def test_criteria_sort_in_table_order_unknown_last():
    names = ["my_criterion", *reversed(CRITERIA)]
    assert sorted(names, key=lambda n: sort_key("criterion", n)) == [*CRITERIA, "my_criterion"]


@pytest.mark.parametrize("base, label", [("val_accuracy_0.25", "stopped at 25% val acc"),
                                         ("iterations_10", "10 iterations"), ("converged", "converged")])
def test_base_labels(base, label):
    assert base_label(base) == label


def test_bases_sort_by_training():
    bases = ["converged", "iterations_100", "val_accuracy_0.5", "iterations_10", "val_accuracy_0.25"]
    assert sorted(bases, key=lambda b: sort_key("base", b)) == [
        "val_accuracy_0.25", "val_accuracy_0.5", "iterations_10", "iterations_100", "converged"]


def test_labels_and_captions():
    assert mask1_label("signed_constant_rescaled") == "constant, sign kept (rescaled)"
    assert start_dwr_label("signed_constant", True) == "signed constant + DWR"
    assert describe_figure("out/criteria_pairs_fc.png").startswith("The criteria figure split")
    assert describe_figure("out/criteria_fc.png").startswith("Test accuracy at early stop")
    assert describe_figure("out/unknown.png") == "unknown"


def test_panel_labels_and_table_keys():
    assert panel_label({"base": "val_accuracy_0.5", "start": "init", "dwr": True}) == \
        "base stopped at 50% val acc — init + DWR"
    assert panel_label({"lr": 0.1}) == "lr 0.1"
    assert key_text("dwr", False) == "no" and key_text("mask1", "rewind") == "rewind (lottery ticket)"
    assert measure_text("test_accuracy_at_early_stop") == "Test accuracy at early stop, in %."
    assert measure_text("my_column") == "my_column, in %."


def test_legend_lists_criteria_in_table_order_then_references():
    labels = ["dense (97.10%)", "random", "large_final (reinit)", "small_final"]
    assert sorted(labels, key=legend_rank) == ["large_final (reinit)", "small_final", "random", "dense (97.10%)"]
