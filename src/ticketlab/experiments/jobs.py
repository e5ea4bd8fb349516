"""A sweep's jobs: one per seed, each run by its kind under a lock on that seed's runs.

A job trains or evaluates whatever of its seed's runs is not yet in the store; finished runs are
skipped, so rerunning the same command after a crash or Ctrl-C redoes only unfinished work. A job
holds a lock on its seed's runs (`store.files.holding`), so a second process working on the same runs
waits for the first and then finds them done.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..data import Dataset, load_dataset
from ..store.files import holding
from ..store.runs import run_dir
from .dense import dense_identity
from .kinds import Report, get_kind
from .spec import SweepSpec

LOCKS = "locks"


@dataclass(frozen=True)
class Runtime:
    """How (not what) to run: never part of a run's identity."""

    device: str = "auto"
    data_dir: str | None = None
    download: bool = False
    threads: int | None = None  # torch threads of each worker process (default: cores // workers)
    repair: bool = False  # retrain finished runs whose files no longer match their checksums
    address: str | None = None  # the Ray cluster to join (--executor ray; default: RAY_ADDRESS, else a local instance)
    gpus: float | None = None  # GPUs per Ray task on CUDA, fractional to share one (default: 1)
    ship_runs: bool = False  # Ray tasks return their runs to the driver even when they see its store


@dataclass(frozen=True)
class Job:
    """One seed of one sweep."""

    spec: SweepSpec
    seed: int

    @property
    def label(self) -> str:
        return f"{self.spec.name} seed {self.seed}"


class DataCache:
    """Loads a dataset the first time a job needs it (a job whose runs are all done loads nothing)."""

    def __init__(self, data_dir: str | None, download: bool) -> None:
        self.data_dir, self.download = data_dir, download
        self._cache: dict[str, Dataset] = {}

    def get(self, name: str) -> Dataset:
        if name not in self._cache:
            self._cache[name] = load_dataset(name, self.data_dir, self.download)
        return self._cache[name]


def run_job(job: Job, root: Path, runtime: Runtime, report: Report | None = None) -> None:
    """Everything of one seed of one sweep, by the sweep's kind."""
    config = job.spec.train_config(job.seed)
    # every run of a seed (and net and schedule) hangs off its dense run: one lock for them all
    lock = root / LOCKS / f"{run_dir(root, 'dense', dense_identity(config)).name}.lock"

    def waiting(pid: str) -> None:
        print(f"ticketlab: {job.label}: waiting for process {pid or '?'}, which is writing the same runs in {root}",
              file=sys.stderr, flush=True)

    with holding(lock, waiting):
        get_kind(job.spec.kind).run_job(job.spec, job.seed, root, runtime, report)


@dataclass(frozen=True)
class SweepWork:
    """`run_job` for an executor: picklable, so that a worker process can run it."""

    root: Path
    runtime: Runtime

    def __call__(self, job: Job, report: Report) -> None:
        report(0.0)  # the job starts: the sweep times each job from here
        run_job(job, self.root, self.runtime, report)
