"""The Ray executor: each job a Ray core task, on a local Ray instance or an existing cluster.

Every job becomes one task with `num_cpus` = its torch threads (set, with the denormal mode, inside
the task: Ray's OMP_NUM_THREADS is not enough) and, on CUDA, `num_gpus` (fractional: several cohorts
share a GPU). A task whose worker or node dies is retried (`max_retries`); the store's per-seed lock
and its build-then-rename runs mean a retry never duplicates a run. Ctrl-C (or the first failing
job) cancels the other tasks. The tasks report their fractions done to a small actor that the driver
drains into the same progress line.

Storage: the driver leaves a token file in the store; a task that reads it sees the driver's store
(a shared filesystem) and writes there in place, as a local sweep does. A task that does not (or
every task, with `Runtime.ship_runs`) works in a private temporary store and returns its finished
run directories as a tar archive (bytes), which the driver publishes into its store, each run in one
rename, skipping runs already there: the store ends as the local executor leaves it. Ray is
imported only when this executor is used (`pip install "ticketlab[ray]"`).
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import TicketlabError
from ..experiments.jobs import SweepWork
from ..store.files import TMP_PREFIX, _alive, _owner, _umask, is_complete, remove_stale_temporaries
from ..store.runs import RUNS
from .base import Progress, Work, register_executor

MAX_RETRIES = 3  # a worker or node that dies this many times for one job fails the sweep
INSTALL_HINT = '--executor ray needs Ray: pip install "ticketlab[ray]"'
TOKEN_PREFIX = ".ticketlab-driver-"
PRIVATE_PREFIX = "ticketlab-ray-"  # + pid: a task's private store under the temporary folder


class RayExecutor:
    """Jobs as Ray tasks of `threads` CPUs each (and `gpus` GPUs each when the runtime is CUDA)."""

    def __init__(self, workers: int, threads: int, poll_seconds: float = 0.5, max_retries: int = MAX_RETRIES):
        self.workers, self.threads, self.poll_seconds, self.max_retries = workers, threads, poll_seconds, max_retries

    def check(self, runtime: Any) -> None:
        """Refuse, at once, a cluster address where nothing listens (`_probe`)."""
        address = getattr(runtime, "address", None) or os.environ.get("RAY_ADDRESS") or None
        if address is not None:
            _probe(address)

    def run(self, jobs: Sequence[Any], work: Work, progress: Progress) -> None:
        import ray

        runtime = getattr(work, "runtime", None)
        started = _connect(ray, getattr(runtime, "address", None), self.workers * self.threads)
        root = work.root if isinstance(work, SweepWork) else None
        token = _leave_token(root) if root is not None else None
        sink = _sink_class(ray).remote()
        task = ray.remote(_task).options(num_cpus=self.threads, num_gpus=_gpus(runtime), max_retries=self.max_retries)
        ship = bool(getattr(runtime, "ship_runs", False))
        refs: dict[Any, int] = {}
        pending: list[Any] = []
        try:
            for index, job in enumerate(jobs):
                ref = task.remote(job, index, work, self.threads, sink, token, ship)
                refs[ref] = index
                pending.append(ref)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=self.poll_seconds)
                for index, fraction, note in ray.get(sink.drain.remote()):
                    progress.update(index, fraction, note)
                for ref in ready:
                    index = refs[ref]
                    packed = _result(ray, ref, jobs[index])
                    if packed is not None and root is not None:
                        publish(root, packed)
                    progress.done(index)
        finally:
            if ray.is_initialized():
                for ref in pending:  # Ctrl-C or a failed job: stop the rest now
                    ray.cancel(ref, force=True)
                ray.kill(sink)
            if token is not None:
                token.unlink(missing_ok=True)
                remove_stale_temporaries(root / RUNS)  # those of this host's killed workers
            if started:
                ray.shutdown()


def _connect(ray, address: str | None, cpus: int) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), reuse a running connection, or start a local
    instance of `cpus` CPUs; returns whether we started (and so must end) the connection."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _probe(address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    if address is None:
        kwargs["num_cpus"] = max(cpus, 1)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise TicketlabError(f"cannot connect to {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                             "check --address (start a cluster with: ray start --head)") from None
    return True


CONNECT_TIMEOUT = 10.0  # seconds for a cluster's address to answer before the sweep is refused


def _probe(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse an address where nothing listens, in one line and within `timeout`: `ray.init` would
    retry a dead address for a minute or more, deaf to SIGTERM meanwhile. "auto" (Ray's own lookup)
    and addresses without a port are left to Ray."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        reason = "nothing answered" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise TicketlabError(f"cannot connect to the Ray cluster at {address}: {reason} within {timeout:g} s; check "
                             "--address (start a cluster with: ray start --head)") from None


def _gpus(runtime: Any) -> float:
    """GPUs per task: the runtime's share when it trains on CUDA (default 1), else none."""
    if runtime is None:
        return 0
    share = getattr(runtime, "gpus", None)
    device = getattr(runtime, "device", "cpu")
    if device == "cpu":
        return 0
    if device == "auto":
        import torch

        if not torch.cuda.is_available() and share is None:
            return 0
    return 1.0 if share is None else float(share)


def _leave_token(root: Path) -> Path:
    """A file only the driver's store holds: a task that reads it back writes the store in place."""
    path = root / f"{TOKEN_PREFIX}{uuid.uuid4().hex}"
    path.write_text(path.name)
    return path


def _sees_store(root: Path, token: Path | None) -> bool:
    try:
        return token is not None and (root / token.name).read_text() == token.name
    except OSError:
        return False


def _task(job: Any, index: int, work: Work, threads: int, sink: Any, token: Path | None, ship: bool) -> bytes | None:
    """One job in a Ray worker: threads and denormal mode first, then the job, in place or shipped."""
    import torch

    from ..core.numerics import flush_denormals

    flush_denormals(check=False)  # a fresh process: before its first parallel op, like the command line
    torch.set_num_threads(threads)

    def report(fraction: float, note: str = "") -> None:
        sink.update.remote(index, fraction, note)

    if not isinstance(work, SweepWork):
        work(job, report)
        return None
    if not ship and _sees_store(work.root, token):
        remove_stale_temporaries(work.root / RUNS)  # a retried job's killed attempt, if it ran here
        work(job, report)
        return None
    _remove_dead_private_stores()
    with tempfile.TemporaryDirectory(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-") as private:
        SweepWork(Path(private), work.runtime)(job, report)
        return pack(Path(private) / RUNS)


def _remove_dead_private_stores() -> None:
    """Private stores of this host's tasks whose worker was killed (a SIGKILL skips their cleanup)."""
    for path in Path(tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*"):
        pid = path.name[len(PRIVATE_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def pack(runs: Path) -> bytes:
    """The finished run directories under `runs` as an uncompressed tar archive (npz files are
    compressed already)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if runs.is_dir():
            for run in sorted(runs.iterdir()):
                if run.is_dir() and not run.name.startswith(TMP_PREFIX) and is_complete(run):
                    tar.add(run, arcname=run.name)
    return buffer.getvalue()


def publish(root: Path, packed: bytes) -> list[str]:
    """Put the runs of a `pack` archive into the store at `root`, each in one rename from a hidden
    temporary directory (as `store.files.building` does), skipping those already finished there;
    returns the names published."""
    runs = root / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    published = []
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r") as tar:
        names = sorted({Path(m.name).parts[0] for m in tar.getmembers()})
        for name in names:
            if name.startswith(".") or is_complete(runs / name):
                continue
            tmp = Path(tempfile.mkdtemp(dir=runs, prefix=f"{TMP_PREFIX}{name}-{_owner()}-"))
            try:
                members = [m for m in tar.getmembers() if Path(m.name).parts[0] == name and m.name != name]
                for m in members:
                    m.name = str(Path(*Path(m.name).parts[1:]))
                tar.extractall(tmp, members=members, filter="data")
                os.chmod(tmp, 0o777 & ~_umask())  # as a plain mkdir would, not mkdtemp's 0700
                os.replace(tmp, runs / name)
                published.append(name)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    return published


def _result(ray, ref: Any, job: Any) -> bytes | None:
    """A finished task's value; its failure as the job's error (a one-line one for a TicketlabError)."""
    label = getattr(job, "label", repr(job))
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, TicketlabError):
            raise TicketlabError(str(cause)) from None
        raise RuntimeError(f"{label} failed in a Ray task:\n{e}") from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as e:
        raise TicketlabError(f"the Ray worker running {label} died {MAX_RETRIES + 1} times ({type(e).__name__}); "
                             "rerun the same command to resume") from None


def _sink_class(ray):
    """The progress actor: tasks add (job index, fraction, note) reports, the driver drains them."""

    @ray.remote(num_cpus=0)
    class ProgressSink:
        def __init__(self) -> None:
            self.events: list[tuple[int, float, str]] = []

        def update(self, index: int, fraction: float, note: str = "") -> None:
            self.events.append((index, fraction, note))

        def drain(self) -> list[tuple[int, float, str]]:
            events, self.events = self.events, []
            return events

    return ProgressSink


def _make(workers: int, threads: int) -> RayExecutor:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise TicketlabError(INSTALL_HINT)
    return RayExecutor(workers, threads)


register_executor("ray", _make)
