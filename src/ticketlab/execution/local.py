"""The simplest executor: every job one after another in this process."""
from __future__ import annotations

from typing import Any, Sequence

from .base import Progress, Work, register_executor


class InProcess:
    """Every job one after another in this process."""

    def run(self, jobs: Sequence[Any], work: Work, progress: Progress) -> None:
        for index, job in enumerate(jobs):
            work(job, lambda fraction, index=index: progress.update(index, fraction))
            progress.done(index)


register_executor("local", lambda workers, threads: InProcess())
