"""Running a sweep: its jobs (one per seed), run by an executor (`execution.py`), resumable.

A job trains or evaluates whatever of its seed's runs is not yet in the store; finished runs are
skipped, so rerunning the same command after a crash or Ctrl-C redoes only unfinished work. A job
holds a lock on its seed's runs (`store.holding`), so a second process working on the same runs
waits for the first and then finds them done.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.device import environment, resolve_device
from ..execution.pool import Executor, InProcess, ProcessPool
from ..experiments.iterative import Chain, DataCache, ensure_dense, run_chains
from ..core.progress import ProgressLine
from ..core.errors import TicketlabError
from ..store.runs import RUNS, dense_identity, run_dir
from ..store.files import ensure_writable, holding, read_json, remove_stale_temporaries, write_json
from ..experiments.supermask import run_supermask
from ..experiments.spec import SweepSpec, spec_from_record

SWEEPS = "sweeps"
LOCKS = "locks"


@dataclass(frozen=True)
class Runtime:
    """How (not what) to run: never part of a run's identity."""

    device: str = "auto"
    data_dir: str | None = None
    download: bool = False
    threads: int | None = None  # torch threads of each worker process (default: cores // workers)
    repair: bool = False  # retrain finished runs whose files no longer match their checksums


@dataclass(frozen=True)
class Job:
    spec: SweepSpec
    seed: int

    @property
    def label(self) -> str:
        return f"{self.spec.name} seed {self.seed}"


def chains_of(spec: SweepSpec) -> list[Chain]:
    return [Chain(c, m1, m0) for c in spec.criteria for m1 in spec.mask1 for m0 in spec.mask0]


def bases_of(spec: SweepSpec, iterations: int) -> list[str]:
    """The spec's bases, without iteration snapshots the run never gets to (documented behaviour)."""
    return [b for b in spec.bases if not (b.startswith("iterations_") and int(b.split("_")[1]) >= iterations)]


def run_job(job: Job, root: Path, runtime: Runtime, report: Callable[[float], None] | None = None) -> None:
    """Everything of one seed of one sweep."""
    spec = job.spec
    config = spec.train_config(job.seed)
    # every run of a seed (and net and schedule) hangs off its dense run: one lock for them all
    lock = root / LOCKS / f"{run_dir(root, 'dense', dense_identity(config)).name}.lock"

    def waiting(pid: str) -> None:
        print(f"ticketlab: {job.label}: waiting for process {pid or '?'}, which is writing the same runs in {root}",
              file=sys.stderr, flush=True)

    with holding(lock, waiting):
        _run_job_locked(job, config, root, runtime, report)


def _run_job_locked(job: Job, config, root: Path, runtime: Runtime, report: Callable[[float], None] | None) -> None:
    device = resolve_device(runtime.device)
    data = DataCache(runtime.data_dir, runtime.download)
    spec = job.spec
    repair = runtime.repair
    if spec.kind == "iterative":
        run_chains(root, config, chains_of(spec), spec.round_list, device, data, report, repair=repair)
        return
    bases = bases_of(spec, config.resolved().iterations)
    units = len(bases) + 1
    done = [0]

    def sub(fraction: float) -> None:
        if report is not None:
            report((done[0] + fraction) / units)

    ensure_dense(root, config, device, data, sub, repair=repair)
    done[0] += 1
    for base in bases:
        run_supermask(root, config, base, list(spec.criteria), spec.level_list, list(spec.starts), list(spec.dwr), device,
                      data, sub, repair=repair)
        done[0] += 1
    sub(0.0)


def manifest_path(root: Path, spec: SweepSpec) -> Path:
    """OUT/sweeps/<name>_<hash>.json: the hash covers every field but the seed slice, so a sweep of
    the same name with another net (say) gets its own manifest instead of replacing a finished one,
    while slices of one sweep's seeds share theirs."""
    fields = {**dataclasses.asdict(spec), "seeds": None, "first_seed": None, "source": None}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:10]
    return root / SWEEPS / f"{spec.name}_{digest}.json"


def write_manifest(root: Path, spec: SweepSpec, runtime: Runtime, status: str, wall: float | None = None) -> None:
    """What a sweep directory holds, for `ticketlab results`: written before the work and after it."""
    path = manifest_path(root, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"spec": dataclasses.asdict(spec), "status": status, "environment": environment(resolve_device(runtime.device))}
    if wall is not None:
        record["wall_seconds"] = wall
    write_json(path, record)


def read_manifests(root: Path) -> list[dict]:
    """Every sweep manifest of a store; a damaged one is a one-line error naming it and the remedy."""
    folder = root / SWEEPS
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = read_json(path)
            spec_from_record(record["spec"], "its spec")
            if record.get("status") not in MANIFEST_STATUSES:
                raise ValueError(f"unknown status {record.get('status')!r}")
        except (TicketlabError, KeyError, TypeError, ValueError, AttributeError) as e:  # UnreadableFile too
            raise TicketlabError(
                f"sweep manifest {path} is damaged ({e}); delete it and rerun that sweep (finished runs are kept and "
                "not retrained)"
            ) from None
        record["path"] = str(path)
        records.append(record)
    return records


MANIFEST_STATUSES = ("running", "complete", "failed", "interrupted")


def spec_from_manifest(record: dict) -> SweepSpec:
    """The spec a manifest records, checked field by field as a sweep file is."""
    return spec_from_record(record["spec"], record.get("path", "sweep manifest"))


# --- execution ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SweepWork:
    """`run_job` for an executor: picklable, so that a worker process can run it."""

    root: Path
    runtime: Runtime

    def __call__(self, job: Job, report: Callable[[float], None]) -> None:
        run_job(job, self.root, self.runtime, report)


class _ProgressBar:
    """The sweep's one progress line, fed by an executor."""

    def __init__(self, n_jobs: int, label: str, quiet: bool):
        self.fractions = [0.0] * n_jobs
        self.bar = None if quiet else ProgressLine(f"[{label}]")

    def update(self, index: int, fraction: float) -> None:
        if self.fractions[index] < 1.0:
            self.fractions[index] = min(fraction, 1.0)
        self._show()

    def done(self, index: int) -> None:
        self.fractions[index] = 1.0
        self._show(force=True)

    def _show(self, force: bool = False) -> None:
        if self.bar is not None:
            done = sum(f >= 1.0 for f in self.fractions)
            n = len(self.fractions)
            self.bar.update(sum(self.fractions), n, f"jobs {done}/{n} done,", force=force)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def default_workers(n_jobs: int, cores: int | None = None) -> int:
    """Worker processes for n_jobs jobs (seeds); each worker gets cores // workers threads.

    One worker per job while the jobs fit the cores. When they outnumber the cores, the count that
    finishes soonest if a job's time is inversely proportional to its threads (ties: more workers).
    On 2 cores two 1-thread workers train about as fast as one 2-thread process (a 13-member FC
    cohort: 22.7 s each for 1,000 steps, side by side, against 11.6 s), so 5 seeds go to one worker
    of 2 threads (5 x 11.6 s), not to two of 1 (3 x 22.7 s, the last with a core idle)."""
    cores = cores or os.cpu_count() or 1
    if n_jobs <= cores:
        return max(1, n_jobs)
    return min(range(1, cores + 1), key=lambda w: (math.ceil(n_jobs / w) / (cores // w), -w))


def executor_for(n_jobs: int, workers: int, runtime: Runtime) -> Executor:
    """In this process for one worker (or one job), else a pool of worker processes of
    `runtime.threads` (default: cores // workers) torch threads each."""
    if workers <= 1 or n_jobs <= 1:
        return InProcess()
    return ProcessPool(workers, runtime.threads or max(1, (os.cpu_count() or 1) // workers))


def execute(jobs: list[Job], root: Path, runtime: Runtime, workers: int, label: str, quiet: bool = False,
            executor: Executor | None = None) -> float:
    """Run jobs with `executor` (default: `executor_for`), one progress line; returns the wall time."""
    executor = executor or executor_for(len(jobs), workers, runtime)
    bar = _ProgressBar(len(jobs), label, quiet)
    t0 = time.perf_counter()
    try:
        executor.run(jobs, _SweepWork(root, runtime), bar)
    finally:
        bar.close()
    return time.perf_counter() - t0


def run_sweep(spec: SweepSpec, root: Path, runtime: Runtime, workers: int | None = None, quiet: bool = False) -> float:
    """Run (or resume) a sweep into the store at `root`; returns the wall time of this invocation."""
    ensure_writable(root, (RUNS, SWEEPS, LOCKS))
    remove_stale_temporaries(root / RUNS)
    jobs = [Job(spec, seed) for seed in spec.seed_list]
    # A slice of seeds (--first-seed) run after the whole sweep must not shrink its manifest.
    keep = _covered_by_complete_manifest(root, spec)
    if not keep:
        write_manifest(root, spec, runtime, "running")
    try:
        wall = execute(jobs, root, runtime, workers or default_workers(len(jobs)), f"sweep {spec.name} ({spec.scale})", quiet)
    except BaseException as e:
        if not keep:  # say so, for `results`: its finished runs are kept
            with contextlib.suppress(OSError):
                write_manifest(root, spec, runtime, "interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
        raise
    if not keep:
        write_manifest(root, spec, runtime, "complete", wall)
    return wall


def _covered_by_complete_manifest(root: Path, spec: SweepSpec) -> bool:
    """Whether the store already records this sweep as complete for a superset of these seeds."""
    path = manifest_path(root, spec)
    if not path.is_file():
        return False
    try:
        record = read_json(path)
        done = spec_from_manifest(record)
    except (OSError, ValueError, KeyError, TypeError, TicketlabError):  # damaged: this sweep rewrites it
        return False
    same = dataclasses.replace(done, seeds=spec.seeds, first_seed=spec.first_seed) == spec
    return record.get("status") == "complete" and same and set(spec.seed_list) <= set(done.seed_list)
