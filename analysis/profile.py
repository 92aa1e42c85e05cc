"""Reading pfprof's profile.csv (workloads/monitor) into per-run totals and per-tick series.

A record (one row) holds what one process did since its previous record:
``minflt``, ``majflt`` and ``cpu_ns`` (the scheduler's runtime of the whole
thread group), stamped with ``ts_ns`` (``ktime_get_ns()``: CLOCK_MONOTONIC of
the guest, the clock ``work`` stamps ``start_mono_ns``/``end_mono_ns`` with,
so the two compare directly) and ``jiffies``.  The records of one tick share
their ``ts_ns`` and ``jiffies``; the record of ``U <pid>`` (flag bit 2) is
written off-tick at unregistration.

What Case Study 2 takes from here (analysis.case2):

- :meth:`Profile.totals`: per pid, the sum of every record, i.e. what the
  process did since it registered: the cross-check against getrusage since
  registration (work-K.json);
- :meth:`Profile.window`: the sums over a time window (the timed phase).  A
  record covers the time since the same pid's previous record, so a record
  straddling an edge of the window is counted in proportion to the part of
  its interval inside (the first record of a registration counts whole at its
  time stamp: its interval starts at the registration, which the profile does
  not hold);
- :meth:`Profile.ticks`: the course's four columns, the records summed per
  ``jiffies`` (ts_ns, jiffies, minor, major, CPU), and :meth:`Profile.series`
  the same for one pid.

Bad input raises :class:`analysis.errors.AnalysisError` naming the file and
the line: a missing column, a truncated or non-numeric row, a negative
count, a process's time stamps going backwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from analysis.errors import AnalysisError
from analysis.load import read_csv

COLUMNS = {"ts_ns": int, "jiffies": int, "pid": int, "minflt": int, "majflt": int, "cpu_ns": int,
           "flags": int}
FLAG_LAST = 1        # last record of a registration (exit or U)
FLAG_FIRST = 2       # first record after registration
FLAG_UNREGISTER = 4  # the registration ended by "U <pid>" (off-tick)


@dataclass(frozen=True)
class Counts:
    minflt: float = 0.0
    majflt: float = 0.0
    cpu_ns: float = 0.0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.minflt + other.minflt, self.majflt + other.majflt, self.cpu_ns + other.cpu_ns)


@dataclass(frozen=True)
class Tick:
    ts_ns: int
    jiffies: int
    minflt: int
    majflt: int
    cpu_ns: int


class Profile:
    """The records of one profile.csv, in file order (the ring's order)."""

    def __init__(self, path: Path, cols: dict[str, list]):
        self.path = path
        self.ts = cols["ts_ns"]
        self.jiffies = cols["jiffies"]
        self.pid = cols["pid"]
        self.minflt = cols["minflt"]
        self.majflt = cols["majflt"]
        self.cpu_ns = cols["cpu_ns"]
        self.flags = cols["flags"]
        # Each record's interval starts at the same pid's previous record (None: the
        # first record of a registration).
        self.prev_ts: list[Optional[int]] = []
        last: dict[int, int] = {}
        for i, (ts, pid, flags) in enumerate(zip(self.ts, self.pid, self.flags)):
            prev = None if flags & FLAG_FIRST else last.get(pid)
            if prev is not None and ts < prev:
                raise AnalysisError(path, i + 2, f"ts_ns {ts} of pid {pid} is before its previous "
                                                 f"record's ({prev})")
            self.prev_ts.append(prev)
            last[pid] = ts

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def pids(self) -> set[int]:
        return set(self.pid)

    def totals(self) -> dict[int, Counts]:
        """Per pid, the sum of all its records (everything since it registered)."""
        out: dict[int, Counts] = {}
        for i, pid in enumerate(self.pid):
            out[pid] = out.get(pid, Counts()) + Counts(self.minflt[i], self.majflt[i], self.cpu_ns[i])
        return out

    def _share(self, i: int, t0: int, t1: int) -> float:
        """The part of record i's interval that lies inside [t0, t1]."""
        ts, prev = self.ts[i], self.prev_ts[i]
        if prev is None or ts == prev:
            return 1.0 if t0 <= ts <= t1 else 0.0
        inside = min(ts, t1) - max(prev, t0)
        return max(0.0, inside) / (ts - prev)

    def window(self, t0: int, t1: int, pids: Optional[Iterable[int]] = None) -> dict[int, Counts]:
        """Per pid, the records' counts inside [t0, t1] (ns), edge records pro rata."""
        wanted = None if pids is None else set(pids)
        out: dict[int, Counts] = {}
        for i, pid in enumerate(self.pid):
            if wanted is not None and pid not in wanted:
                continue
            share = self._share(i, t0, t1)
            if share > 0:
                out[pid] = out.get(pid, Counts()) + Counts(share * self.minflt[i], share * self.majflt[i],
                                                           share * self.cpu_ns[i])
        return out

    def ticks(self, pid: Optional[int] = None) -> list[Tick]:
        """The records summed per jiffies value, in time order (the course's per-tick table);
        only ``pid``'s records when given."""
        groups: dict[int, list[int]] = {}
        for i, j in enumerate(self.jiffies):
            if pid is None or self.pid[i] == pid:
                groups.setdefault(j, []).append(i)
        out = [Tick(ts_ns=min(self.ts[i] for i in idx), jiffies=j,
                    minflt=sum(self.minflt[i] for i in idx), majflt=sum(self.majflt[i] for i in idx),
                    cpu_ns=sum(self.cpu_ns[i] for i in idx)) for j, idx in groups.items()]
        return sorted(out, key=lambda t: (t.ts_ns, t.jiffies))

    def series(self) -> dict[int, list[Tick]]:
        """Per pid, its own records as ticks."""
        return {pid: self.ticks(pid) for pid in sorted(self.pids)}


def read_profile(path: Path) -> Profile:
    """A profile.csv; errors name the file and line.  A file with a header and no record
    is an error too: every registered process has at least its last record."""
    cols = read_csv(path, COLUMNS, nonnegative=tuple(COLUMNS))
    if not cols["ts_ns"]:
        raise AnalysisError(path, None, "no record (a header only)")
    return Profile(path, cols)


def rate_over(ticks: list[Tick], t0: int, t1: int, span_ns: int, key: str = "majflt") -> list[tuple[int, float]]:
    """At each tick inside (t0, t1], ``key`` of the ticks inside the window over the trailing
    ``span_ns``, per second of the span (so the first ticks of the window carry nothing from
    before it, e.g. the fill, and one fault in one tick is not a rate of 20/s)."""
    inside = [t for t in ticks if t0 < t.ts_ns <= t1]
    out = []
    lo = 0
    acc = 0.0
    for t in inside:
        acc += getattr(t, key)
        while inside[lo].ts_ns <= t.ts_ns - span_ns:
            acc -= getattr(inside[lo], key)
            lo += 1
        out.append((t.ts_ns, acc / (span_ns / 1e9)))
    return out
