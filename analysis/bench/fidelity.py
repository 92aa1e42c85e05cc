"""How faithful pfprof's ticks are: the share of tick intervals within one jiffy, the ticks lost, and
where the lateness comes from (the timer firing late or the work waiting in the workqueue)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from analysis.bench.readers import monitor_dropped, stats_delta, sum_known
from analysis.load import read_csv

UNREG = 4                        # profile.csv flag bit 2: written off-tick by "U <pid>"
# /proc/pfprof/stats counters of the lateness split; a module older than the split has none of them
SPLIT_KEYS = ("timer_late_ns_sum", "queue_delay_ns_sum", "timer_late_ticks_over_jiffy",
              "queue_delay_ticks_over_jiffy")


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
    split: list = field(default_factory=list)   # per run with the split: deltas of ticks + SPLIT_KEYS

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
        deltas = [stats_delta(before, after, k) for k in ("ticks",) + SPLIT_KEYS]
        if None not in deltas:
            self.split.append(deltas)

    def dropped(self) -> Optional[int]:
        return sum_known(self.dropped_monitor + self.dropped_stats)

    def lateness_split(self) -> dict:
        """The split summed over the runs that have it; every value None when none has."""
        sums = [sum(col) for col in zip(*self.split)] if self.split else [None] * (1 + len(SPLIT_KEYS))
        ticks, timer, queue, timer_over, queue_over = sums
        both = None if timer is None else timer + queue
        return {"lateness_split_runs": len(self.split), "lateness_split_ticks": ticks,
                "timer_late_ns_sum": timer, "queue_delay_ns_sum": queue,
                # shares of timer_late + queue_delay, not of lateness_ns_sum: their sum exceeds it
                # when a timer fired before its due time (jiffies are coarser than ns)
                "timer_late_share_pct": 100.0 * timer / both if both else None,
                "queue_delay_share_pct": 100.0 * queue / both if both else None,
                "timer_late_mean_ms": timer / ticks / 1e6 if ticks else None,
                "queue_delay_mean_ms": queue / ticks / 1e6 if ticks else None,
                "timer_late_ticks_over_jiffy": timer_over, "queue_delay_ticks_over_jiffy": queue_over}

    def json(self) -> dict:
        return {"scope": self.scope, "n": self.n, "knee": self.knee, "profiles": self.profiles,
                "intervals": self.intervals, "within": self.within, "share_pct": self.share_pct,
                "worst_interval_ms": None if self.worst_ns is None else self.worst_ns / 1e6,
                "ticks_merged": sum_known(self.merged), "ticks_resync": sum_known(self.resync),
                "dropped_monitor": sum_known(self.dropped_monitor),
                "dropped_stats": sum_known(self.dropped_stats), **self.lateness_split()}
