"""The simplest executor: every job one after another in this process."""
from __future__ import annotations

from typing import Any, Sequence

from .base import Progress, Work, register_executor


class InProcess:
    """Every job one after another in this process, with `threads` torch threads if given (0: the
    process's own; a member's bits depend on the thread count), the process's own count put back after."""

    def __init__(self, threads: int = 0):
        self.threads = threads

    def run(self, jobs: Sequence[Any], work: Work, progress: Progress) -> None:
        import torch

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            for index, job in enumerate(jobs):
                work(job, lambda fraction, note="", index=index: progress.update(index, fraction, note))
                progress.done(index)
        finally:
            torch.set_num_threads(before)


register_executor("local", lambda workers, threads: InProcess(threads))
