"""Progress for command lines: a redrawn bar on a terminal, a plain line every few seconds in a log."""

from __future__ import annotations

import sys
import time

from unetpp_gui.core.review import JobProgress


class Progress:
    """Progress on stderr: a redrawn bar on a terminal, a plain line every few seconds in a log."""

    def __init__(self, total: int, stream=None, every_s: float = 5.0) -> None:
        # sys.stderr looked up now, not at import: it may have been replaced since (tests, redirection)
        self.stream, self.every_s = stream or sys.stderr, every_s
        self.job = JobProgress(total)
        self.last = self.job.started
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int) -> None:
        job = self.job
        job.done = done
        now = time.monotonic()
        if self.tty:
            width = 30
            bar = "#" * int((done / job.total if job.total else 1.0) * width)
            self.stream.write(f"\r[{bar:<{width}}] {done}/{job.total}  {job.rate:5.1f} slices/s  ETA {job.eta_s:4.0f}s")
            if job.complete:
                self.stream.write("\n")
        elif now - self.last >= self.every_s or job.complete:
            self.last = now
            self.stream.write(f"{done}/{job.total} slices, {job.rate:.1f} slices/s, ETA {job.eta_s:.0f} s\n")
