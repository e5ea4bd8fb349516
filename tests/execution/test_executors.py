"""Executors: every job run once, progress fed from the jobs, the first failure raised, dead workers named."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ticketlab.core.errors import TicketlabError
from ticketlab.execution.local import InProcess
from ticketlab.execution.pool import ProcessPool


@dataclass(frozen=True)
class _Toy:
    """Writes its job's number into a file named after the job, reporting halfway and at the end."""

    folder: str
    fail: int | None = None
    die: int | None = None

    def __call__(self, job: int, report) -> None:
        report(0.5)
        if job == self.fail:
            raise TicketlabError(f"job {job} refused")
        if job == self.die:
            os._exit(3)
        if job == -1:
            raise ValueError("a bug")
        (Path(self.folder) / f"{job}.txt").write_text(f"{job} by {os.getpid()}")
        report(1.0)


class _Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[int, float]] = []
        self.finished: list[int] = []

    def update(self, index: int, fraction: float, note: str = "") -> None:
        self.updates.append((index, fraction))

    def done(self, index: int) -> None:
        self.finished.append(index)


EXECUTORS = {"in-process": lambda: InProcess(), "pool": lambda: ProcessPool(workers=2, threads=1, poll_seconds=0.1)}


@pytest.mark.parametrize("name", list(EXECUTORS))
def test_every_job_runs_once_and_reports(tmp_path, name):
    progress = _Recorder()
    EXECUTORS[name]().run(list(range(5)), _Toy(str(tmp_path)), progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{j}.txt" for j in range(5)]
    assert sorted(progress.finished) == list(range(5))
    for j in range(5):
        assert (j, 0.5) in progress.updates and (j, 1.0) in progress.updates
    pids = {p.read_text().split(" by ")[1] for p in tmp_path.iterdir()}
    assert (pids == {str(os.getpid())}) == (name == "in-process")


@pytest.mark.parametrize("name", list(EXECUTORS))
def test_a_failing_job_raises_its_error(tmp_path, name):
    with pytest.raises(TicketlabError, match="job 2 refused"):
        EXECUTORS[name]().run(list(range(4)), _Toy(str(tmp_path), fail=2), _Recorder())


def test_a_bug_in_a_worker_comes_back_with_its_traceback(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)failed in a worker process.*ValueError: a bug"):
        ProcessPool(workers=1, threads=1).run([-1], _Toy(str(tmp_path)), _Recorder())


def test_a_worker_that_dies_is_named(tmp_path):
    with pytest.raises(TicketlabError, match=r"worker process running 1 died \(exit code 3"):
        ProcessPool(workers=2, threads=1, poll_seconds=0.1).run([0, 1], _Toy(str(tmp_path), die=1), _Recorder())


def test_ray_is_imported_only_by_its_executor():
    import subprocess
    import sys

    code = "import sys, ticketlab, ticketlab.cli, ticketlab.execution; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_ray_executor_without_ray_names_the_extra(monkeypatch):
    import importlib.util

    from ticketlab.execution.base import make_executor

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(TicketlabError, match=r'--executor ray needs Ray: pip install "ticketlab\[ray\]"'):
        make_executor("ray", 2, 1)
