"""The thrashing point N*: where a sweep of N processes stops fitting in memory.

The rule (``python -m analysis compare --help`` prints this text)
----------------------------------------------------------------
Input, for every run (repeat) of every N of the sweep: the summed throughput
T (accesses/s of the N processes added up), the major-fault rate F (major
faults of the N processes per second), and for each process its own
accesses/s and major faults (its work-K.json).  PSI is reported beside the
knee (analysis case2) but takes no part in it.

1. Runs in memory.  A run was in memory when each of its processes took at
   most max(50, 1% of its pages) major faults.  The test looks at no other
   run, so the baseline cannot take in the paging it is meant to detect: in
   memory a process takes 0-2 major faults (its binary), a process that
   pages hundreds to thousands (a starved one 1-4k in an 8 s phase).  A run
   at the edge of memory that paged at full speed (measured: N=4 on the
   256 MiB VM, 0.5-2.5k major faults) is left out of the baseline.

2. The baseline of N: the in-memory runs of the smaller N >= 2 of the
   sweep (N=1 only when no smaller N >= 2 ran in memory, see below).  For
   each such N the medians over its in-memory runs, then
     T0 = median over those N of their T,
     F0 = median over those N of their F,
     P0 = median over those N of the median accesses/s of one process,
     E(N) = min(P0, T0 / N): the speed one of N processes should have in
            memory (they share the CPUs: at a larger N each gets less).
   N=1 is no speed baseline: alone on the machine a process runs 2-3x
   faster in total than any N >= 2 (measured under TCG: 10.6M against
   3.5M accesses/s, 6.4M against 3.7M), so a T0 that took it in called a
   run at 91% of N=3's throughput a collapse.  When N=1 is the only
   in-memory smaller N it gives F0, and (b) is judged as without a
   speed baseline.

3. A run of N thrashes when both hold:
     (a) paging:    F > max(50/s, 20 x F0)
     (b) progress collapsed, either
           sum:     T < 0.5 x T0, or
           starved: at least one process ran below E(N) / 20.
   Without a speed baseline (the first N, or no smaller N >= 2 ran in
   memory) (b) becomes: at least one major fault per 1000 accesses
   (F/T >= 0.001, paging-bound), or a process below 1/20 of the fastest
   one of the same run.  N thrashes when at least half of its runs thrash.

4. N* is the smallest N that thrashes and after which no larger N of the
   sweep is back in memory (F(M) <= that N's threshold max(50/s, 20 x F0),
   F(M) the median over M's runs).  A thrashing N followed by one that is
   back in memory is reported as an anomaly and not taken as the knee; the
   last N needs no confirmation.  No thrashing N: N* is null (no knee inside
   the sweep), and the exit status is still 0.  The knee is known to the
   interval (A, N*], A the largest smaller N of the sweep that did not
   thrash (``thrashing_after``): a sweep with 18 and 20 but no 19 says
   N* in (18, 20].

5. The onset (``onset_n``): the smallest N at which at least half of the
   repeats page (test (a) alone: F above max(50/s, 20 x F0)), whether or
   not progress collapsed.  It is never above N*; between the two the
   machine pages at full speed (reclaim keeps up, or the pages refaulted
   are few), and how far apart they are is a property of the machine
   (swap device, reclaim policy), not of the rule.

Why.  Linux thrashes unfairly: past the available memory the processes that
filled last stay resident and run at full speed while the others starve at
100-3000 accesses/s with thousands of major faults.  The sum hardly drops
(measured, 512 MiB VM: 1.3-3.7M accesses/s at N=11-13 against 0.8-4.8M in
memory) while the slowest process falls 60-1400x below E(N) exactly at the
first N past the available memory, so (b) looks at every process, not only
at the sum.  Under emulation (TCG) in-memory throughput varies 2-3x between
runs with a few major faults each, so no throughput test counts without
(a); and (a) alone is not enough: at the edge of memory a run can refault
thousands of pages at full speed.  Why 1/20: it was chosen on four full
runs (256 and 512 MiB VMs, 36 MiB processes,
tests/fixtures/measured-sweeps.json), where the slowest process of the first
starving N ran at 0.0007-0.016 x E(N) while every in-memory process ran at
0.36 x E(N) or more (E(N) then still took in N=1); 1/100 would have missed
the knee in two runs of the four.  With E(N) from N >= 2 the same runs give
0.0010-0.020 x E(N) against 0.66 or more: a factor of 2.5 below 1/20 and 13
above.  Runs of other labs and sizes, which chose no constant, check the
rule (docs/cases.md, "How N* is decided").

Disagreeing repeats: each repeat votes.  With an odd number of repeats the
majority decides (the verdict of the median repeat): one collapsed run of
three is a minority, noted, and N is not the knee.  With an even number a
tie counts as thrashing: a collapse or a starved process with thousands of
major faults is never emulation noise, so half of the runs collapsing means
N is at the edge.  The baselines use per-N medians, so one stray repeat at
a smaller N does not move them.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union

_SEP = "----------------------------------------------------------------\n"
RULE = (__doc__.split(_SEP, 1)[1] if __doc__ else
        "(the rule is in analysis/knee.py: python -OO stripped the docstrings)\n")

FAULT_FLOOR_PER_S = 50.0     # (a): never below this many major faults per second
FAULT_FACTOR = 20.0          # (a): ... nor below this multiple of the baseline rate
COLLAPSE_FRACTION = 0.5      # (b) sum: throughput below this share of the baseline
STARVED_FRACTION = 0.05      # (b) starved: a process below this share of E(N)
FIRST_N_FAULTS_PER_ACCESS = 1e-3   # (b) without a baseline: paging-bound
IN_MEMORY_FLOOR = 50         # 1.: major faults a process may take in an in-memory run ...
IN_MEMORY_PAGE_SHARE = 0.01  # ... or this share of its pages, whichever is larger
# Python API only: a Sample that does not say whether it ran in memory (no
# per-process fault counts) counts as in memory below this rate: 50 major
# faults in a 20 s run.
IN_MEMORY_RATE_PER_S = 2.5


def in_memory_allowance(pages: Optional[float]) -> float:
    """The most major faults one process of ``pages`` pages may take in an in-memory run."""
    return max(IN_MEMORY_FLOOR, IN_MEMORY_PAGE_SHARE * pages) if pages else float(IN_MEMORY_FLOOR)


def ran_in_memory(majflts: Sequence[float], pages: Sequence[Optional[float]]) -> bool:
    """Rule 1: every process took at most :func:`in_memory_allowance` major faults."""
    return all(m <= in_memory_allowance(p) for m, p in zip(majflts, pages))


@dataclass(frozen=True)
class Sample:
    """One run (repeat) of N processes.

    ``processes``: each process's accesses/s (empty: unknown, the starvation
    test is then skipped for this run).  ``in_memory``: rule 1, from the
    processes' major faults (:func:`ran_in_memory`); None: judged from the
    rate, F <= IN_MEMORY_RATE_PER_S.
    """
    throughput: float
    majflt_per_s: float
    processes: Tuple[float, ...] = ()
    in_memory: Optional[bool] = None

    @property
    def ran_in_memory(self) -> bool:
        if self.in_memory is not None:
            return self.in_memory
        return self.majflt_per_s <= IN_MEMORY_RATE_PER_S

    @property
    def slowest(self) -> Optional[float]:
        return min(self.processes) if self.processes else None


def sample(processes: Sequence[float], majflts: Sequence[float], wall_s: float,
           pages: Union[None, float, Sequence[Optional[float]]] = None) -> Sample:
    """A Sample from per-process accesses/s and major faults, the run's wall time and
    the processes' sizes in pages (one number for all, or one per process)."""
    if pages is None or isinstance(pages, (int, float)):
        pages = [pages] * len(majflts)
    return Sample(throughput=float(sum(processes)), majflt_per_s=float(sum(majflts)) / wall_s,
                  processes=tuple(float(p) for p in processes),
                  in_memory=ran_in_memory(majflts, pages))


@dataclass(frozen=True)
class Baseline:
    """Rule 2 for one N: the reference built from the in-memory runs of ``ns`` (smaller N).

    ``throughput`` (T0) and ``process_throughput`` (P0) are None when there is
    no speed reference: no smaller N ran in memory, or only N=1 did.
    """
    ns: Tuple[int, ...] = ()
    throughput: Optional[float] = None           # T0
    majflt_per_s: float = 0.0                    # F0
    process_throughput: Optional[float] = None   # P0

    @property
    def speed_reference(self) -> bool:
        return self.throughput is not None

    def expected_process(self, n: int) -> Optional[float]:
        """E(N) = min(P0, T0 / N); None without a speed reference."""
        candidates = [v for v in (self.process_throughput,
                                  None if self.throughput is None else self.throughput / n) if v is not None]
        return min(candidates) if candidates else None


@dataclass(frozen=True)
class Verdict:
    """Rule 3 for one run, with the numbers each test compared."""
    paging: bool                 # (a)
    sum_collapsed: bool          # (b) sum (without a speed reference: paging-bound, F/T >= 0.001)
    starved: Optional[int]       # processes under the starvation threshold (None: no per-process data)
    majflt_per_s: float = 0.0
    fault_threshold: float = FAULT_FLOOR_PER_S
    throughput: float = 0.0
    collapse_below: Optional[float] = None     # 0.5 x T0 (None: no speed reference)
    slowest: Optional[float] = None
    starved_below: Optional[float] = None      # E(N)/20, else 1/20 of the run's fastest

    @property
    def collapsed(self) -> bool:
        return self.sum_collapsed or bool(self.starved)

    @property
    def thrashes(self) -> bool:
        return self.paging and self.collapsed

    @property
    def reasons(self) -> list[str]:
        return (["sum"] if self.sum_collapsed else []) + (["starved"] if self.starved else [])

    @property
    def faults_per_access(self) -> Optional[float]:
        return self.majflt_per_s / self.throughput if self.throughput > 0 else None


def judge(s: Sample, baseline_throughput: Optional[float], fault_threshold: float,
          starved_below: Optional[float] = None) -> Verdict:
    """Rule 3 for one run.  ``starved_below``: E(N)/20 in accesses/s; None without a
    speed reference (then 1/20 of the run's fastest process, and (b) sum becomes paging-bound)."""
    paging = s.majflt_per_s > fault_threshold
    collapse_below = None
    if baseline_throughput is None:
        collapsed = s.throughput <= 0 or s.majflt_per_s / s.throughput >= FIRST_N_FAULTS_PER_ACCESS
    else:
        collapse_below = COLLAPSE_FRACTION * baseline_throughput
        collapsed = s.throughput < collapse_below
    starved = limit = None
    if s.processes:
        limit = starved_below if starved_below is not None else STARVED_FRACTION * max(s.processes)
        starved = sum(1 for p in s.processes if p < limit)
    return Verdict(paging=paging, sum_collapsed=collapsed, starved=starved, majflt_per_s=s.majflt_per_s,
                   fault_threshold=fault_threshold, throughput=s.throughput, collapse_below=collapse_below,
                   slowest=s.slowest, starved_below=limit)


def repeat_thrashes(s: Sample, baseline_throughput: Optional[float], fault_threshold: float,
                    starved_below: Optional[float] = None) -> bool:
    return judge(s, baseline_throughput, fault_threshold, starved_below).thrashes


def _margin(value: float, limit: float, above: bool) -> Optional[float]:
    """How many times past its limit a value is (> 1: the test fired)."""
    if above:
        return value / limit if limit > 0 else None
    return limit / value if value > 0 else float("inf")


@dataclass
class Point:
    n: int
    repeats: int
    throughput: float            # median T over the repeats
    majflt_per_s: float          # median F over the repeats
    baseline: Baseline
    fault_threshold: float       # max(floor, factor x F0)
    starved_threshold: Optional[float]   # E(N) / 20 (None: no baseline, the run's fastest / 20)
    verdicts: list[Verdict]
    in_memory: int               # repeats that ran in memory (rule 1)
    slowest: Optional[float]     # median over the repeats of the slowest process's accesses/s
    votes: int                   # repeats that thrash
    thrashes: bool

    @property
    def votes_text(self) -> str:
        return f"{self.votes}/{self.repeats}"

    @property
    def baseline_throughput(self) -> Optional[float]:
        return self.baseline.throughput

    @property
    def baseline_majflt_per_s(self) -> float:
        return self.baseline.majflt_per_s

    @property
    def expected_process(self) -> Optional[float]:
        return self.baseline.expected_process(self.n)

    @property
    def paging_votes(self) -> int:
        return sum(v.paging for v in self.verdicts)

    @property
    def starved(self) -> Optional[float]:
        """Median over the repeats (with per-process data) of the starved processes."""
        counts = [v.starved for v in self.verdicts if v.starved is not None]
        return statistics.median(counts) if counts else None

    @property
    def reasons(self) -> list[str]:
        """Why the thrashing repeats collapsed: "sum", "starved" (each once)."""
        out: list[str] = []
        for v in self.verdicts:
            if v.thrashes:
                out += [r for r in v.reasons if r not in out]
        return sorted(out)

    def reason_details(self) -> list[dict]:
        """The tests that fired in the thrashing repeats, each with the value it compared,
        its limit and the margin (how many times past the limit; medians over those
        repeats): ``paging`` (F against max(50/s, 20 x F0)), then ``sum`` (T under
        0.5 x T0) or, without a speed reference, ``paging_bound`` (F/T from 0.001 up),
        and ``starved`` (the slowest process under E(N)/20, or under 1/20 of its run's
        fastest: ``against``).  Empty when no repeat thrashed."""
        fired = [v for v in self.verdicts if v.thrashes]
        if not fired:
            return []

        def entry(test, values, limits, above, **extra):
            value, limit = statistics.median(values), statistics.median(limits)
            margin = _margin(value, limit, above)
            return {"test": test, "value": value, "limit": limit,
                    "margin": round(margin, 2) if margin is not None and math.isfinite(margin) else None,
                    **extra}

        out = [entry("paging", [v.majflt_per_s for v in fired], [v.fault_threshold for v in fired], True)]
        collapsed = [v for v in fired if v.sum_collapsed]
        if collapsed and self.baseline.speed_reference:
            out.append(entry("sum", [v.throughput for v in collapsed], [v.collapse_below for v in collapsed],
                             False))
        elif collapsed:
            out.append(entry("paging_bound", [float("inf") if v.faults_per_access is None else v.faults_per_access
                                              for v in collapsed],
                             [FIRST_N_FAULTS_PER_ACCESS] * len(collapsed), True))
        starving = [v for v in fired if v.starved]
        if starving:
            out.append(entry("starved", [v.slowest for v in starving], [v.starved_below for v in starving],
                             False, processes=_whole(statistics.median(v.starved for v in starving)),
                             against="E(N)/20" if self.baseline.speed_reference else "fastest/20"))
        return out

    def reasons_text(self) -> str:
        """:meth:`reason_details` in one line."""
        return reasons_text(self.reason_details(), self.n)


@dataclass
class Knee:
    n: Optional[int]
    points: list[Point] = field(default_factory=list)
    anomalies: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def after(self) -> Optional[int]:
        """``thrashing_after``: the largest N of the sweep below N* that did not thrash (it ran
        in memory, or paged without a collapse); N* lies in (after, n].  None without a knee
        or when N* is the first N of the sweep."""
        if self.n is None:
            return None
        below = [p.n for p in self.points if p.n < self.n and not p.thrashes]
        return max(below) if below else None

    @property
    def onset(self) -> Optional[int]:
        """``onset_n`` (rule 5): the smallest N whose repeats page in at least half of the
        runs; None when no N of the sweep paged."""
        for p in self.points:
            if 2 * p.paging_votes >= p.repeats:
                return p.n
        return None

    def point(self, n: Optional[int]) -> Optional[Point]:
        for p in self.points:
            if p.n == n:
                return p
        return None


SampleLike = Union[Sample, Tuple[float, float]]


def _sample(s: SampleLike) -> Sample:
    if isinstance(s, Sample):
        return s
    if len(s) == 3:
        return Sample(float(s[0]), float(s[1]), tuple(float(p) for p in s[2]))
    return Sample(float(s[0]), float(s[1]))


def _median(values: Iterable[float]) -> Optional[float]:
    values = list(values)
    return statistics.median(values) if values else None


def reasons_text(details: Sequence[dict], n: int) -> str:
    """:meth:`Point.reason_details` of N in one line."""
    parts = []
    for d in details:
        m = "" if d.get("margin") is None else f" ({d['margin']:.3g}x)"
        value, limit = d.get("value"), d.get("limit")
        if d["test"] == "paging":
            parts.append(f"paging {value:.1f} major faults/s > {limit:.1f}/s{m}")
        elif d["test"] == "sum":
            parts.append(f"sum {_si(value)} accesses/s < 0.5 x T0 = {_si(limit)}{m}")
        elif d["test"] == "paging_bound":
            shown = "no access" if value is None else f"{1000 * value:.3g} major faults per 1000 accesses"
            parts.append(f"paging-bound {shown} >= 1{m}")
        else:
            parts.append(f"starved {d['processes']:g} of {n}, slowest {_si(value)} accesses/s "
                         f"< {d['against']} = {_si(limit)}{m}")
    return "; ".join(parts)


def _whole(v: float) -> Union[int, float]:
    return int(v) if float(v).is_integer() else v


def _si(v: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def baseline_for(data: Mapping[int, Sequence[Sample]], smaller: Iterable[int]) -> Baseline:
    """Rule 2: the reference from the in-memory runs of the ``smaller`` N >= 2 (of N=1
    only its fault rate, when no smaller N >= 2 ran in memory)."""
    quiet = {m: [s for s in data[m] if s.ran_in_memory] for m in smaller}
    quiet = {m: runs for m, runs in quiet.items() if runs}
    several = sorted(m for m in quiet if m >= 2)
    if not several:
        if 1 not in quiet:
            return Baseline()
        return Baseline(ns=(1,), majflt_per_s=statistics.median(s.majflt_per_s for s in quiet[1]))
    ts, fs, ps = [], [], []
    for m in several:
        ts.append(statistics.median(s.throughput for s in quiet[m]))
        fs.append(statistics.median(s.majflt_per_s for s in quiet[m]))
        procs = [p for s in quiet[m] for p in s.processes]
        if procs:
            ps.append(statistics.median(procs))
    return Baseline(ns=tuple(several), throughput=statistics.median(ts), majflt_per_s=statistics.median(fs),
                    process_throughput=_median(ps))


def find_knee(sweep: Mapping[int, Iterable[SampleLike]]) -> Knee:
    """Apply the rule above to ``{N: [samples of its repeats]}``; N without samples are ignored.

    A sample is a :class:`Sample` (see :func:`sample`), or ``(T, F)``, or
    ``(T, F, per-process accesses/s)``.
    """
    data = {int(n): [_sample(s) for s in samples] for n, samples in sweep.items()}
    ns = sorted(n for n, samples in data.items() if samples)
    knee = Knee(n=None)
    for i, n in enumerate(ns):
        base = baseline_for(data, ns[:i])
        threshold = max(FAULT_FLOOR_PER_S, FAULT_FACTOR * base.majflt_per_s)
        expected = base.expected_process(n)
        starved_below = None if expected is None else STARVED_FRACTION * expected
        verdicts = [judge(s, base.throughput, threshold, starved_below) for s in data[n]]
        votes = sum(v.thrashes for v in verdicts)
        reps = len(data[n])
        knee.points.append(Point(
            n=n, repeats=reps, throughput=statistics.median(s.throughput for s in data[n]),
            majflt_per_s=statistics.median(s.majflt_per_s for s in data[n]), baseline=base,
            fault_threshold=threshold, starved_threshold=starved_below, verdicts=verdicts,
            in_memory=sum(s.ran_in_memory for s in data[n]),
            slowest=_median(s.slowest for s in data[n] if s.slowest is not None),
            votes=votes, thrashes=2 * votes >= reps))
    for i, p in enumerate(knee.points):
        if 0 < p.votes < p.repeats:
            verdict = "at least half: N thrashes" if p.thrashes else "a minority: N does not thrash"
            knee.notes.append(f"N={p.n}: {p.votes} of {p.repeats} repeats thrashed ({verdict})")
        if p.votes == 0 and 2 * p.paging_votes >= p.repeats:
            note = (f"N={p.n}: paging ({p.majflt_per_s:.1f} major faults/s > {p.fault_threshold:.1f}/s) "
                    f"but progress did not collapse: not the knee")
            if p.in_memory == 0:
                note += "; left out of the larger N's baselines"
            knee.notes.append(note)
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
    alone = [str(p.n) for p in knee.points if p.baseline.ns == (1,) and p.paging_votes]
    if alone:
        knee.notes.append(f"N={', '.join(alone)}: paging, and no smaller N >= 2 ran in memory: judged "
                          f"without a speed baseline (N=1 gives only the fault rate F0)")
    return knee
