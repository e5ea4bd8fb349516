"""The report's explanations of what a reader would misread: DWR panels equal to the plain ones, and
curves that coincide."""
from __future__ import annotations

from synthetic import synthetic_results
from ticketlab.analysis.report import DWR_ROUNDING_PP, build_document, explanations
from ticketlab.analysis.stats import coinciding_curves, dwr_effect, experiment_rows, experiments


def _dwr_equal(table):
    """Supermask rows whose DWR numbers copy the plain ones (what zero biases give)."""
    table = table.copy()
    sm = table["experiment"] == "supermask-at-init"
    keys = ["seed", "round", "criterion", "base", "start"]
    plain = table[sm & (table["dwr"] == False)].set_index(keys)["test_accuracy_at_init"]  # noqa: E712
    on = sm & (table["dwr"] == True)  # noqa: E712
    table.loc[on, "test_accuracy_at_init"] = [plain[tuple(r)] for r in table.loc[on, keys].itertuples(index=False)]
    return table


def _notices(table, name):
    found = experiments(table)
    return [(n.label, n.text) for n in explanations(found[name], table)]


def test_dwr_note_only_when_the_dwr_panels_repeat_the_plain_ones():
    table = synthetic_results(experiments=["supermask-at-init"])
    found = experiments(table)["supermask-at-init"]
    assert abs(dwr_effect(experiment_rows(table, found), "test_accuracy_at_init") - 0.05) < 1e-9  # the +5 pp DWR gain
    assert not any("DWR" in label for label, _ in _notices(table, "supermask-at-init"))
    same = _dwr_equal(table)
    assert dwr_effect(experiment_rows(same, found), "test_accuracy_at_init") == 0.0
    (note,) = [text for label, text in _notices(same, "supermask-at-init") if "DWR" in label]
    assert "at most 0.00 pp" in note and "zero" in note and "biases" in note
    # a difference within rounding still gets the note, one beyond it does not
    nudged = same.copy()
    row = nudged.index[(nudged["experiment"] == "supermask-at-init") & nudged["dwr"].astype(bool)][5]
    nudged.loc[row, "test_accuracy_at_init"] += DWR_ROUNDING_PP / 100 / 2
    assert any("DWR" in label for label, _ in _notices(nudged, "supermask-at-init"))
    nudged.loc[row, "test_accuracy_at_init"] += DWR_ROUNDING_PP / 100
    assert not any("DWR" in label for label, _ in _notices(nudged, "supermask-at-init"))


def test_coinciding_curves_are_named_with_their_panels():
    table = synthetic_results(experiments=["masking-is-training"])
    # criteria whose synthetic curves differ (the bad ones all sit at chance, and so coincide)
    table = table[table["criterion"].isin(["large_final", "large_final_same_sign", "magnitude_increase", "random"])]
    found = experiments(table)["masking-is-training"]
    assert coinciding_curves(experiment_rows(table, found), found) == []
    # make large_final_same_sign copy large_final at the two earliest bases only
    table = table.copy()
    for base in ("val_accuracy_0.25", "val_accuracy_0.5"):
        at = table["base"] == base
        lf = table[at & (table["criterion"] == "large_final")]["test_accuracy_at_init"].to_numpy()
        table.loc[at & (table["criterion"] == "large_final_same_sign"), "test_accuracy_at_init"] = lf
    ((main, a, b, where),) = coinciding_curves(experiment_rows(table, found), found)
    assert (main, {a, b}) == ("criterion", {"large_final", "large_final_same_sign"})
    assert sorted(p[0] for p in where) == ["val_accuracy_0.25", "val_accuracy_0.5"]
    ((label, text),) = _notices(table, "masking-is-training")
    assert "large_final and large_final_same_sign" in label
    assert "2 panels" in text and "val_accuracy_0.25" in text and "changed sign" in text


def test_the_report_carries_the_notes_in_its_experiment_section():
    table = _dwr_equal(synthetic_results(experiments=["supermask-at-init"]))
    doc = build_document(table, {"scale": "test"}, [])
    section = next(s for s in doc.sections if s.heading == "Results by experiment")
    assert any(getattr(block, "label", "").startswith("Why the DWR panels") for block in section.blocks)
