"""What a store promises whatever happens to it: resume never changes a number, damaged files are
never reused silently, workers die with their sweep, two processes never write the same runs at once."""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.core.errors import TicketlabError
from ticketlab.store.files import TMP_PREFIX, damaged_files, holding, remove_stale_temporaries
from ticketlab.execution.sweep import run_sweep
from ticketlab.experiments.jobs import Runtime
from ticketlab.experiments.manifests import manifest_path, read_manifests
from ticketlab.experiments.spec import load_sweep

THREE = """\
name = "three"
kind = "iterative"
criteria = ["large_final", "random", "magnitude_increase"]
mask1 = ["rewind"]
mask0 = ["zero"]
seeds = 1
iterations = 30
eval_every = 10
rounds = 2
"""


def _results(root: Path) -> str:
    from ticketlab.analysis.table import result_rows, to_csv

    return to_csv(result_rows(root))


def _sweep(root: Path, text: str = THREE, repair: bool = False, seeds: int | None = None) -> None:
    path = root.parent / f"{root.name}.toml"
    path.write_text(text)
    overrides = {"seeds": seeds} if seeds is not None else None
    run_sweep(load_sweep(str(path), "full", overrides), root, Runtime(device="cpu", repair=repair), workers=1, quiet=True)


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory) -> tuple[Path, str]:
    """A finished tiny sweep (3 chains x rounds 0..2) and its results CSV."""
    root = tmp_path_factory.mktemp("done") / "store"
    _sweep(root)
    return root, _results(root)


def _copy(store: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(store, root)
    return root


def _round_dirs(root: Path, round_: int) -> list[Path]:
    import json

    return sorted(p for p in (root / "runs").glob("round_*")
                  if json.loads((p / "config.json").read_text())["identity"]["round"] == round_)


def test_resumed_round_with_members_missing_gives_the_same_bytes(finished_store, tmp_path):
    """A kill between the per-member renames of a cohort leaves some members of a round done: the
    rerun trains the others as a smaller cohort, and their numbers must be the uninterrupted ones."""
    store, csv = finished_store
    root = _copy(store, tmp_path)
    first = _round_dirs(root, 1)
    assert len(first) == 3
    for path in first[:2]:
        shutil.rmtree(path)
    for path in _round_dirs(root, 2)[:1]:  # and one member of the next round
        shutil.rmtree(path)
    _sweep(root)
    assert _results(root) == csv
    for name in ("final.npz", "start.npz", "history.json"):
        for path in _round_dirs(root, 1):
            assert (path / name).read_bytes() == (store / "runs" / path.name / name).read_bytes()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_damaged_finished_run_is_reported_then_repaired(finished_store, tmp_path, capsys):
    store, csv = finished_store
    root = _copy(store, tmp_path)
    victim = _round_dirs(root, 1)[0]
    _truncate(victim / "final.npz")
    assert damaged_files(victim) == ["final.npz"]
    toml = tmp_path / "store.toml"
    toml.write_text(THREE)
    code = main(["sweep", str(toml), "--out", str(root), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(victim) in err[0] and "final.npz" in err[0] and "--repair" in err[0], err
    _sweep(root, repair=True)  # retrained, to the same bits
    assert damaged_files(victim) == [] and _results(root) == csv
    assert (victim / "final.npz").read_bytes() == (store / "runs" / victim.name / "final.npz").read_bytes()


def test_every_file_of_a_run_is_checksummed(finished_store):
    import json

    store, _ = finished_store
    for run in (store / "runs").iterdir():
        recorded = json.loads((run / "checksums.json").read_text())["sha256"]
        assert set(recorded) == {p.name for p in run.iterdir()} - {"checksums.json"}
        assert damaged_files(run) == []


def test_run_directories_get_the_umask_permissions(finished_store):
    store, _ = finished_store
    mask = os.umask(0o022)
    os.umask(mask)
    for run in (store / "runs").iterdir():
        assert run.stat().st_mode & 0o777 == 0o777 & ~mask


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{TMP_PREFIX}round_x-{host}-{dead.pid}-abc"
    live = tmp_path / f"{TMP_PREFIX}round_y-{host}-{os.getpid()}-def"
    other = tmp_path / f"{TMP_PREFIX}round_z-elsewhere-{dead.pid}-ghi"
    for d in (stale, live, other):
        d.mkdir()
        (d / "final.npz").write_bytes(b"x" * 100)
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and live.exists() and other.exists()


def _hold(lock: str, ready, release) -> None:
    with holding(Path(lock)):
        ready.set()
        release.wait(30)


def _holder(lock: Path):
    """Another process holding `lock`, and the event that lets it go."""
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(lock), ready, release))
    holder.start()
    assert ready.wait(60)
    return holder, release


def test_a_second_process_waits_for_the_holder_of_the_same_runs(tmp_path):
    holder, release = _holder(tmp_path / "seed.lock")
    waited: list[str] = []

    def waiting(pid: str) -> None:
        waited.append(pid)
        release.set()

    with holding(tmp_path / "seed.lock", waiting):
        pass
    holder.join(30)
    assert waited and waited[0].endswith(f"-{holder.pid}")


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    import fcntl

    holder, _ = _holder(tmp_path / "seed.lock")
    with open(tmp_path / "seed.lock") as f:
        with pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now: would raise if the lock had outlived it


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_die_with_a_sigkilled_sweep(tmp_path):
    spec = tmp_path / "long.toml"
    spec.write_text(THREE.replace("iterations = 30", "iterations = 100000").replace("eval_every = 10", "eval_every = 1000"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "ticketlab", "sweep", str(spec), "--seeds", "2", "--workers", "2",
                             "--threads", "1", "--device", "cpu", "--out", str(tmp_path / "o")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and len(list((tmp_path / "o" / "locks").glob("*.lock"))) < 2:
        time.sleep(0.1)  # both workers have started their jobs (each locks its seed's runs)
    workers = _children(proc.pid)  # the two workers (and multiprocessing's resource tracker)
    assert len(workers) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def test_a_failed_variant_of_a_sweep_keeps_the_finished_manifest(finished_store, tmp_path, capsys):
    """A sweep of the same name with another net is another manifest: the finished one stays
    complete (it used to be replaced, and `results` then printed nothing)."""
    store, csv = finished_store
    root = _copy(store, tmp_path)
    toml = tmp_path / "store.toml"
    toml.write_text(THREE)
    code = main(["sweep", str(toml), "--net", "conv2", "--out", str(root), "--device", "cpu",
                 "--data-dir", str(tmp_path / "no-cifar")])
    assert code == 2
    capsys.readouterr()
    statuses = sorted(m["status"] for m in read_manifests(root))
    assert statuses in (["complete"], ["complete", "failed"])
    assert _results(root) == csv


def test_a_damaged_manifest_is_one_line(finished_store, tmp_path, capsys):
    store, _ = finished_store
    root = _copy(store, tmp_path)
    (manifest,) = (root / "sweeps").glob("*.json")
    _truncate(manifest)
    with pytest.raises(TicketlabError, match="sweep manifest .* is damaged"):
        read_manifests(root)
    assert main(["results", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(manifest) in err[0]


def test_manifest_names_differ_by_spec_not_by_seed_slice(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(THREE)
    base = load_sweep(str(toml), "full")
    assert manifest_path(tmp_path, load_sweep(str(toml), "full", {"seeds": 3, "first_seed": 2})) == manifest_path(tmp_path, base)
    assert manifest_path(tmp_path, load_sweep(str(toml), "full", {"net": "conv2"})) != manifest_path(tmp_path, base)
    assert manifest_path(tmp_path, base).name.startswith("three_")


@pytest.mark.parametrize("folder", ["runs", "locks"])
def test_a_store_folder_that_is_a_file_is_refused_before_anything_is_written(tmp_path, capsys, folder):
    root = tmp_path / "o"
    root.mkdir()
    (root / folder).write_text("a file where the folder goes")
    toml = tmp_path / "s.toml"
    toml.write_text(THREE)
    assert main(["sweep", str(toml), "--out", str(root), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{root / folder}:" in err[0] and "it is a file" in err[0], err
    assert not list((root / "sweeps").glob("*.json")) if (root / "sweeps").exists() else True


def _edit_manifest(root: Path, edit) -> Path:
    import json

    (path,) = (root / "sweeps").glob("*.json")
    record = json.loads(path.read_text())
    edit(record["spec"])
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("edit", [lambda s: s.update(seeds="x"), lambda s: s.update(kind="nope"),
                                  lambda s: s.update(criteria="large_final"), lambda s: s.update(rounds=99)])
def test_a_manifest_with_wrong_values_is_one_line(finished_store, tmp_path, capsys, edit):
    store, _ = finished_store
    root = _copy(store, tmp_path)
    path = _edit_manifest(root, edit)
    for command in (["results", str(root)], ["report", str(root), "--out", str(tmp_path / "r")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and "damaged" in err[0], err


def test_results_note_the_missing_runs_of_a_complete_sweep(finished_store, tmp_path, capsys):
    store, _ = finished_store
    root = _copy(store, tmp_path)
    for path in _round_dirs(root, 2):
        shutil.rmtree(path)
    assert main(["results", str(root), "--csv", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("experiment,net,") and len(captured.out.strip().splitlines()) == 1 + 3 * 2
    assert "3 of its 9 runs are missing" in captured.err


def test_the_same_runs_recorded_by_two_sweeps_are_listed_once(finished_store, tmp_path):
    """A file without [quick]/[full] tables swept at both scales records the same runs twice."""
    store, csv = finished_store
    root = _copy(store, tmp_path)
    toml = tmp_path / "store.toml"
    toml.write_text(THREE)
    run_sweep(load_sweep(str(toml), "quick"), root, Runtime(device="cpu"), workers=1, quiet=True)
    assert len(read_manifests(root)) == 2
    assert _results(root) == csv


def test_sigterm_stops_a_sweep_and_records_it_interrupted(tmp_path):
    import json

    spec = tmp_path / "long.toml"
    spec.write_text(THREE.replace("iterations = 30", "iterations = 100000").replace("eval_every = 10", "eval_every = 1000"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "ticketlab", "sweep", str(spec), "--threads", "1", "--device", "cpu",
                             "--out", str(tmp_path / "o")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "o" / "locks").glob("*.lock")):
        time.sleep(0.1)
    time.sleep(1.0)  # into training
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    assert proc.stderr.read().strip().splitlines()[-1] == "ticketlab: terminated"
    (manifest,) = (tmp_path / "o" / "sweeps").glob("*.json")
    assert json.loads(manifest.read_text())["status"] == "interrupted"
