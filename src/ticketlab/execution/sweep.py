"""Running a sweep: its jobs (one per seed, `experiments.jobs`) by an executor, with one progress
line and the sweep's manifest written before and after, resumable (finished runs are skipped)."""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from pathlib import Path

from ..core.device import environment, resolve_device
from ..core.progress import ProgressLine, format_seconds
from ..experiments.jobs import LOCKS, Job, Runtime, SweepWork
from ..experiments.kinds import get_kind
from ..experiments.manifests import SWEEPS, record_seeds
from ..experiments.spec import SweepSpec, scale_name
from ..training.cost import describe, relative_cost, seconds_per_unit
from ..core.errors import TicketlabError
from ..store.files import ensure_writable, finished, remove_stale_temporaries
from ..store.runs import RUNS
from .base import Executor, make_executor


class _ProgressBar:
    """The sweep's one progress line, fed by an executor: the share of the batch's predicted work done
    (each job weighted by its plan's cost, `training.cost`; jobs without a plan by the mean), what runs
    now, and an ETA from the elapsed time and the projection (`expected` seconds, if any). It times
    each job too (from its first report, which `SweepWork` sends as the job starts, to its end). A log
    (not a TTY) gets a line every `LOG_SECONDS` even while no report arrives."""

    LOG_SECONDS = 15.0

    def __init__(self, weights: list[float | None], label: str, quiet: bool, expected: float | None = None):
        n = len(weights)
        known = [w for w in weights if w is not None]
        fallback = sum(known) / len(known) if known else 1.0
        self.weights = [fallback if w is None else w for w in weights]
        self.fractions = [0.0] * n
        self.notes = [""] * n
        self.current: int | None = None
        self.t0 = time.perf_counter()
        self.started = [math.nan] * n  # seconds from the start to each job's first report
        self.finished_after = [math.nan] * n  # seconds from the start to each job's end
        self.bar = None if quiet else ProgressLine(f"[{label}]", every=self.LOG_SECONDS, expected=expected)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker = None
        if self.bar is not None:
            self.ticker = threading.Thread(target=self._tick, daemon=True)
            self.ticker.start()

    def _tick(self) -> None:
        every = 1.0 if self.bar.tty else self.LOG_SECONDS
        while not self.stop.wait(every):
            self._show(force=not self.bar.tty)

    def update(self, index: int, fraction: float, note: str = "") -> None:
        with self.lock:
            if self.started[index] != self.started[index]:
                self.started[index] = time.perf_counter() - self.t0
            if self.fractions[index] < 1.0:
                self.fractions[index] = min(fraction, 1.0)
            if note:
                self.notes[index], self.current = note, index
        if fraction > 0:  # a job's start report says nothing new to show
            self._show()

    def done(self, index: int) -> None:
        with self.lock:
            self.fractions[index] = 1.0
            self.finished_after[index] = time.perf_counter() - self.t0
        self._show(force=True)

    def durations(self) -> list[float]:
        """Seconds each job ran (NaN: it did not finish)."""
        return [end - (start if start == start else 0.0) for start, end in zip(self.started, self.finished_after)]

    def share_done(self) -> float:
        total = sum(self.weights)
        if total <= 0:
            return sum(f >= 1.0 for f in self.fractions) / max(1, len(self.fractions))
        return sum(w * f for w, f in zip(self.weights, self.fractions)) / total

    def _show(self, force: bool = False) -> None:
        if self.bar is None:
            return
        with self.lock:
            share = self.share_done()
            running = self.current is not None and self.fractions[self.current] < 1.0
            note = self.notes[self.current] if running else ""
            self.bar.update(share, 1.0, note, force=force)

    def close(self) -> None:
        self.stop.set()
        if self.bar is not None:
            self.bar.close()


def plan_jobs(jobs: list[Job], root: Path, device: str, repair: bool = False) -> list[list | None]:
    """Each job's work left (`ExperimentKind.plan`), in job order: a run two jobs need is planned for
    the first (it trains it; the later one finds it done). Finished runs are checked as the jobs will
    check them (`store.files.finished`), so that a damaged one is reported before anything is said or
    written; under `repair` a damaged run counts as work to do (its job removes and retrains it)."""
    claimed: set[str] = set()

    def done(path: Path) -> bool:
        try:
            return finished(path)
        except TicketlabError:
            if repair:
                return False
            raise

    return [get_kind(job.spec.kind).plan(job.spec, job.seed, root, claimed, device, done) for job in jobs]


def job_weights(plans: list[list | None]) -> list[float | None]:
    return [None if plan is None else sum(relative_cost(w) for w in plan) for plan in plans]


def projection(jobs: list[Job], plans: list[list | None], workers: int, threads: int, device: str,
               measure: bool = True) -> tuple[float | None, str]:
    """(projected seconds, one line saying what is to do and how long it should take on this machine).
    Jobs of one seed run one after another (they share its lock); the seeds are dealt to `workers`
    workers, longest first. None seconds: a kind without a plan, or no measurement."""
    counts = describe([w for plan in plans if plan for w in plan])
    seconds_by_seed: dict[tuple, float] = {}
    unknown = any(plan is None for plan in plans)
    units: dict[tuple[str, str], float] = {}
    for job, plan in zip(jobs, plans):
        if not plan:
            continue
        config = job.spec.train_config(job.seed)
        net = (config.net, config.resolved_dataset)  # a net is built for its data set's images
        if net not in units:
            unit = seconds_per_unit(config.net_spec(), device, threads, measure=measure)
            units[net] = math.nan if unit is None else unit
        key = (job.seed, job.spec.train_config(job.seed))
        seconds_by_seed[key] = seconds_by_seed.get(key, 0.0) + units[net] * sum(relative_cost(w) for w in plan)
    loads = [0.0] * max(1, workers)
    for seconds in sorted(seconds_by_seed.values(), reverse=True):
        loads[loads.index(min(loads))] += seconds
    total = max(loads)
    what = (f"{counts['runs']:,} runs to make ({counts['cohorts']:,} cohorts to train, "
            f"{counts['member_steps'] / 1e6:.2f} M member steps; {counts['evaluated_networks']:,} networks to "
            "evaluate at init)")
    if counts["runs"] == 0 and not unknown:
        return 0.0, "nothing to do: every run is in the store"
    if unknown or total != total:
        return None, f"{what}; no projection{' (a kind without a plan)' if unknown else ''}"
    rates = ", ".join(f"{1000 * u:.2f} ms a {net} member step on {dataset}" for (net, dataset), u in units.items())
    return total, (f"{what}; projected {format_seconds(total)} on this machine ({workers} worker"
                   f"{'s' if workers != 1 else ''} of {threads} thread{'s' if threads != 1 else ''}; measured {rates})")


def dry_run(specs: list[SweepSpec], root: Path, runtime: Runtime, workers: int | None = None,
            executor: str = "auto") -> list[str]:
    """What `run_sweeps` would do, without doing it (nothing is written): per sweep its runs, cohorts,
    member steps and networks to evaluate, then the batch's projection on this machine."""
    jobs = [Job(spec, seed) for spec in specs for seed in spec.seed_list]
    device = resolve_device(runtime.device).type
    count = workers or default_workers(seed_groups(jobs))
    plans = plan_jobs(jobs, root, device, runtime.repair)
    lines = []
    for spec in specs:
        mine = [plan for job, plan in zip(jobs, plans) if job.spec is spec]
        if any(plan is None for plan in mine):
            lines.append(f"{spec.name} ({scale_name(spec)}): not known (its kind has no plan)")
            continue
        c = describe([w for plan in mine for w in plan])
        lines.append(f"{spec.name} ({scale_name(spec)}, {spec.seeds} seed{'s' if spec.seeds != 1 else ''}): {c['runs']:,} "
                     f"runs, {c['cohorts']:,} cohorts, {c['member_steps']:,} member steps, "
                     f"{c['evaluated_networks']:,} networks evaluated at init")
    lines.append("in all: " + projection(jobs, plans, count, worker_threads(count, runtime, executor, len(jobs)), device)[1])
    return lines


LONG_RUN_SECONDS = 3600


def announce(seconds: float | None, line: str, label: str) -> None:
    """Print the plan before training; above an hour, so that nobody misses it."""
    print(f"[{label}] to do: {line}", file=sys.stderr, flush=True)
    if seconds is not None and seconds > LONG_RUN_SECONDS:
        rule = "=" * 72
        print(f"{rule}\n  A LONG RUN: about {format_seconds(seconds)} on this machine. It resumes where it stops "
              f"(rerun the same\n  command); --dry-run prints the plan alone; --scale quick is CPU-sized.\n{rule}",
              file=sys.stderr, flush=True)


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


def worker_threads(workers: int, runtime: Runtime, name: str = "auto", n_jobs: int = 2) -> int:
    """The torch threads each worker trains with (`executor_for`'s rule)."""
    import torch

    if name == "local" or (name == "auto" and (workers <= 1 or n_jobs <= 1)):
        return runtime.threads or torch.get_num_threads()
    return runtime.threads or max(1, (os.cpu_count() or 1) // workers)


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
            executor: Executor | None = None, timing: list[float] | None = None,
            weights: list[float | None] | None = None, expected: float | None = None) -> list[float]:
    """Run jobs with `executor` (default: `executor_for`), one progress line (jobs weighted by
    `weights`, their predicted costs, default equal; its ETA starts from `expected` seconds, if
    given); returns the seconds from the start to each job's end. `timing`, if given, gets the seconds
    each job ran (NaN: unfinished), also when a job fails."""
    executor = executor or executor_for(len(jobs), workers, runtime)
    bar = _ProgressBar(weights or [None] * len(jobs), label, quiet, expected)
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
    return run_sweeps([spec], root, runtime, workers, quiet, executor, f"sweep {spec.name} ({scale_name(spec)})")


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
    device = resolve_device(runtime.device)
    env = environment(device)
    count = workers or default_workers(seed_groups(jobs))
    chosen = executor_for(len(jobs), count, runtime, executor)  # an unknown name is refused before any record
    name = label or (f"sweep {specs[0].name} ({scale_name(specs[0])})" if len(specs) == 1 else f"{len(specs)} sweeps")
    plans = plan_jobs(jobs, root, device.type, runtime.repair)
    for spec in specs:
        record_seeds(root, spec, {seed: "running" for seed in spec.seed_list}, env)
    t0 = time.perf_counter()
    ran: list[float] = []
    try:
        check = getattr(chosen, "check", None)  # an executor that can fail to start says so before the plan
        if check is not None:
            check(runtime)
        expected = None
        if not quiet:
            threads = worker_threads(count, runtime, executor, len(jobs))
            expected, line = projection(jobs, plans, count, threads, device.type)
            announce(expected, line, name)
        execute(jobs, root, runtime, count, name, quiet, chosen, timing=ran, weights=job_weights(plans),
                expected=expected)
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
