"""How faithful pfprof's ticks are: the share of tick intervals within one jiffy, and the ticks lost."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from analysis.bench.readers import monitor_dropped, stats_delta, sum_known
from analysis.load import read_csv

UNREG = 4                        # profile.csv flag bit 2: written off-tick by "U <pid>"


@dataclass
class Fidelity:
    scope: str                       # "idle" or "N=5"
    n: Optional[int] = None
    knee: Optional[bool] = None      # at N*: whether N* is a knee (False: the largest N)
    profiles: int = 0
    intervals: int = 0
    within: int = 0
    worst_ns: Optional[int] = None
    merged: list = field(default_factory=list)
    resync: list = field(default_factory=list)
    dropped_monitor: list = field(default_factory=list)
    dropped_stats: list = field(default_factory=list)

    @property
    def share_pct(self) -> Optional[float]:
        return 100.0 * self.within / self.intervals if self.intervals else None

    def add_profile(self, path: Path, interval_ns: float, jiffy_ns: float) -> None:
        cols = read_csv(path, {"ts_ns": int, "flags": int})
        ticks = sorted({t for t, f in zip(cols["ts_ns"], cols["flags"]) if not f & UNREG})
        self.profiles += 1
        for a, b in zip(ticks, ticks[1:]):
            d = b - a
            self.intervals += 1
            if abs(d - interval_ns) <= jiffy_ns:
                self.within += 1
            if self.worst_ns is None or abs(d - interval_ns) > abs(self.worst_ns - interval_ns):
                self.worst_ns = d

    def add_counters(self, before: Optional[dict], after: Optional[dict], monitor) -> None:
        self.merged.append(stats_delta(before, after, "ticks_merged"))
        self.resync.append(stats_delta(before, after, "ticks_resync"))
        self.dropped_stats.append(stats_delta(before, after, "records_dropped"))
        self.dropped_monitor.append(monitor_dropped(monitor))

    def dropped(self) -> Optional[int]:
        return sum_known(self.dropped_monitor + self.dropped_stats)

    def json(self) -> dict:
        return {"scope": self.scope, "n": self.n, "knee": self.knee, "profiles": self.profiles,
                "intervals": self.intervals, "within": self.within, "share_pct": self.share_pct,
                "worst_interval_ms": None if self.worst_ns is None else self.worst_ns / 1e6,
                "ticks_merged": sum_known(self.merged), "ticks_resync": sum_known(self.resync),
                "dropped_monitor": sum_known(self.dropped_monitor),
                "dropped_stats": sum_known(self.dropped_stats)}
