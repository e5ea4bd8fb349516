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
    often calls `update` on a timer). The ETA is the elapsed time scaled by what is left over what is
    done, shown once `min_done` of the total is done."""

    def __init__(self, label: str, every: float = 15.0, stream=None, min_done: float = 0.01) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.min_done = min_done
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
        eta = elapsed / done * (total - done) if done > 0 and share >= self.min_done else float("nan")
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

    def close(self, message: str = "") -> None:
        if self.tty and self.width:
            self.stream.write("\n")
        if message:
            self.stream.write(message + "\n")
        self.stream.flush()
