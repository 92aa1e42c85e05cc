"""Progress lines for long work: elapsed time, which machine, which step.

Plain lines (not a live display) so that CI logs and terminals read the same.
"""
from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, stream=None, start: float | None = None):
        self.stream = stream or sys.stderr
        self.start = start if start is not None else time.monotonic()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, message: str, machine: str | None = None) -> None:
        prefix = f"[{self.elapsed():7.1f}s]"
        who = f" {machine}:" if machine else ""
        with self._lock:
            print(f"{prefix}{who} {message}", file=self.stream, flush=True)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s"
