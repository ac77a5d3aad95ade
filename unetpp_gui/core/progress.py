"""Progress for command lines: a redrawn bar on a terminal, a plain line every few seconds in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress on stderr: a redrawn bar on a terminal, a plain line every few seconds in a log."""

    def __init__(self, total: int, stream=None, every_s: float = 5.0) -> None:
        # sys.stderr looked up now, not at import: it may have been replaced since (tests, redirection)
        self.total, self.stream, self.every_s = total, stream or sys.stderr, every_s
        self.start = self.last = time.monotonic()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        if self.tty:
            width = 30
            bar = "#" * int((done / self.total if self.total else 1.0) * width)
            self.stream.write(f"\r[{bar:<{width}}] {done}/{self.total}  {rate:5.1f} slices/s  ETA {eta:4.0f}s")
            if done >= self.total:
                self.stream.write("\n")
        elif now - self.last >= self.every_s or done >= self.total:
            self.last = now
            self.stream.write(f"{done}/{self.total} slices, {rate:.1f} slices/s, ETA {eta:.0f} s\n")
        self.stream.flush()
