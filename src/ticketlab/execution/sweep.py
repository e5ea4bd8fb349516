"""Running a sweep: its jobs (one per seed, `experiments.jobs`) by an executor, with one progress
line and the sweep's manifest written before and after, resumable (finished runs are skipped)."""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

from ..core.device import environment, resolve_device
from ..core.progress import ProgressLine
from ..experiments.jobs import LOCKS, Job, Runtime, SweepWork
from ..experiments.manifests import SWEEPS, record_seeds
from ..experiments.spec import SweepSpec
from ..store.files import ensure_writable, remove_stale_temporaries
from ..store.runs import RUNS
from .base import Executor, make_executor


class _ProgressBar:
    """The sweep's one progress line, fed by an executor; it also times each job (from its first report,
    which `SweepWork` sends as the job starts, to its end)."""

    def __init__(self, n_jobs: int, label: str, quiet: bool):
        self.fractions = [0.0] * n_jobs
        self.t0 = time.perf_counter()
        self.started = [math.nan] * n_jobs  # seconds from the start to each job's first report
        self.finished_after = [math.nan] * n_jobs  # seconds from the start to each job's end
        self.bar = None if quiet else ProgressLine(f"[{label}]")

    def update(self, index: int, fraction: float) -> None:
        if self.started[index] != self.started[index]:
            self.started[index] = time.perf_counter() - self.t0
        if self.fractions[index] < 1.0:
            self.fractions[index] = min(fraction, 1.0)
        if fraction > 0:  # a job's start report says nothing new to show
            self._show()

    def done(self, index: int) -> None:
        self.fractions[index] = 1.0
        self.finished_after[index] = time.perf_counter() - self.t0
        self._show(force=True)

    def durations(self) -> list[float]:
        """Seconds each job ran (NaN: it did not finish)."""
        return [end - (start if start == start else 0.0) for start, end in zip(self.started, self.finished_after)]

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


def executor_for(n_jobs: int, workers: int, runtime: Runtime, name: str = "auto") -> Executor:
    """The executor `name` (`base.EXECUTORS`) for `workers` workers of `runtime.threads` (default:
    cores // workers; for "local", this process's count) torch threads each; "auto": in this process for one worker (or one job), else
    a pool of worker processes."""
    if name == "auto":
        name = "local" if workers <= 1 or n_jobs <= 1 else "processes"
    if name == "local":  # this process: its own thread count unless one is asked for
        return make_executor(name, workers, runtime.threads or 0)
    return make_executor(name, workers, runtime.threads or max(1, (os.cpu_count() or 1) // workers))


def execute(jobs: list[Job], root: Path, runtime: Runtime, workers: int, label: str, quiet: bool = False,
            executor: Executor | None = None, timing: list[float] | None = None) -> list[float]:
    """Run jobs with `executor` (default: `executor_for`), one progress line; returns the seconds from
    the start to each job's end. `timing`, if given, gets the seconds each job ran (NaN: unfinished),
    also when a job fails."""
    executor = executor or executor_for(len(jobs), workers, runtime)
    bar = _ProgressBar(len(jobs), label, quiet)
    try:
        executor.run(jobs, SweepWork(root, runtime), bar)
    finally:
        bar.close()
        if timing is not None:
            timing[:] = bar.durations()
    return bar.finished_after


def run_sweep(spec: SweepSpec, root: Path, runtime: Runtime, workers: int | None = None, quiet: bool = False,
              executor: str = "auto") -> float:
    """Run (or resume) a sweep into the store at `root` with the executor named `executor`; returns the
    wall time of this invocation."""
    return run_sweeps([spec], root, runtime, workers, quiet, executor, f"sweep {spec.name} ({spec.scale})")


def seed_groups(jobs: list[Job]) -> int:
    """How many of `jobs` can run at the same time: jobs of one seed (and net and schedule) share that
    seed's dense run and lock (`experiments.jobs.run_job`), so they run one after another."""
    return len({(job.seed, job.spec.train_config(job.seed)) for job in jobs})


def run_sweeps(specs: list[SweepSpec], root: Path, runtime: Runtime, workers: int | None = None, quiet: bool = False,
               executor: str = "auto", label: str | None = None) -> float:
    """Run (or resume) several sweeps as one batch of jobs handed to one executor: a cluster is filled
    by sweeps x seeds at once, and a dense run several of them need is trained once (the first job of
    its seed trains it; the others find it in the store). Jobs are ordered sweep by sweep, so that
    consecutive jobs are of different seeds. Each sweep's manifest records its seeds "running" before
    any work and each "complete" after it, with the seconds its job ran (a sweep's own time, whatever
    else the batch ran); a failed or interrupted batch records its unfinished seeds so. The seeds are
    added to what the manifest holds: a slice of seeds never hides the others. Returns the wall time
    of this invocation."""
    ensure_writable(root, (RUNS, SWEEPS, LOCKS))
    remove_stale_temporaries(root / RUNS)
    jobs = [Job(spec, seed) for spec in specs for seed in spec.seed_list]
    env = environment(resolve_device(runtime.device))
    count = workers or default_workers(seed_groups(jobs))
    chosen = executor_for(len(jobs), count, runtime, executor)  # an unknown name is refused before any record
    for spec in specs:
        record_seeds(root, spec, {seed: "running" for seed in spec.seed_list}, env)
    name = label or (f"sweep {specs[0].name} ({specs[0].scale})" if len(specs) == 1 else f"{len(specs)} sweeps")
    t0 = time.perf_counter()
    ran: list[float] = []
    try:
        execute(jobs, root, runtime, count, name, quiet, chosen, timing=ran)
    except BaseException as e:
        unfinished = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        _record(root, specs, jobs, ran, env, unfinished)
        raise
    _record(root, specs, jobs, ran, env, "complete")
    return time.perf_counter() - t0


def _record(root: Path, specs: list[SweepSpec], jobs: list[Job], ran: list[float], env: dict, unfinished: str) -> None:
    """Each sweep's seeds as the batch left them: complete with its job's seconds, else `unfinished`."""
    for spec in specs:
        statuses, walls = {}, {}
        for job, seconds in zip(jobs, ran or [math.nan] * len(jobs)):
            if job.spec is spec:
                done = seconds == seconds
                statuses[job.seed] = "complete" if done else unfinished
                if done:
                    walls[job.seed] = seconds
        with contextlib.suppress(OSError):  # say so, for `results`: the finished runs are kept either way
            record_seeds(root, spec, statuses, env, walls)
