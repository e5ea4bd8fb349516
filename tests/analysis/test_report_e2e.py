"""From a tiny real sweep to `ticketlab results`, `plot` and `report`: files, images and numbers."""
from __future__ import annotations

import base64
import re
import struct

import pytest

from ticketlab.cli import main

ITERATIVE = """\
name = "criteria"
kind = "iterative"
criteria = ["large_final", "small_final", "random"]
seeds = 2
iterations = 40
eval_every = 20
rounds = 2
"""

SUPERMASK = """\
name = "supermask-at-init"
kind = "supermask"
criteria = ["large_final_same_sign", "random"]
bases = ["converged"]
starts = ["init", "signed_constant"]
seeds = 2
iterations = 40
eval_every = 20
levels = 4
level_step = 2
"""


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    for name, text in (("it.toml", ITERATIVE), ("sm.toml", SUPERMASK)):
        (root / name).write_text(text)
        assert main(["sweep", str(root / name), "--out", str(root / "out"), "--workers", "1"]) == 0
    return root / "out"


def test_results_csv(sweep_dir, tmp_path):
    import pandas as pd

    assert main(["results", str(sweep_dir), "--csv", str(tmp_path / "r.csv")]) == 0
    df = pd.read_csv(tmp_path / "r.csv")
    assert set(df.experiment) == {"criteria", "supermask-at-init"}
    assert len(df[df.experiment == "criteria"]) == 2 * 3 * 3
    assert len(df[df.experiment == "supermask-at-init"]) == 2 * 2 * 3 * 2  # seeds x criteria x levels x starts


def test_report_shows_real_images_and_table_numbers(sweep_dir, tmp_path, capsys):
    from ticketlab.analysis.table import results_frame

    assert main(["report", str(sweep_dir), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 2
    for b64 in images:
        w, h = _png_size(base64.b64decode(b64))
        assert w >= 400 and h >= 300
    md = (tmp_path / "rep" / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (tmp_path / "rep" / link).is_file()
    # the dense baseline of the report is the seed mean of the round-0 rows of the results table
    df = results_frame(sweep_dir)
    dense = df[(df.experiment == "criteria") & (df["round"] == 0)].groupby("seed").test_accuracy_at_early_stop.first()
    assert f"{100 * dense.mean():.2f}" in html
    best_lfss = (df[(df.experiment == "supermask-at-init") & (df.criterion == "large_final_same_sign") & (df.start == "init")]
                 .groupby("seed").test_accuracy_at_init.max())
    assert f"{100 * best_lfss.mean():.2f}" in html


def test_plot_writes_png_and_svg(sweep_dir, tmp_path):
    assert main(["plot", str(sweep_dir), "--out", str(tmp_path / "f")]) == 0
    names = {p.name for p in (tmp_path / "f").iterdir()}
    assert {"criteria.png", "criteria.svg", "supermask-at-init.png"} <= names
    w, h = _png_size((tmp_path / "f" / "criteria.png").read_bytes())
    assert w >= 400 and h >= 300


def test_results_and_report_refuse_a_non_sweep_dir(tmp_path, capsys):
    assert main(["results", str(tmp_path)]) == 2
    assert "no sweep found" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is neither a sweep directory nor a results table" in capsys.readouterr().err


def _recorded_wall(root, run_dirs) -> float:
    import json

    return sum(json.loads((root / d / "summary.json").read_text())["wall_seconds"] for d in set(run_dirs))


def test_coverage_counts_finished_and_missing_results(sweep_dir, tmp_path):
    """Coverage by hand: 2 seeds x 3 criteria x rounds 0-2 = 18 iterative results; 2 seeds x 2 criteria x
    levels 0, 2, 4 x 2 starts = 24 supermask results; one round run removed leaves seed 1 incomplete."""
    import json
    import shutil

    from ticketlab.analysis.table import coverage, result_rows

    store = tmp_path / "store"
    shutil.copytree(sweep_dir, store)
    gone = next(p for p in sorted((store / "runs").glob("round_*"))
                if json.loads((p / "config.json").read_text())["config"]["seed"] == 1)
    shutil.rmtree(gone)
    rows = result_rows(store)
    entries = {e["experiment"]: e for e in coverage(store, [(r["experiment"], r["seed"], r["run_dir"]) for r in rows])}
    it, sm = entries["criteria"], entries["supermask-at-init"]
    assert (it["results"], it["expected"], it["seeds"], it["complete_seeds"]) == (17, 18, [0, 1], [0])
    assert (sm["results"], sm["expected"], sm["seeds"], sm["complete_seeds"]) == (24, 24, [0, 1], [0, 1])
    for name, entry in entries.items():
        mine = [r["run_dir"] for r in rows if r["experiment"] == name]
        assert entry["run_seconds"] == pytest.approx(_recorded_wall(store, mine))
    assert len({r["run_dir"] for r in rows if r["experiment"] == "criteria"}) == 1 * 2 + 2 * 3 * 2 - 1  # dense shared

    assert main(["report", str(store), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "**Unfinished:** 1 of 2 experiments have not finished: criteria (17 of 18 results)." in md
    assert "| criteria | 0-1 | 0 | 17 of 18 (unfinished) |" in md
    assert "| supermask-at-init | 0-1 | 0-1 | 24 of 24 |" in md


def test_a_finished_store_has_no_unfinished_notice_and_a_table_no_coverage(sweep_dir, tmp_path):
    assert main(["report", str(sweep_dir), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Unfinished" not in md and "| criteria | 0-1 | 0-1 | 18 of 18 |" in md
    assert main(["results", str(sweep_dir), "--csv", str(tmp_path / "r.csv")]) == 0
    assert main(["report", str(tmp_path / "r.csv"), "--out", str(tmp_path / "from-table")]) == 0
    assert "What these results cover" not in (tmp_path / "from-table" / "report.md").read_text()


def test_a_gzipped_results_table_reads_back_as_the_plain_one(sweep_dir, tmp_path):
    """`results --csv X.csv.gz` writes gzip (the shipped reference's format), the same bytes on every
    write, and `report` reads it to the same tables as the plain CSV."""
    import gzip

    assert main(["results", str(sweep_dir), "--csv", str(tmp_path / "r.csv")]) == 0
    assert main(["results", str(sweep_dir), "--csv", str(tmp_path / "r.csv.gz")]) == 0
    packed = (tmp_path / "r.csv.gz").read_bytes()
    assert gzip.decompress(packed) == (tmp_path / "r.csv").read_bytes()
    assert main(["results", str(sweep_dir), "--csv", str(tmp_path / "r.csv.gz")]) == 0
    assert (tmp_path / "r.csv.gz").read_bytes() == packed
    for name in ("r.csv", "r.csv.gz"):
        assert main(["report", str(tmp_path / name), "--out", str(tmp_path / name.replace(".", "-"))]) == 0
    plain, packed_md = ((tmp_path / d / "report.md").read_text() for d in ("r-csv", "r-csv-gz"))
    assert plain.split("## Results by experiment")[1] == packed_md.split("## Results by experiment")[1]


def test_a_store_whose_sweeps_have_no_finished_run_reports_nothing_covered(sweep_dir, tmp_path):
    import shutil

    import json

    store = tmp_path / "store"
    shutil.copytree(sweep_dir / "sweeps", store / "sweeps")
    for manifest in (store / "sweeps").glob("*.json"):  # as a sweep's record reads before any job has ended
        record = json.loads(manifest.read_text())
        record.pop("wall_seconds")
        manifest.write_text(json.dumps(record))
    assert main(["report", str(store), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| criteria | 0-1 | none | 0 of 18 (unfinished) |" in md
    assert "**Unfinished:** 2 of 2 experiments have not finished" in md
    assert "wall_seconds" not in md and "nan" not in md  # no time recorded: none shown, not "nan"
