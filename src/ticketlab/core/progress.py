"""One progress line on stderr: a live bar rewritten in place on a terminal, a line every `every`
seconds in a log (not a TTY)."""
from __future__ import annotations

import sys
import time

BAR_WIDTH = 24


def format_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class ProgressLine:
    """Shows `label [bar] done/total (pct) extra, elapsed, ETA`: on a terminal at most five times a
    second, in a log at most one line per `every` seconds (a caller that wants a line at least that
    often calls `update` on a timer). The ETA is what is left times a rate of seconds per unit of work:
    the elapsed time over what is done, shown once `min_done` of the total is done; or, given the
    `expected` seconds of the whole (a projection), the two together, the projection weighing as
    `PRIOR_SHARE` of the work already done. The first minutes of a run (compiling kernels, loading
    data, warming caches) cost more than their share of work, so alone the elapsed rate overshoots
    early, while the projection, measured on one step alone, tends to undershoot."""

    PRIOR_SHARE = 0.1

    def __init__(self, label: str, every: float = 15.0, stream=None, min_done: float = 0.01,
                 expected: float | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.min_done = min_done
        self.expected = expected if expected is not None and expected > 0 and expected == expected else None
        self.start = time.monotonic()
        self.last = -1e9
        self.width = 0

    def update(self, done: float, total: float, extra: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.2 if self.tty else self.every):
            return
        self.last = now
        elapsed = now - self.start
        share = done / total if total else 1.0
        eta = self.eta(elapsed, share)
        eta_text = format_seconds(eta) if eta == eta else "?"
        count = f"{done:g}/{total:g} " if float(done).is_integer() and total != 1 else ""
        bar = ""
        if self.tty:
            filled = min(BAR_WIDTH, int(BAR_WIDTH * share))
            bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "] "
        extra = f" {extra}" if extra else ""
        text = f"{self.label} {bar}{count}{100.0 * share:.0f}%{extra}, elapsed {format_seconds(elapsed)}, ETA {eta_text}"
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def eta(self, elapsed: float, share: float) -> float:
        """Seconds left (NaN: not known yet) after `elapsed` seconds with `share` of the work done."""
        if self.expected is not None:
            rate = (elapsed + self.PRIOR_SHARE * self.expected) / (share + self.PRIOR_SHARE)
            return rate * max(0.0, 1.0 - share)
        if share <= 0 or share < self.min_done:
            return float("nan")
        return elapsed / share * (1.0 - share)

    def close(self, message: str = "") -> None:
        if self.tty and self.width:
            self.stream.write("\n")
        if message:
            self.stream.write(message + "\n")
        self.stream.flush()
