"""One progress line on stderr: rewritten in place on a terminal, throttled lines in logs."""
from __future__ import annotations

import sys
import time


def format_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class ProgressLine:
    """Shows `label done/total (pct) extra, elapsed, ETA`; at most one log line per `every` s off a tty."""

    def __init__(self, label: str, every: float = 10.0, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.start = time.monotonic()
        self.last = -1e9
        self.width = 0

    def update(self, done: float, total: float, extra: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.2 if self.tty else self.every):
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / done * (total - done) if done > 0 else float("nan")
        eta_text = format_seconds(eta) if eta == eta else "?"
        pct = 100.0 * done / total if total else 100.0
        count = f"{done:g}/{total:g} " if float(done).is_integer() else ""
        text = f"{self.label} {count}({pct:.0f}%) {extra} elapsed {format_seconds(elapsed)}, ETA {eta_text}"
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
