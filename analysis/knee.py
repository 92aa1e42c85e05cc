"""The thrashing point N*: where a sweep of N processes stops fitting in memory.

The rule (``python -m analysis compare --help`` prints this text)
----------------------------------------------------------------
Input: for every N of the sweep, each valid repeat's throughput T (accesses/s
summed over the N processes) and major-fault rate F (major faults of the N
processes per second of the run's wall time).  Per N, T(N) and F(N) are the
medians over its repeats.  Walking the sweep in increasing N, for each N:

  baseline  T0 = median of T(M) over the smaller M of the sweep,
            F0 = median of F(M) over the smaller M (0 for the first N).
  A repeat of N thrashes when both hold:
    (a) paging:   F > max(50/s, 20 x F0)
    (b) collapse: T < 0.5 x T0
        (for the first N there is no baseline; (b) becomes "at least one
        major fault per 1000 accesses", F/T >= 0.001: a major fault costs
        thousands of in-memory accesses, so the run is paging-bound).
  N thrashes when at least half of its repeats thrash.

N* is the smallest N that thrashes and after which no larger N of the sweep
is back in memory (F(M) <= that N's threshold max(50/s, 20 x F0)).  A
thrashing N followed by one that is back in memory is reported as an anomaly
and not taken as the knee; the last N needs no confirmation.  No thrashing
N: N* is null (no knee inside the sweep), and the exit status is still 0.

Why both conditions: under emulation (TCG) in-memory throughput varies 2-3x
between runs with about ten major faults per run, so a throughput-only rule
calls noise a knee; paging brings thousands of major faults per run and
drops throughput 10-1000x.  Condition (a) alone would take the first few
hundred faults of a working set just past memory, before throughput suffers.

Disagreeing repeats: each repeat votes.  With an odd number of repeats the
majority decides (the verdict of the median repeat): one collapsed run of
three is a minority, noted, and N is not the knee.  With an even number a
tie counts as thrashing: a collapse with thousands of major faults is never
emulation noise, so half of the runs collapsing means N is at the edge.
The baselines use per-N medians, so one stray repeat at a smaller N does
not move them.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Tuple, Union

_SEP = "----------------------------------------------------------------\n"
RULE = (__doc__.split(_SEP, 1)[1] if __doc__ else
        "(the rule is in analysis/knee.py: python -OO stripped the docstrings)\n")

FAULT_FLOOR_PER_S = 50.0     # (a): never below this many major faults per second
FAULT_FACTOR = 20.0          # (a): ... nor below this multiple of the baseline rate
COLLAPSE_FRACTION = 0.5      # (b): throughput below this share of the baseline
FIRST_N_FAULTS_PER_ACCESS = 1e-3   # (b) at the first N: paging-bound


@dataclass(frozen=True)
class Sample:
    """One repeat: summed throughput (accesses/s) and major faults per second."""
    throughput: float
    majflt_per_s: float


@dataclass
class Point:
    n: int
    repeats: int
    throughput: float            # median over repeats
    majflt_per_s: float          # median over repeats
    baseline_throughput: Optional[float]   # T0 (None at the first N)
    baseline_majflt_per_s: float           # F0
    fault_threshold: float       # max(floor, factor x F0)
    votes: int                   # repeats that thrash
    thrashes: bool

    @property
    def votes_text(self) -> str:
        return f"{self.votes}/{self.repeats}"


@dataclass
class Knee:
    n: Optional[int]
    points: list[Point] = field(default_factory=list)
    anomalies: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def point(self, n: Optional[int]) -> Optional[Point]:
        for p in self.points:
            if p.n == n:
                return p
        return None


SampleLike = Union[Sample, Tuple[float, float]]


def _sample(s: SampleLike) -> Sample:
    return s if isinstance(s, Sample) else Sample(float(s[0]), float(s[1]))


def repeat_thrashes(s: Sample, baseline_throughput: Optional[float], fault_threshold: float) -> bool:
    if not s.majflt_per_s > fault_threshold:
        return False
    if baseline_throughput is None:
        return s.throughput <= 0 or s.majflt_per_s / s.throughput >= FIRST_N_FAULTS_PER_ACCESS
    return s.throughput < COLLAPSE_FRACTION * baseline_throughput


def find_knee(sweep: Mapping[int, Iterable[SampleLike]]) -> Knee:
    """Apply the rule above to ``{N: [samples of its repeats]}``; N without samples are ignored."""
    data = {int(n): [_sample(s) for s in samples] for n, samples in sweep.items()}
    ns = sorted(n for n, samples in data.items() if samples)
    med_t = {n: statistics.median(s.throughput for s in data[n]) for n in ns}
    med_f = {n: statistics.median(s.majflt_per_s for s in data[n]) for n in ns}
    knee = Knee(n=None)
    for i, n in enumerate(ns):
        smaller = ns[:i]
        t0 = statistics.median(med_t[m] for m in smaller) if smaller else None
        f0 = statistics.median(med_f[m] for m in smaller) if smaller else 0.0
        threshold = max(FAULT_FLOOR_PER_S, FAULT_FACTOR * f0)
        votes = sum(repeat_thrashes(s, t0, threshold) for s in data[n])
        reps = len(data[n])
        knee.points.append(Point(n=n, repeats=reps, throughput=med_t[n], majflt_per_s=med_f[n],
                                 baseline_throughput=t0, baseline_majflt_per_s=f0,
                                 fault_threshold=threshold, votes=votes,
                                 thrashes=2 * votes >= reps))
    for i, p in enumerate(knee.points):
        if 0 < p.votes < p.repeats:
            verdict = "at least half: N thrashes" if p.thrashes else "a minority: N does not thrash"
            knee.notes.append(f"N={p.n}: {p.votes} of {p.repeats} repeats thrashed ({verdict})")
        if not p.thrashes or knee.n is not None:
            continue
        back = [q.n for q in knee.points[i + 1:] if q.majflt_per_s <= p.fault_threshold]
        if back:
            knee.anomalies.append(p.n)
            knee.notes.append(f"N={p.n}: thrashed but N={back[0]} is back in memory "
                              f"(major faults {knee.point(back[0]).majflt_per_s:.1f}/s <= "
                              f"{p.fault_threshold:.1f}/s): anomaly, not the knee")
            continue
        knee.n = p.n
    return knee
