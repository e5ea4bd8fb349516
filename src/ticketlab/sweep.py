"""Running a sweep: its jobs (one per seed), executed locally in parallel, resumable.

A job trains or evaluates whatever of its seed's runs is not yet in the store; finished runs are
skipped, so rerunning the same command after a crash or Ctrl-C redoes only unfinished work. A job
holds a lock on its seed's runs (`store.holding`), so a second process working on the same runs
waits for the first and then finds them done; worker processes die with the process that started
them (SIGKILL included).
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .device import environment, resolve_device
from .iterative import Chain, DataCache, ensure_dense, run_chains
from .numerics import flush_denormals
from .progress import ProgressLine
from .errors import TicketlabError
from .runstore import RUNS, dense_identity, run_dir
from .store import UnreadableFile, ensure_writable, holding, read_json, remove_stale_temporaries, write_json
from .supermask import run_supermask
from .sweep_spec import SweepSpec

SWEEPS = "sweeps"


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
    lock = root / "locks" / f"{run_dir(root, 'dense', dense_identity(config)).name}.lock"

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
            spec_from_manifest(record)
            if record.get("status") not in MANIFEST_STATUSES:
                raise ValueError(f"unknown status {record.get('status')!r}")
        except (UnreadableFile, KeyError, TypeError, ValueError, AttributeError) as e:
            raise TicketlabError(
                f"sweep manifest {path} is damaged ({e}); delete it and rerun that sweep (finished runs are kept and "
                "not retrained)"
            ) from None
        record["path"] = str(path)
        records.append(record)
    return records


MANIFEST_STATUSES = ("running", "complete", "failed", "interrupted")


def spec_from_manifest(record: dict) -> SweepSpec:
    values = dict(record["spec"])
    for key in ("criteria", "mask1", "mask0", "bases", "starts", "dwr"):
        values[key] = tuple(values[key])
    return SweepSpec(**values)


# --- execution ----------------------------------------------------------------------------------

_QUEUE = None
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), and exit now if it already has.
    Without it a SIGKILLed sweep's workers trained on into the store, then waited forever on a queue."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the check below still runs at the start
        pass
    if os.getppid() != parent:
        os._exit(1)


def _init_worker(queue, threads: int, parent: int) -> None:
    global _QUEUE  # the worker process's own progress channel, set once at its start
    _die_with_parent(parent)
    _QUEUE = queue
    flush_denormals(check=False)  # a fresh process: before its first parallel op, like the command line
    torch.set_num_threads(threads)


def _worker(index: int, job: Job, root: Path, runtime: Runtime) -> int:
    def report(fraction: float) -> None:
        _QUEUE.put((index, fraction))

    run_job(job, root, runtime, report)
    return index


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


def execute(jobs: list[Job], root: Path, runtime: Runtime, workers: int, label: str, quiet: bool = False) -> float:
    """Run jobs (in-process when one worker), one progress line; returns the wall time."""
    bar = None if quiet else ProgressLine(f"[{label}]")
    fractions = [0.0] * len(jobs)
    t0 = time.perf_counter()

    def show(force: bool = False) -> None:
        if bar is not None:
            done = sum(f >= 1.0 for f in fractions)
            bar.update(sum(fractions), len(jobs), f"jobs {done}/{len(jobs)} done,", force=force)

    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):

            def report(fraction: float, i: int = i) -> None:
                fractions[i] = min(fraction, 1.0)
                show()

            run_job(job, root, runtime, report)
            fractions[i] = 1.0
            show(force=True)
    else:
        _execute_pool(jobs, root, runtime, workers, fractions, show)
    if bar is not None:
        bar.close()
    return time.perf_counter() - t0


def _execute_pool(jobs, root, runtime, workers, fractions, show) -> None:
    import concurrent.futures as cf
    import multiprocessing as mp
    import queue as queue_module

    ctx = mp.get_context("spawn")  # fork after torch has started its thread pools can deadlock
    q = ctx.Queue()
    threads = runtime.threads or max(1, (os.cpu_count() or 1) // workers)
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(q, threads, os.getpid())) as pool:
        futures = {pool.submit(_worker, i, job, root, runtime): i for i, job in enumerate(jobs)}
        pending = set(futures)
        try:
            while pending:
                finished, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    f.result()  # re-raises a worker's error here
                    fractions[futures[f]] = 1.0
                while True:
                    try:
                        i, fraction = q.get_nowait()
                    except queue_module.Empty:
                        break
                    if fractions[i] < 1.0:
                        fractions[i] = min(fraction, 1.0)
                show()
        except BaseException:
            for f in pending:
                f.cancel()
            for p in list(pool._processes.values()):  # stop running workers now, not after their job
                p.terminate()
            raise


def run_sweep(spec: SweepSpec, root: Path, runtime: Runtime, workers: int | None = None, quiet: bool = False) -> float:
    """Run (or resume) a sweep into the store at `root`; returns the wall time of this invocation."""
    ensure_writable(root, (RUNS, SWEEPS))
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
    except (OSError, ValueError, KeyError, TypeError):
        return False
    same = dataclasses.replace(done, seeds=spec.seeds, first_seed=spec.first_seed) == spec
    return record.get("status") == "complete" and same and set(spec.seed_list) <= set(done.seed_list)
