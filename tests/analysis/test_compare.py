"""A user's results beside a reference table: the numbers against a hand computation, on a table built
by hand and on small real stores (a 1-seed quick criteria store, a 1-seed supermask-at-init store at
the full scale's levels); and `report` reading a results table gives the tables it gives from the store."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd
import pytest

from ticketlab.analysis.compare import compare, read_results_csv
from ticketlab.cli import main

pytest.importorskip("matplotlib")


def _rows(seed_values: dict[int, dict[tuple[str, int], float]], experiment: str = "criteria") -> pd.DataFrame:
    rows = []
    for seed, points in seed_values.items():
        for (criterion, r), acc in points.items():
            rows.append(dict(experiment=experiment, net="fc", dataset="mnist", seed=seed, criterion=criterion,
                             mask1="rewind", mask0="zero", round=r, remaining_percent=100 * 0.8**r,
                             test_accuracy_at_early_stop=acc))
    return pd.DataFrame(rows)


def test_compare_against_a_hand_computation():
    ours = _rows({7: {("large_final", 0): 0.97, ("large_final", 3): 0.95, ("random", 3): 0.80, ("movement", 3): 0.5}})
    reference = _rows({0: {("large_final", 0): 0.96, ("large_final", 3): 0.96, ("random", 3): 0.90},
                       1: {("large_final", 0): 0.98, ("large_final", 3): 0.97, ("random", 3): 0.92},
                       2: {("large_final", 0): 0.97, ("large_final", 3): 0.99, ("random", 3): 0.94}})
    table = compare(ours, reference).set_index(["criterion", "round"])
    assert len(table) == 3  # movement is not in the reference
    lf0, lf3, r3 = table.loc[("large_final", 0)], table.loc[("large_final", 3)], table.loc[("random", 3)]
    assert lf0["ours_mean"] == pytest.approx(97.0) and lf0["reference_mean"] == pytest.approx(97.0)
    assert (lf0["reference_min"], lf0["reference_max"]) == pytest.approx((96.0, 98.0)) and not lf0["outside"]
    assert lf3["reference_mean"] == pytest.approx((96 + 97 + 99) / 3) and lf3["outside"]  # 95 < 96
    assert r3["reference_seeds"] == 3 and r3["ours_seeds"] == 1 and r3["outside"]
    assert r3["remaining_percent"] == pytest.approx(51.2)


# The presets' names and kinds with fewer criteria: the analysis treats them as the presets (their
# figures and claims), at a fraction of the cost. CRITERIA: the quick scale's rounds 0, 3 and 6;
# SUPERMASK: the full scale's levels, p = 0..24.
CRITERIA = """\
name = "criteria"
kind = "iterative"
criteria = ["large_final", "small_final", "random"]
iterations = 20
rounds = 6
round_step = 3
"""
SUPERMASK = """\
name = "supermask-at-init"
kind = "supermask"
criteria = ["large_final", "random"]
starts = ["init", "signed_constant"]
dwr = [false, true]
iterations = 20
"""


def _sweep(root: Path, *args: str) -> None:
    if args[0] in ("criteria", "supermask-at-init"):
        spec = root.parent / f"{args[0]}.toml"
        spec.write_text(CRITERIA if args[0] == "criteria" else SUPERMASK)
        args = (str(spec), *args[1:])
    assert main(["sweep", *args, "--out", str(root), "--threads", "1", "--device", "cpu"]) == 0


def _csv(root: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["results", str(root), "--csv", "-"]) == 0
    return capsys.readouterr().out


def _shifted(text: str, value: str, by: list[float]) -> str:
    """A reference made from a results table: each row repeated as seeds 0.. with `value` shifted."""
    rows = list(csv.DictReader(io.StringIO(text)))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    for seed, delta in enumerate(by):
        for r in rows:
            writer.writerow({**r, "seed": str(seed), value: repr(float(r[value]) + delta)})
    return out.getvalue()


@pytest.mark.parametrize("sweep,value", [
    (["criteria", "--seeds", "1"], "test_accuracy_at_early_stop"),
    (["supermask-at-init", "--seeds", "1"], "test_accuracy_at_init"),
])
def test_report_beside_a_reference_on_a_small_store(tmp_path, capsys, sweep, value):
    store = tmp_path / "store"
    _sweep(store, *sweep)
    text = _csv(store, capsys)
    reference = tmp_path / "reference.csv"
    reference.write_text(_shifted(text, value, [-0.02, 0.0, 0.03]))
    assert main(["report", str(store), "--reference", str(reference)]) == 0
    comparison = pd.read_csv(store / "report" / "reference-comparison.csv")
    ours = pd.read_csv(io.StringIO(text))
    assert len(comparison) == len(ours)  # one seed: every row of ours is one point, and the reference has each
    for row in comparison.head(25).to_dict("records"):
        mine = ours
        for key in ("criterion", "round", "start", "dwr", "base"):
            if key in comparison.columns and key in ours.columns:
                mine = mine[mine[key] == row[key]]
        (v,) = mine[value]  # the hand computation: ours is v, the reference v-0.02, v, v+0.03
        assert row["ours_mean"] == pytest.approx(100 * v)
        assert row["reference_mean"] == pytest.approx(100 * (v + 0.01 / 3))
        assert row["reference_min"] == pytest.approx(100 * (v - 0.02))
        assert row["reference_max"] == pytest.approx(100 * (v + 0.03))
        assert not row["outside"]
    md = (store / "report" / "report.md").read_text()
    assert "## Beside the reference results" in md and str(reference) in md
    assert list((store / "report" / "reference").glob("reference_*.png"))


def test_the_packaged_reference_or_a_clear_error(tmp_path, capsys):
    from ticketlab.analysis.compare import packaged_reference

    store = tmp_path / "store"
    _sweep(store, "criteria", "--seeds", "1", "--iterations", "4")
    if packaged_reference() is None:
        capsys.readouterr()
        assert main(["report", str(store), "--reference"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "ships no reference results yet" in err[0]
    else:
        assert main(["report", str(store), "--reference"]) == 0


def _tables(markdown: str) -> str:
    """The report's result sections (everything from the results by experiment on): what the numbers are."""
    return markdown[markdown.index("## Results by experiment"):]


def test_report_of_a_results_table_equals_report_of_its_store(tmp_path, capsys):
    store = tmp_path / "store"
    _sweep(store, "criteria", "--seeds", "2")
    _sweep(store, "supermask-at-init", "--seeds", "2")
    text = _csv(store, capsys)
    table = tmp_path / "results.csv"
    table.write_text(text)
    import gzip

    zipped = tmp_path / "results.csv.gz"
    zipped.write_bytes(gzip.compress(text.encode()))
    assert main(["report", str(store)]) == 0
    assert main(["report", str(table), "--out", str(tmp_path / "from-csv")]) == 0
    pd.testing.assert_frame_equal(read_results_csv(zipped), read_results_csv(table))
    from_store = _tables((store / "report" / "report.md").read_text())
    assert "holds" in from_store or "does not hold" in from_store  # claims got verdicts: there are numbers
    assert _tables((tmp_path / "from-csv" / "report.md").read_text()) == from_store


def test_a_file_that_is_not_a_results_table_is_refused(tmp_path, capsys):
    from test_bad_data import refused

    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    refused(["report", str(bad)], capsys, "is not a ticketlab results table")
    refused(["report", str(tmp_path / "nothing.txt")], capsys, "neither a sweep directory nor a results table")
    assert re.fullmatch(r"x\.csv", bad.name) and sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]
