"""Executors: how a list of independent jobs gets run, and the registry that names them.

An executor takes the jobs, a picklable `work(job, report)` callable and a `Progress` object, runs
every job, feeds `progress.update(index, fraction, note)` from the jobs' `report(fraction, note="")` and `progress.done(index)`
when one finishes, and returns when all are done. The first job to fail stops the rest (its error is
raised from `run`); so does Ctrl-C. A new way to run jobs (a cluster scheduler, say) is one module
with such a class that registers itself by name (`register_executor`) and is named in
`BUILTIN_EXECUTORS` (or imported by the user's code); nothing above it changes.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

Work = Callable[[Any, Callable[[float], None]], None]


class Progress(Protocol):
    """Where executors report: a job's fraction done in [0, 1] with a note of what it runs, and its end."""

    def update(self, index: int, fraction: float, note: str = "") -> None: ...

    def done(self, index: int) -> None: ...


class Executor(Protocol):
    def run(self, jobs: Sequence[Any], work: Work, progress: Progress) -> None:
        """Run `work(job, report)` for every job; raise the first job's error after stopping the others."""


# name -> factory(workers, threads per worker) -> Executor
ExecutorFactory = Callable[[int, int], Executor]
EXECUTORS: dict[str, ExecutorFactory] = {}
# The built-in executors and the module that registers each, imported when the executor is made.
BUILTIN_EXECUTORS = {"local": "local", "processes": "pool", "ray": "cluster"}


def register_executor(name: str, factory: ExecutorFactory) -> None:
    """Make an executor available by name (`ticketlab sweep --executor NAME`)."""
    EXECUTORS[name] = factory


def executor_names() -> tuple[str, ...]:
    """The executors by name: the built-in ones (local, processes, ray), then any registered."""
    return tuple(dict.fromkeys((*BUILTIN_EXECUTORS, *EXECUTORS)))


def make_executor(name: str, workers: int, threads: int) -> Executor:
    """The executor `name` for `workers` workers of `threads` torch threads each."""
    from ..core.errors import TicketlabError

    if name not in EXECUTORS and name in BUILTIN_EXECUTORS:
        import importlib

        importlib.import_module(f"{__package__}.{BUILTIN_EXECUTORS[name]}")
    if name not in EXECUTORS:
        raise TicketlabError(f"unknown executor {name!r}: choose one of {', '.join(executor_names())}")
    return EXECUTORS[name](workers, threads)
