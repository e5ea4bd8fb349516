"""The process-pool executor: jobs spread over fresh worker processes of this machine.

`ProcessPool` starts its own spawn-context worker processes with explicit task and result queues (no
process-wide state): each worker sets its torch threads and denormal mode before any torch work, and
asks the kernel to kill it when the process that started it dies, so a SIGKILLed sweep leaves no
worker training on. A worker that dies (out of memory, killed) is reported with its exit code.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import signal
import traceback
from typing import Any, Sequence

from ..core.errors import TicketlabError
from .base import Progress, Work, register_executor

class ProcessPool:
    """Jobs spread over `workers` fresh processes of `threads` torch threads each."""

    def __init__(self, workers: int, threads: int, poll_seconds: float = 0.5):
        self.workers, self.threads, self.poll_seconds = workers, threads, poll_seconds

    def run(self, jobs: Sequence[Any], work: Work, progress: Progress) -> None:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")  # fork after torch has started its thread pools can deadlock
        tasks = ctx.Queue()
        for item in enumerate(jobs):
            tasks.put(item)
        count = min(self.workers, len(jobs))
        for _ in range(count):
            tasks.put(None)
        # one pipe per worker, written synchronously: a worker that dies has sent all it said it did
        pipes = [ctx.Pipe(duplex=False) for _ in range(count)]
        procs = [ctx.Process(target=_worker_main, args=(tasks, sender, work, self.threads, os.getpid()), daemon=True)
                 for _, sender in pipes]
        for p in procs:
            p.start()
        for _, sender in pipes:
            sender.close()  # the worker holds its end; the parent's copy would hide its death
        receivers = {receiver: p for (receiver, _), p in zip(pipes, procs)}
        running: dict[Any, int] = {}  # receiver -> the job index its worker is on
        remaining = set(range(len(jobs)))
        try:
            while remaining:
                if not receivers:
                    raise TicketlabError("every worker process ended with jobs left undone; rerun the same command "
                                         "to resume")
                for receiver in wait(list(receivers), timeout=self.poll_seconds):
                    try:
                        kind, index, value = receiver.recv()
                    except EOFError:  # the worker is gone: it finished, or it died mid-job
                        proc = receivers.pop(receiver)
                        proc.join(5)
                        if receiver in running or proc.exitcode not in (0, None):
                            raise _died(proc, jobs[running[receiver]] if receiver in running else None) from None
                        continue
                    if kind == "start":
                        running[receiver] = index
                    elif kind == "progress":
                        progress.update(index, *value)
                    elif kind == "done":
                        running.pop(receiver, None)
                        remaining.discard(index)
                        progress.done(index)
                    else:  # "error"
                        raise _unpickle_error(value, jobs[index])
        finally:
            for p in procs:  # stop running workers now, not after their job
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(5)
            for receiver, _ in pipes:
                receiver.close()
            tasks.close()


def _died(proc, job: Any) -> TicketlabError:
    what = f"running {_label(job)} " if job is not None else ""
    hint = ", out of memory?" if proc.exitcode == -signal.SIGKILL else ""
    return TicketlabError(f"the worker process {what}died (exit code {proc.exitcode}{hint}); rerun the same command "
                          "to resume, perhaps with fewer --workers")


def _label(job: Any) -> str:
    return getattr(job, "label", repr(job))


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), and exit now if it already has.
    Without it a SIGKILLed sweep's workers trained on into the store, then waited forever."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the check below still runs at the start
        pass
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(tasks, results, work: Work, threads: int, parent: int) -> None:
    """A worker's life: take jobs until the sentinel, sending ("start" | "progress" | "done" | "error",
    job index, value) through `results`, its own pipe."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    import torch

    from ..core.numerics import flush_denormals

    flush_denormals(check=False)  # a fresh process: before its first parallel op, like the command line
    torch.set_num_threads(threads)
    while True:
        item = tasks.get()
        if item is None:
            return
        index, job = item
        results.send(("start", index, None))
        try:
            work(job, lambda fraction, note="": results.send(("progress", index, (fraction, note))))
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent
            results.send(("error", index, _pickle_error(e)))
            return
        results.send(("done", index, None))


def _pickle_error(e: BaseException) -> bytes:
    if isinstance(e, TicketlabError):
        try:
            return pickle.dumps(e)
        except Exception:  # noqa: BLE001
            return pickle.dumps(TicketlabError(str(e)))
    return pickle.dumps(RuntimeError("".join(traceback.format_exception(e)).rstrip()))


def _unpickle_error(data: bytes, job: Any) -> BaseException:
    e = pickle.loads(data)
    if isinstance(e, TicketlabError):
        return e
    return RuntimeError(f"{_label(job)} failed in a worker process:\n{e}")


register_executor("processes", lambda workers, threads: ProcessPool(workers, threads))
