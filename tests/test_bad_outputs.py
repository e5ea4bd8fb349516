"""Output paths and damaged stores for `results`, `plot` and `report`: one line on stderr, exit 2,
nothing half-written; a closed pipe ends `results` quietly; the report's scale says what was run."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_bad_data import refused
from ticketlab.cli import BROKEN_PIPE_EXIT, main

pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

ITERATIVE = """\
name = "bad-iter"
kind = "iterative"
criteria = ["large_final"]
seeds = 1
iterations = 2
eval_every = 1
rounds = 1
"""
SUPERMASK = ITERATIVE.replace('"bad-iter"', '"bad-sm"').replace('"iterative"', '"supermask"').replace("rounds", "levels")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A real sweep directory: one iterative and one supermask sweep of 2-step runs."""
    root = tmp_path_factory.mktemp("store")
    for name, text in (("iter.toml", ITERATIVE), ("sm.toml", SUPERMASK)):
        (root / name).write_text(text)
        assert main(["sweep", str(root / name), "--out", str(root / "out"), "--threads", "1"]) == 0
    return root / "out"


@pytest.fixture
def copy(store, tmp_path) -> Path:
    return Path(shutil.copytree(store, tmp_path / "store"))


def _run(root: Path, kind: str) -> Path:
    (path,) = (root / "runs").glob(f"{kind}_*")
    return path


# --- output paths ----------------------------------------------------------------------------


def test_results_csv_into_unwritable_places(store, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    refused(["results", str(store), "--csv", str(blocker / "x.csv")], capsys,
            f"cannot write the --csv file {blocker / 'x.csv'}: folder {blocker} is a file, not a folder")
    refused(["results", str(store), "--csv", str(tmp_path)], capsys, f"cannot write the --csv file {tmp_path}: it is a folder")
    refused(["results", str(store), "--csv", str(tmp_path / "nope" / "x.csv")], capsys,
            f"folder {tmp_path / 'nope'} does not exist")
    assert blocker.read_text() == "not a folder" and not (tmp_path / "nope").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_results_csv_failing_at_the_rename_leaves_the_old_file_whole(store, tmp_path, capsys, monkeypatch):
    """Root ignores permission bits, so a read-only filesystem is simulated where it bites, at the
    rename; the message is still the OSError's own."""
    target = tmp_path / "r.csv"
    target.write_text("old\n")

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    monkeypatch.setattr(os, "replace", read_only)
    refused(["results", str(store), "--csv", str(target)], capsys, f"cannot write {target}: {os.strerror(errno.EROFS)}")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["r.csv"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_results_csv_into_a_read_only_folder(store, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    refused(["results", str(store), "--csv", str(folder / "x.csv")], capsys, "Permission denied")


def test_results_csv_is_written_whole(store, tmp_path, capsys):
    assert main(["results", str(store), "--csv", str(tmp_path / "r.csv")]) == 0
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("experiment,net,dataset") and len(lines) == 1 + 2 + 2  # rounds 0-1, levels 0-1
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_parquet_without_pyarrow_is_one_line_naming_the_extra(store, tmp_path, capsys, monkeypatch):
    import pandas as pd

    def missing(self, *args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.\nA suitable version...")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", missing)
    refused(["results", str(store), "--parquet", str(tmp_path / "r.pq")], capsys,
            'parquet export needs pyarrow: pip install "ticketlab[plot]"')
    assert not list(tmp_path.iterdir())


def test_plot_and_report_into_unwritable_places(store, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    refused(["plot", str(store), "--out", str(blocker / "figures")], capsys, "Not a directory", str(blocker / "figures"))
    refused(["report", str(store), "--out", str(blocker)], capsys, f"cannot write output folder {blocker}: it is a file, not a folder")
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_results_into_a_closed_pipe_exits_quietly(store):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "ticketlab", "results", str(store)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line: every write gets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait() == BROKEN_PIPE_EXIT and err == ""


# --- damaged store ------------------------------------------------------------------------------


def _edit_json(path: Path, edit) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _without(key):
    def edit(d):
        del d[key]
        return d

    return edit


def _row_without(key):
    def edit(rows):
        del rows[0][key]
        return rows

    return edit


DAMAGE = {
    "truncated-summary": ("round", "summary.json", None, "cannot read"),
    "summary-missing-key": ("round", "summary.json", _without("remaining_weights"), "summary.json has no field 'remaining_weights'"),
    "summary-wrong-type": ("round", "summary.json", lambda d: {**d, "remaining_weights": "many"}, "remaining_weights = 'many', not an integer"),
    "summary-not-an-object": ("dense", "summary.json", lambda d: [d], "summary.json holds a JSON array, not an object"),
    "supermask-summary-missing-key": ("supermask", "summary.json", _without("base_iterations"), "no field 'base_iterations'"),
    "rows-missing-key": ("supermask", "rows.json", _row_without("start"), "rows.json has no field 'start'"),
    "rows-not-a-list": ("supermask", "rows.json", lambda rows: {"rows": rows}, "rows.json holds a JSON object, not an array"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["results", "plot", "report"])
@pytest.mark.parametrize("checksums", [True, False])
def test_damaged_run_is_named_with_the_remedy(copy, capsys, damage, command, checksums):
    """With its checksums a run's damage is found by them; without (a run written before they were
    recorded), by what the reader expects of the file."""
    kind, name, edit, message = DAMAGE[damage]
    run = _run(copy, kind)
    if checksums:
        message = f"{name} does not match the checksums"
    else:
        (run / "checksums.json").unlink()
    if edit is None:
        (run / name).write_text((run / name).read_text()[:40])
    else:
        _edit_json(run / name, edit)
    refused([command, str(copy)], capsys, f"run {run} is damaged", message, "delete that directory")
    assert not (copy / "figures").exists() and not (copy / "report").exists()


def test_the_remedy_works_sweep_repair_retrains_the_damaged_run(store, copy, capsys):
    _edit_json(_run(copy, "round") / "summary.json", _without("remaining_weights"))
    assert main(["results", str(copy)]) == 2
    assert main(["sweep", str(store.parent / "iter.toml"), "--out", str(copy), "--repair", "--threads", "1"]) == 0
    assert main(["results", str(copy), "--csv", str(copy.parent / "repaired.csv")]) == 0
    assert main(["results", str(store), "--csv", str(copy.parent / "original.csv")]) == 0
    assert (copy.parent / "repaired.csv").read_text() == (copy.parent / "original.csv").read_text()  # the same bits


def test_extra_keys_in_run_files_are_ignored(copy, capsys):
    for kind in ("round", "supermask"):  # as a run written by another version, without checksums
        (_run(copy, kind) / "checksums.json").unlink()
    _edit_json(_run(copy, "round") / "summary.json", lambda d: {**d, "added_later": 1})
    _edit_json(_run(copy, "supermask") / "rows.json", lambda rows: [{**r, "added_later": 1} for r in rows])
    assert main(["results", str(copy)]) == 0
    assert "added_later" not in capsys.readouterr().out


# --- the report's scale --------------------------------------------------------------------------


def test_report_scale_says_what_was_run(store, tmp_path, capsys):
    assert main(["report", str(store), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    banner = next(line for line in md.splitlines() if line.startswith("> **Scale:**"))
    assert "not the paper protocol" in banner and "1 seed, 2 training steps per run (protocol §3: 50,380)" in banner
    assert "pruning rounds 0–1" in banner and "supermask levels p = 0…1" in banner


def test_scale_label_calls_only_the_paper_protocol_so():
    from ticketlab.reproduce import STUDY_PRESETS, scale_label
    from ticketlab.experiments.spec import load_sweep

    full = scale_label([load_sweep(name, "full") for name in STUDY_PRESETS])
    assert full.startswith("full: the paper protocol.") and "5 seeds, the full protocol §3 schedule" in full
    one_seed = scale_label([load_sweep(name, "full", {"seeds": 1}) for name in STUDY_PRESETS])
    assert "not the paper protocol" in one_seed and "1 seed," in one_seed
    quick = scale_label([load_sweep(name, "quick") for name in STUDY_PRESETS])
    assert "not the paper protocol" in quick and "pruning rounds 0–24 in steps of 3" in quick
