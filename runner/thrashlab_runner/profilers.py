"""The benchmark's profilers (perf stat, procpoll, pfprof's monitor): their
outputs read back as totals."""
from __future__ import annotations

import subprocess

from .files import read_text

PERF_EVENTS = "minor-faults,major-faults"


def perf_version(perf: str) -> str | None:
    try:
        out = subprocess.run([perf, "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def has_data_line(path: str) -> bool:
    """True once ``path`` holds a line that starts with a digit (after blanks):
    perf's first interval line, procpoll's first row after its header."""
    text = read_text(path, "") or ""
    return any(line.strip()[:1].isdigit() for line in text.splitlines())


def perf_totals(path: str) -> dict:
    """Sums of perf stat -x, interval lines: {"minor-faults": n, "major-faults": n}."""
    totals: dict = {}
    for line in (read_text(path, "") or "").splitlines():
        f = line.strip().split(",")
        if len(f) >= 4 and f[0][:1].isdigit() and f[1].isdigit():
            totals[f[3]] = totals.get(f[3], 0) + int(f[1])
    return totals


def csv_rows(path: str) -> list[dict]:
    lines = (read_text(path, "") or "").splitlines()
    if not lines:
        return []
    head = lines[0].split(",")
    return [dict(zip(head, line.split(","))) for line in lines[1:] if line.count(",") == len(head) - 1]


def poller_totals(path: str) -> tuple[int, int, int]:
    """(samples, minflt, majflt) of a procpoll CSV: totals of each pid's last row."""
    last, stamps = {}, set()
    for row in csv_rows(path):
        last[row["pid"]] = row
        stamps.add(row["ts_ns"])
    return (len(stamps), sum(int(r["minflt"]) for r in last.values()),
            sum(int(r["majflt"]) for r in last.values()))


def profile_totals(path: str, pids: set) -> tuple[int, int, int]:
    """(ticks, minflt, majflt) of a monitor CSV, for the given pids."""
    ticks, minflt, majflt = set(), 0, 0
    for row in csv_rows(path):
        if row["pid"] in pids:
            minflt += int(row["minflt"])
            majflt += int(row["majflt"])
            if not int(row["flags"]) & 4:
                ticks.add(row["ts_ns"])
    return len(ticks), minflt, majflt
