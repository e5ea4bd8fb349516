"""The Ray executor: the same store and results table as the local executor, in place or shipped
back to the driver, through a worker killed mid-job; reproduce through it; its flags refused without it."""
from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.execution.sweep import run_sweep
from ticketlab.experiments.jobs import Runtime
from ticketlab.experiments.spec import load_sweep

ray = pytest.importorskip("ray")

TINY = """\
name = "tiny-ray"
kind = "iterative"
criteria = ["large_final", "random"]
mask1 = ["rewind"]
mask0 = ["zero"]
seeds = 2
iterations = 40
eval_every = 20
rounds = 2
"""


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance of 2 CPUs for the module (the executor joins a running one)."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny-ray.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, spec) -> Path:
    out = tmp_path_factory.mktemp("local")
    # the same torch threads as each Ray task: a reduction's order (so its last bits) follows the threads
    assert main(["sweep", str(spec), "--out", str(out), "--device", "cpu", "--executor", "local", "--threads", "1"]) == 0
    return out


def _csv(root: Path) -> bytes:
    assert main(["results", str(root), "--csv", str(root / "results.csv")]) == 0
    return (root / "results.csv").read_bytes()


def _runs(root: Path) -> dict[str, dict[str, bytes]]:
    """Every file of every run in the store, by run and name, except the wall times in summaries."""
    import json

    out = {}
    for run in sorted((root / "runs").iterdir()):
        files = {}
        for f in sorted(run.iterdir()):
            if f.name in ("summary.json", "checksums.json"):
                files[f.name] = sorted(json.loads(f.read_text()))  # keys: wall times differ run to run
            else:
                files[f.name] = f.read_bytes()
        out[run.name] = files
    return out


@pytest.mark.parametrize("ship", [False, True], ids=["shared-store", "runs-shipped-to-driver"])
def test_ray_sweep_equals_the_local_one_bitwise(cluster, spec, local_store, tmp_path, ship):
    out = tmp_path / "ray"
    args = ["sweep", str(spec), "--out", str(out), "--device", "cpu", "--executor", "ray", "--threads", "1"]
    assert main(args + (["--ship-runs"] if ship else [])) == 0
    assert _csv(out) == _csv(local_store)
    assert _runs(out) == _runs(local_store)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in local_store.iterdir())
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]  # no temporaries, no token


def _builder_pid(runs: Path) -> int | None:
    """The pid of a Ray worker building a run now (it names its temporary directory)."""
    marker = f"-{socket.gethostname()}-"
    for p in runs.glob(".tmp-*") if runs.is_dir() else ():
        pid = p.name.rsplit(marker, 1)[-1].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and Path(f"/proc/{pid}").exists():  # not an old one's leftovers
            return int(pid)
    return None


@pytest.mark.parametrize("ship", [False, True], ids=["shared-store", "runs-shipped-to-driver"])
def test_a_worker_killed_mid_job_is_retried_and_no_run_is_duplicated(cluster, spec, local_store, tmp_path, ship):
    out = tmp_path / "ray"
    runtime = Runtime(device="cpu", threads=1, ship_runs=ship)
    codes: list[float] = []  # the sweep runs in a thread (the command line's signal handlers need the main one)
    sweep = threading.Thread(target=lambda: codes.append(run_sweep(load_sweep(str(spec), "full", {}), out, runtime,
                                                                   quiet=True, executor="ray")))
    sweep.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and sweep.is_alive():
        # shipped runs are built in the task's private store, under the system's temporary folder
        folders = [out / "runs"] if not ship else list(Path(tempfile.gettempdir()).glob("ticketlab-ray-*/runs"))
        for folder in folders:
            killed = killed or _builder_pid(folder)
        time.sleep(0.01)
    assert killed is not None, "no worker was caught mid-job"
    os.kill(killed, signal.SIGKILL)
    sweep.join(300)
    assert len(codes) == 1  # it finished
    assert _csv(out) == _csv(local_store)
    assert _runs(out) == _runs(local_store)  # every run once, the same bytes
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]


def test_ray_flags_without_the_ray_executor_are_refused(spec, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--address", "1.2.3.4:6379"]) == 2
    assert "--address is for --executor ray" in capsys.readouterr().err


def test_reproduce_through_ray_equals_the_local_one(cluster, tmp_path):
    """`reproduce` of study presets at quick scale, cut to 10 steps per run (the real quick
    comparison takes minutes on 2 cores, too long for CI)."""
    pytest.importorskip("matplotlib")
    from ticketlab.reproduce import STUDY_PRESETS, reproduce

    # two of the study's presets (a chain kind and a supermask kind), three criteria and every sixth
    # level keep CI short: what is compared is the executors, not the criteria
    assert {"criteria", "supermask-at-init"} <= set(STUDY_PRESETS)
    few = {"seeds": 1, "iterations": 10, "criteria": ["large_final", "random", "small_final"]}
    specs = [load_sweep("criteria", "quick", few), load_sweep("supermask-at-init", "quick", {**few, "level_step": 6})]
    tables = []
    for executor in ("local", "ray"):
        out = tmp_path / executor
        reproduce(specs, out, Runtime(device="cpu", threads=2), None, executor)
        assert (out / "report" / "report.md").is_file()
        tables.append(_csv(out))
    assert tables[0] == tables[1]
