"""The progress line counts work, not jobs; sweeps say what they will do before they do it; a dry run
trains nothing; and the rough edges a new user met (skipped rounds, custom sweeps called full, the
results table's columns)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from test_bad_data import refused
from ticketlab.cli import main
from ticketlab.core.progress import ProgressLine
from ticketlab.training.cost import CohortWork, EvalWork, describe, eval_points, relative_cost

TINY = """\
name = "tiny"
kind = "iterative"
criteria = ["large_final", "random"]
seeds = 2
iterations = 10
eval_every = 5
rounds = 2
"""


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_eval_points_count_start_every_and_end():
    assert eval_points(10, 5) == 3 and eval_points(11, 5) == 4 and eval_points(1000, 100) == 11


def test_a_sparse_member_costs_less_and_more_members_cost_more():
    dense = CohortWork("d", (0.07,), (False,), 100, 100)
    sparse = CohortWork("s", (0.07,), (True,), 100, 100)
    assert relative_cost(sparse) < 0.4 * relative_cost(dense)
    two = CohortWork("2", (0.07, 0.07), (False, False), 100, 100)
    assert relative_cost(two) == pytest.approx(2 * relative_cost(dense))
    # 100 steps of one dense member, and its evaluations: 2 points of val and test
    assert relative_cost(dense) > 100
    assert relative_cost(EvalWork("e", 10)) == pytest.approx(10 * relative_cost(EvalWork("e", 1)))


def test_dry_run_counts_a_tiny_sweep_and_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # 2 seeds x (1 dense run + 2 rounds x 2 chains): 10 runs in 2 x 3 cohorts, 10 x (2 + 4 x 2) member steps
    assert lines[0].startswith("tiny (custom, 2 seeds): 10 runs, 6 cohorts, 100 member steps, 0 networks")
    assert lines[-1].startswith("in all: 10 runs to make") and "projected" in lines[-1]
    assert not out.exists()
    # after one seed ran, the dry run counts what is left
    assert main(["sweep", str(spec), "--out", str(out), "--seeds", "1", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run", "--threads", "1"]) == 0
    assert capsys.readouterr().out.startswith("tiny (custom, 2 seeds): 5 runs, 3 cohorts, 50 member steps")


def test_runs_two_sweeps_share_are_counted_once(tmp_path):
    from ticketlab.execution.sweep import plan_jobs
    from ticketlab.experiments.jobs import Job
    from ticketlab.experiments.spec import load_sweep

    criteria = load_sweep("criteria", "quick", {"seeds": 1})
    signs = load_sweep("large-final-signs", "quick", {"seeds": 1})  # 3 of criteria's chains
    alone = plan_jobs([Job(signs, 0)], tmp_path, "cpu")
    batch = plan_jobs([Job(criteria, 0), Job(signs, 0)], tmp_path, "cpu")
    assert describe(alone[0])["runs"] == 1 + 3 * 8
    assert describe(batch[0])["runs"] == 1 + 13 * 8 and describe(batch[1])["runs"] == 0


def test_progress_weighs_jobs_by_their_work_and_names_what_runs():
    from ticketlab.execution.sweep import _ProgressBar

    bar = _ProgressBar([9.0, 1.0], "t", quiet=True)
    bar.update(1, 1.0, "b seed 1, round 3/3")
    assert bar.share_done() == pytest.approx(0.1)
    bar.update(0, 0.5, "a seed 0, round 2/3 (13 chains)")
    assert bar.share_done() == pytest.approx(0.55)
    bar.done(0)
    assert bar.share_done() == pytest.approx(1.0)
    unknown = _ProgressBar([None, 2.0, None], "t", quiet=True)  # jobs without a plan weigh the mean
    unknown.done(0)
    assert unknown.share_done() == pytest.approx(1 / 3)


def test_the_line_on_a_terminal_and_in_a_log():
    tty = _Stream(True)
    line = ProgressLine("[x]", stream=tty)
    line.update(0.25, 1.0, "criteria seed 0, round 3/24", force=True)
    assert tty.getvalue().startswith("\r[x] [######------------------] 25% criteria seed 0, round 3/24, elapsed ")
    log = _Stream(False)
    line = ProgressLine("[x]", stream=log, every=15)
    line.update(0.005, 1.0, "a", force=True)
    line.update(0.5, 1.0, "b")  # within 15 s of the last line: not written
    line.update(0.5, 1.0, "b", force=True)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "[#" not in lines[0]
    assert lines[0].endswith("ETA ?")  # under 1% done: no ETA yet
    assert "ETA ?" not in lines[1]


def test_a_sweep_says_what_it_will_do_before_training(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.replace("seeds = 2", "seeds = 1"))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[sweep tiny (custom)] to do: 5 runs to make (3 cohorts to train")
    assert "projected" in err[0] and "A LONG RUN" not in "\n".join(err)
    assert any(line.startswith("[sweep tiny (custom)] 100%") for line in err)


def test_jobs_report_what_they_train(tmp_path):
    """The notes the progress line shows come from the jobs: each cohort as it starts."""
    from ticketlab.execution.local import InProcess
    from ticketlab.execution.sweep import execute
    from ticketlab.experiments.jobs import Job, Runtime
    from ticketlab.experiments.spec import parse_spec

    spec = parse_spec(TINY.replace("seeds = 2", "seeds = 1"), "t.toml", "full")
    notes = []

    class Recording(InProcess):
        def run(self, jobs, work, progress):
            def note(index, fraction, text=""):
                notes.append((round(fraction, 6), text))
            progress.update = note
            super().run(jobs, work, progress)

    execute([Job(spec, 0)], tmp_path, Runtime("cpu"), 1, "t", quiet=True, executor=Recording(1))
    texts = [t for _, t in notes if t]
    assert texts[0] == "tiny seed 0, dense run" and texts[-1] == "tiny seed 0, round 2/2 (2 chains)"
    fractions = [f for f, _ in notes]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_rounds_that_a_step_would_skip_are_refused(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(TINY.replace("rounds = 2", "rounds = 24\nround_step = 5"))
    refused(["sweep", str(spec), "--out", str(tmp_path / "out")], capsys,
            "field 'round_step' 5 does not divide rounds 24", "leaving 21-24 out", "rounds = 20")
    spec.write_text('name = "sm"\nkind = "supermask"\nseeds = 1\niterations = 4\nlevels = 7\nlevel_step = 2\n')
    refused(["sweep", str(spec), "--out", str(tmp_path / "out")], capsys, "level_step' 2 does not divide levels 7")
    assert not (tmp_path / "out").exists()


def test_a_custom_sweep_is_not_called_full():
    from ticketlab.experiments.spec import load_sweep, parse_spec, scale_name

    assert scale_name(parse_spec(TINY, "t.toml", "full")) == "custom"
    assert scale_name(load_sweep("criteria", "full")) == "full"
    assert scale_name(load_sweep("criteria", "full", {"seeds": 1})) == "full"
    assert scale_name(load_sweep("criteria", "quick")) == "quick"
    assert scale_name(load_sweep("criteria", "full", {"iterations": 100})) == "custom"


def test_results_name_each_run_and_hold_only_the_columns_of_its_kinds(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.replace("seeds = 2", "seeds = 1").replace("rounds = 2", "rounds = 1"))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["results", str(out), "--csv", "-"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4
    for row in rows:  # every row names its run, whose summary holds the row's numbers
        import json

        summary = json.loads((out / row["run_dir"] / "summary.json").read_text())
        assert float(row["test_accuracy_at_early_stop"]) == pytest.approx(summary["test_accuracy_at_early_stop"])
        assert float(row["test_accuracy_at_init"]) == pytest.approx(summary["test_accuracy_at_init"])
    assert "base" not in rows[0] and "learner" not in rows[0] and list(rows[0])[-1] == "run_dir"
    from ticketlab.results import results_frame

    frame = results_frame(out)
    assert "start" not in frame.columns and "run_dir" in frame.columns


def test_the_main_commands_output_is_ignored_by_git():
    ignored = (Path(__file__).parents[2] / ".gitignore").read_text().splitlines()
    assert "/ticketlab-reproduce-quick/" in ignored and "/ticketlab-reproduce-full/" in ignored


def test_a_calibration_slowed_by_other_processes_niced_ones_included_is_not_cached(tmp_path, monkeypatch):
    """Niced processes count as load (under autogroup scheduling they take their share): a measurement
    made while they kept a core busy projects this run but is not written to the per-machine cache."""
    import ticketlab.core.device as device
    from ticketlab.nets.specs import get_net
    from ticketlab.training import cost

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cost, "_measure", lambda net, dev, threads: 0.004)
    asked = []

    def busy(seconds_busy_per_call):
        clock = iter(range(100))

        def ticks(count_niced=True):
            asked.append(count_niced)
            t = next(clock)
            # all cores' busy seconds grow by `seconds_busy_per_call` a wall second, this process by none
            return t * seconds_busy_per_call, 0.0, float(t)
        return ticks

    monkeypatch.setattr(device, "cpu_ticks", busy(1.0))  # one core kept busy by another (say niced) job
    assert cost.seconds_per_unit(get_net("fc"), "cpu", threads=2) == 0.004
    assert all(asked) and not (tmp_path / "ticketlab").exists() and not list(tmp_path.rglob("*.json"))
    monkeypatch.setattr(device, "cpu_ticks", busy(0.0))  # a quiet machine: cached
    assert cost.seconds_per_unit(get_net("fc"), "cpu", threads=2) == 0.004
    assert len(list(tmp_path.rglob("*.json"))) == 1


def test_the_eta_weighs_the_projection_as_a_tenth_of_the_work(monkeypatch):
    """Hand-computed: 30 s elapsed at 10% done. Alone, the elapsed rate says 30 / 0.1 x 0.9 = 270 s
    left; with a projection of 100 s for the whole, the rate is (30 + 0.1 x 100) / (0.1 + 0.1) = 200 s
    per unit of work, so 180 s left; before anything is done the ETA is the projection itself."""
    import io

    from ticketlab.core import progress

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    plain, informed = io.StringIO(), io.StringIO()
    lines = [progress.ProgressLine("[x]", stream=plain), progress.ProgressLine("[x]", stream=informed, expected=100.0)]
    for line in lines:
        line.update(0.0, 1.0, force=True)
    clock[0] += 30.0
    for line in lines:
        line.update(0.1, 1.0, force=True)
    assert plain.getvalue().splitlines() == ["[x] 0%, elapsed 0s, ETA ?", "[x] 10%, elapsed 30s, ETA 4m30s"]
    assert informed.getvalue().splitlines() == ["[x] 0%, elapsed 0s, ETA 1m40s", "[x] 10%, elapsed 30s, ETA 3m00s"]
    assert lines[1].eta(50.0, 1.0) == 0.0 and progress.ProgressLine("[x]", stream=io.StringIO(), expected=float("nan")).expected is None
