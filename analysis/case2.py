"""Case Study 2: per machine and N, what the N processes achieved, repeats aggregated.

Which number comes from where, per repeat (``RUN/<machine>/case2/n-NN/r-K/``):

- the timed window: from the earliest ``start_mono_ns`` (the barrier's
  release: every process starts its timed phase right after it) to the latest
  ``end_mono_ns`` of the work JSONs.  work stamps them with CLOCK_MONOTONIC,
  pfprof stamps its records with ``ktime_get_ns()``, the same clock, so the
  window applies to the records directly;
- from profile.csv (analysis.profile), when it passes the cross-check below
  (``source`` "profile"): cpu_util (= ``utilization_cpus``), the CPU time of
  the N processes inside the window over the window, in CPUs (2 vCPUs read
  up to 2.0); majflt_per_s and minflt_per_s, their faults inside the window
  per second of it (records straddling an edge count pro rata);
- the cross-check, every run: each process's records summed (everything
  since it registered) against its getrusage since registration (work JSON:
  ``minflt`` - ``minflt_after_register``, ``majflt`` -
  ``majflt_after_register``, ``utime_s`` + ``stime_s`` -
  ``cpu_before_register_s``, read before the unregistration; the
  ``*_at_unregister`` counters, read right after it, bound the records from
  above), summed over the processes; the differences (``profile_diff_pct``:
  minflt_pct, majflt_pct, cpu_s_pct, how far outside those bounds, in % of
  getrusage) are reported.  Beyond 1% in faults or 2% in CPU the profile is
  not used: the run warns and falls back to getrusage;
- the getrusage fallback (``source`` "getrusage", ``source_reason`` says
  why: profile.csv missing or corrupt, with the file and line; disagreeing;
  no registration baseline or no timed window in the work JSONs): major and
  minor faults per second from ``majflt_timed``/``minflt_timed`` (getrusage
  around the timed phase) over the window; cpu_util from ``utime_s +
  stime_s`` over run.json's ``wall_s`` (lifetime: the work JSONs hold no
  timed-phase CPU); where the work JSONs lack the timed counts, lifetime
  faults over ``wall_s`` (the reason says so);
- from the work JSONs always (the profile does not count accesses):
  throughput, the sum of ``accesses_per_s`` of the N processes' timed
  phases; slowest, the slowest process's (Linux thrashes unfairly: past the
  available memory some processes starve while the others keep their speed,
  so the sum hardly moves and the slowest process shows the collapse);
  in_memory, rule 1 of analysis.knee (each process at most max(50, 1% of its
  pages) major faults, lifetime getrusage; pages: the work JSON's ``pages``,
  else ``mb`` x 1 MiB / page size);
- psi_some_avg10 / psi_full_avg10: the highest PSI memory avg10 (%) in
  psi-samples.csv; psi_some_pct / psi_full_pct: the ``total`` stall time
  (psi-after.txt minus psi-before.txt) as a percentage of ``wall_s``;
- overlap_s: from run.json (how long all N timed phases ran together);
- thrashing_onset_s / thrashing_share: where thrashing starts in the run.
  The major-fault rate of all N processes over the trailing second
  (ONSET_SPAN_S, faults inside the window only), at every tick of the
  window; the machine's in-memory level is the highest such rate of any of
  its in-memory runs (rule 1) read from a profile; the onset is the first
  tick whose rate exceeds the level (seconds since the window's start), the
  share the part of the window above it.  None without a profile, and for
  every run of a machine none of whose in-memory runs has a profile.

Per N the repeats are aggregated as mean, min, max and sample standard
deviation (and the median for throughput, major faults, cpu_util and the
slowest process; the knee rule in analysis.knee uses the medians), with
``source`` "profile", "getrusage" or "mixed" and ``source_counts``.

run.json's ``starved`` (the runner's count of processes under 1% of the
fastest one), where present, is checked against the work JSONs (warning when
they disagree); the analysis itself uses the work JSONs.

Bad input: a repeat whose run.json or any work-K.json is missing or corrupt,
or whose run.json reports a failed process or an OOM kill, is dropped with a
warning naming the file, and listed in ``dropped_repeats`` ({n, repeat,
reason}).  A process the runner stopped at ``case2_timeout`` is not a
failure: its exit code is 124 with its real code, 0, in ``exit_codes_raw``
(work exits 0 after SIGTERM and prints its partial counts with
``"interrupted": true``); the run is kept, marked ``interrupted``, with a
warning, and its numbers are those of the part that ran (the deepest
thrashing runs are the likeliest to time out).  A missing or corrupt
profile.csv only makes that run fall back to getrusage (warning naming the
file and line); bad PSI files only leave that repeat's PSI columns empty
(warning).  No usable repeat at all for a machine is an error, as is a
missing or corrupt case2/params.json (read by compare).
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from analysis import knee
from analysis import profile as pf
from analysis.errors import AnalysisError, Diagnostics
from analysis.load import MIB, Machine, Run, number, read_csv, read_json, read_psi
from analysis.tables import Column

N_DIR = re.compile(r"^n-(\d+)$")
R_DIR = re.compile(r"^r-(\d+)$")

METRICS = ("throughput", "slowest", "cpu_util", "majflt_per_s", "minflt_per_s", "psi_some_avg10", "psi_full_avg10",
           "psi_some_pct", "psi_full_pct", "overlap_s")
MEDIANS = ("throughput", "slowest", "majflt_per_s", "cpu_util")
TIMEOUT_EXIT = 124           # the runner's exit code of a process stopped at the run's timeout
# The profile against getrusage since registration (work JSONs): pfprof reads the same
# counters (the faults sum exactly), the CPU time is the scheduler's runtime on both sides.
FAULT_TOLERANCE_PCT = 1.0
CPU_TOLERANCE_PCT = 2.0
# The fault rate whose onset is sought: per second over the trailing second (about twenty
# 50 ms ticks), so that one fault in one tick is not a rate.
ONSET_SPAN_S = 1.0


@dataclass
class Repeat:
    machine: str
    n: int
    r: int
    path: Path
    throughput: float
    accesses: Optional[float]
    cpu_s: float                   # getrusage: utime+stime at exit, summed (lifetime)
    majflt: float                  # getrusage: major faults at exit, summed (lifetime)
    wall_s: float
    overlap_s: Optional[float]
    work_mb: Optional[float]
    processes: tuple = ()          # each process's accesses_per_s, work-1 first
    process_majflt: tuple = ()     # each process's majflt
    process_pages: tuple = ()      # each process's size in pages (None: unknown)
    pids: tuple = ()               # each process's pid
    psi_some_avg10: Optional[float] = None
    psi_full_avg10: Optional[float] = None
    psi_some_pct: Optional[float] = None
    psi_full_pct: Optional[float] = None
    interrupted: bool = False      # stopped at the run's timeout: partial counts
    # The timed window (barrier release to the last process's end, CLOCK_MONOTONIC ns)
    window_start_ns: Optional[int] = None
    window_end_ns: Optional[int] = None
    # What the window held, from the source below
    source: str = "getrusage"      # "profile" | "getrusage"
    source_reason: Optional[str] = None   # why getrusage (None for the profile)
    window_cpu_s: Optional[float] = None  # None on getrusage: the work JSONs have no timed CPU
    window_majflt: Optional[float] = None
    window_minflt: Optional[float] = None
    # Profile totals since registration against getrusage since registration, in % of getrusage
    profile_diff: Optional[dict] = None
    profile: Optional[pf.Profile] = None
    thrashing_onset_s: Optional[float] = None
    thrashing_share: Optional[float] = None

    @property
    def window_s(self) -> Optional[float]:
        if self.window_start_ns is None or self.window_end_ns is None:
            return None
        return (self.window_end_ns - self.window_start_ns) / 1e9

    @property
    def cpu_util(self) -> float:
        """CPU seconds of the work processes per wall second, in CPUs: over the timed window
        (profile); on getrusage, lifetime CPU over the run's wall time (no timed CPU there)."""
        if self.window_cpu_s is not None and self.window_s:
            return self.window_cpu_s / self.window_s
        return self.cpu_s / self.wall_s

    @property
    def majflt_per_s(self) -> float:
        """Major faults per second of the timed window (profile, else getrusage's majflt_timed);
        lifetime / wall_s only when the work JSONs have no timed counts."""
        if self.window_majflt is not None and self.window_s:
            return self.window_majflt / self.window_s
        return self.majflt / self.wall_s

    @property
    def minflt_per_s(self) -> Optional[float]:
        if self.window_minflt is not None and self.window_s:
            return self.window_minflt / self.window_s
        return None

    @property
    def slowest(self) -> Optional[float]:
        return min(self.processes) if self.processes else None

    @property
    def slowest_pid(self) -> Optional[int]:
        if not self.processes or len(self.pids) != len(self.processes):
            return None
        return self.pids[self.processes.index(min(self.processes))]

    @property
    def in_memory(self) -> bool:
        return knee.ran_in_memory(self.process_majflt, self.process_pages)

    def sample(self) -> knee.Sample:
        return knee.Sample(self.throughput, self.majflt_per_s, tuple(self.processes), self.in_memory)

    def summary(self) -> dict:
        """This run's keys in ``case2 --json`` (``runs`` of its N)."""
        def r(v, digits):
            return None if v is None else round(v, digits)
        return {"repeat": self.r, "source": self.source, "source_reason": self.source_reason,
                "interrupted": self.interrupted, "window_s": r(self.window_s, 3),
                "utilization_cpus": r(self.cpu_util, 4), "majflt_per_s": r(self.majflt_per_s, 2),
                "minflt_per_s": r(self.minflt_per_s, 1), "profile_diff_pct": self.profile_diff,
                "throughput": r(self.throughput, 1), "slowest": r(self.slowest, 1),
                "slowest_pid": self.slowest_pid, "in_memory": self.in_memory,
                "thrashing_onset_s": r(self.thrashing_onset_s, 2),
                "thrashing_share": r(self.thrashing_share, 3)}


@dataclass
class Case2:
    """One machine's sweep: valid repeats by N, and the dropped ones with their reasons."""
    machine: Machine
    repeats: dict[int, list[Repeat]]
    dropped: dict[int, int]
    dropped_repeats: list = field(default_factory=list)   # {"n", "repeat", "reason"}
    fault_level_per_s: Optional[float] = None   # the in-memory level of the major-fault rate

    @property
    def n_values(self) -> list[int]:
        return sorted(n for n, reps in self.repeats.items() if reps)


def _sorted_dirs(parent: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    found = []
    for p in parent.iterdir():
        m = pattern.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def load_machine(run: Run, machine: Machine) -> Case2:
    base = machine.dir / "case2"
    if not base.is_dir():
        raise AnalysisError(base, None, "no such directory (no Case Study 2 results for this machine)")
    ndirs = _sorted_dirs(base, N_DIR)
    if not ndirs:
        raise AnalysisError(base, None, "no n-NN directory")
    repeats: dict[int, list[Repeat]] = {}
    dropped: dict[int, int] = {}
    dropped_repeats: list[dict] = []
    for n, ndir in ndirs:
        if n < 1:
            run.diag.warn(ndir, "N must be at least 1; directory ignored")
            continue
        rdirs = _sorted_dirs(ndir, R_DIR)
        good = []
        for r, rdir in rdirs:
            try:
                good.append(load_repeat(machine, n, r, rdir, run.diag))
            except AnalysisError as e:
                run.diag.warn_error(e, "this repeat is dropped")
                dropped_repeats.append({"n": n, "repeat": r, "reason": str(e)})
        repeats[n] = good
        dropped[n] = len(rdirs) - len(good)
        if not good:
            run.diag.warn(ndir, "no usable repeat; this N is left out")
    if not any(repeats.values()):
        raise AnalysisError(base, None, "no usable repeat (see the warnings above)")
    case = Case2(machine=machine, repeats=repeats, dropped=dropped, dropped_repeats=dropped_repeats)
    _thrashing_onsets(case)
    return case


def _stopped_at_timeout(run_json: dict, rp: Path) -> bool:
    """Whether the runner stopped processes at the timeout (kept); raises AnalysisError for
    a real failure.

    A process the runner stopped at the timeout counts 124 in ``exit_codes`` with its
    real code in ``exit_codes_raw``: work exits 0 after SIGTERM and prints its partial
    counts ("interrupted": true), so it is kept.  Anything else non-zero (a crash, 137
    for SIGKILL/OOM) and any OOM kill drops the repeat."""
    codes = run_json.get("exit_codes")
    raw = run_json.get("exit_codes_raw")
    oom = run_json.get("oom_killed") or 0
    stopped = False
    bad = isinstance(oom, int) and oom > 0
    if isinstance(codes, list):
        for i, c in enumerate(codes):
            if c == 0:
                continue
            real = raw[i] if isinstance(raw, list) and i < len(raw) else None
            if c == TIMEOUT_EXIT and real in (0, None):
                stopped = True
            else:
                bad = True
    if bad:
        extra = f" (raw {raw})" if isinstance(raw, list) and raw != codes else ""
        raise AnalysisError(rp, None, f"exit codes {codes}{extra}, oom_killed {oom}")
    return stopped


def load_repeat(machine: Machine, n: int, r: int, rdir: Path, diag: Diagnostics) -> Repeat:
    """One run; raises AnalysisError (the caller drops it) when run.json or a work JSON is
    missing or corrupt or a process failed.  profile.csv problems only fall back to getrusage."""
    rp = rdir / "run.json"
    run_json = read_json(rp)
    wall = number(run_json, "wall_s", rp)
    if wall <= 0:
        raise AnalysisError(rp, None, f"key 'wall_s': {wall} is not positive")
    overlap = number(run_json, "overlap_s", rp, required=False, minimum=0)
    declared_n = number(run_json, "n", rp, required=False, integer=True)
    if declared_n is not None and declared_n != n:
        raise AnalysisError(rp, None, f"key 'n' is {declared_n} but the directory is {rdir.parent.name}")
    stopped = _stopped_at_timeout(run_json, rp)
    cpu = 0.0
    accesses: Optional[float] = 0.0
    mbs = set()
    procs, majs, pages, works = [], [], [], []
    interrupted = stopped or run_json.get("timed_out") is True
    for k in range(1, n + 1):
        wp = rdir / f"work-{k}.json"
        w = read_json(wp)
        works.append((wp, w))
        procs.append(number(w, "accesses_per_s", wp, minimum=0))
        cpu += number(w, "utime_s", wp, minimum=0) + number(w, "stime_s", wp, minimum=0)
        majs.append(number(w, "majflt", wp, minimum=0))
        acc = number(w, "accesses", wp, required=False, minimum=0)
        accesses = None if acc is None or accesses is None else accesses + acc
        mb = number(w, "mb", wp, required=False, minimum=0)
        if mb is not None:
            mbs.add(mb)
        pages.append(_pages(w, wp, mb, machine.page_size))
        interrupted = interrupted or w.get("interrupted") is True
    _check_starved(run_json, rp, procs, diag)
    if interrupted:
        diag.warn(rp, "the run timed out and its work processes were stopped; kept, their JSONs "
                      "measure the part that ran")
    rep = Repeat(machine=machine.name, n=n, r=r, path=rdir, throughput=sum(procs), accesses=accesses,
                 cpu_s=cpu, majflt=sum(majs), wall_s=wall, overlap_s=overlap,
                 work_mb=mbs.pop() if len(mbs) == 1 else None,
                 processes=tuple(procs), process_majflt=tuple(majs), process_pages=tuple(pages),
                 interrupted=interrupted)
    _load_window(rep, works, diag)
    _load_psi(rep, rdir, diag)
    return rep


# --------------------------------------------------------------------------- the profile

def _window(works: list) -> tuple:
    """The timed window: the earliest ``start_mono_ns`` (the barrier's release: every
    process starts its timed phase right after it) to the latest ``end_mono_ns``."""
    starts, ends, pids = [], [], []
    for wp, w in works:
        starts.append(number(w, "start_mono_ns", wp, minimum=0, integer=True))
        ends.append(number(w, "end_mono_ns", wp, minimum=0, integer=True))
        pids.append(number(w, "pid", wp, minimum=1, integer=True))
    t0, t1 = min(starts), max(ends)
    if t1 <= t0:
        raise AnalysisError(works[0][0], None, f"the timed window is empty (start {t0}, end {t1} ns)")
    return t0, t1, pids


def _since_registration(works: list) -> Optional[tuple]:
    """getrusage since registration, summed over the processes, as (low, high) bounds
    (None: a work JSON has no registration baseline).  work reads getrusage right after
    its "R <pid>" write and again right before its "U <pid>" (low), and once more right
    after it (``*_at_unregister``, high; absent in older runs: high = low): pfprof's
    records of the process sum to a value between the two.  Under thrashing a process can
    fault and reclaim between the read and its last sample (its own code paged out)."""
    low = {"minflt": 0.0, "majflt": 0.0, "cpu_s": 0.0}
    high = dict(low)
    for wp, w in works:
        if any(w.get(key) is None for key in ("minflt_after_register", "majflt_after_register",
                                              "cpu_before_register_s")):
            return None
        ends = {"minflt": number(w, "minflt", wp), "majflt": number(w, "majflt", wp),
                "cpu_s": number(w, "utime_s", wp) + number(w, "stime_s", wp)}
        base = {"minflt": number(w, "minflt_after_register", wp, minimum=0),
                "majflt": number(w, "majflt_after_register", wp, minimum=0),
                "cpu_s": number(w, "cpu_before_register_s", wp, minimum=0)}
        unreg = {"minflt": number(w, "minflt_at_unregister", wp, required=False, minimum=ends["minflt"]),
                 "majflt": number(w, "majflt_at_unregister", wp, required=False, minimum=ends["majflt"]),
                 "cpu_s": number(w, "cpu_at_unregister_s", wp, required=False, minimum=ends["cpu_s"])}
        for k in low:
            low[k] += ends[k] - base[k]
            high[k] += (ends[k] if unreg[k] is None else unreg[k]) - base[k]
    return low, high


def _bounds(low: float, high: float) -> str:
    return f"{low:.6g}" if high == low else f"{low:.6g}..{high:.6g}"


def _outside_pct(ours: float, low: float, high: float) -> float:
    """How far ``ours`` lies outside [low, high], in % of low (0 inside)."""
    if ours < low:
        return _pct(ours, low)
    if ours > high:
        return _pct(ours - (high - low), low)
    return 0.0


def _pct(ours: float, ref: float) -> float:
    if ref == 0:
        return 0.0 if ours == 0 else math.inf
    return 100.0 * (ours - ref) / ref


def _getrusage_window(rep: Repeat, works: list) -> None:
    """The fallback: getrusage's timed-phase counts (majflt_timed, minflt_timed) over the window."""
    maj = [w.get("majflt_timed") for _, w in works]
    mins = [w.get("minflt_timed") for _, w in works]
    if rep.window_s and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in maj):
        rep.window_majflt = float(sum(maj))
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mins):
            rep.window_minflt = float(sum(mins))
    else:
        rep.source_reason += "; no majflt_timed in the work JSONs: lifetime rates over wall_s"


def _load_window(rep: Repeat, works: list, diag: Diagnostics) -> None:
    """Fill the timed window's counts from profile.csv, cross-checked against getrusage;
    on any problem warn and fall back to the work JSONs (``source`` "getrusage", with the reason)."""
    prof_path = rep.path / "profile.csv"
    try:
        t0, t1, pids = _window(works)
        rep.window_start_ns, rep.window_end_ns = t0, t1
    except AnalysisError as e:
        rep.source_reason = f"no timed window: {e}"
        diag.warn_error(e, "no timed window; this run falls back to getrusage")
        _getrusage_window(rep, works)
        return
    rep.pids = tuple(pids)
    try:
        prof = pf.read_profile(prof_path)
        missing = [f"work-{k} (pid {pid})" for k, pid in enumerate(pids, start=1) if pid not in prof.pids]
        if missing:
            raise AnalysisError(prof_path, None, f"no record of {', '.join(missing)}")
        reference = _since_registration(works)
        if reference is None:
            raise AnalysisError(works[0][0], None, "no registration baseline (minflt_after_register, "
                                                   "majflt_after_register, cpu_before_register_s): the "
                                                   "profile cannot be cross-checked")
        totals = prof.totals()
        ours = {"minflt": sum(totals[p].minflt for p in pids), "majflt": sum(totals[p].majflt for p in pids),
                "cpu_s": sum(totals[p].cpu_ns for p in pids) / 1e9}
        low, high = reference
        diff = {f"{k}_pct": round(_outside_pct(ours[k], low[k], high[k]), 3) for k in ("minflt", "majflt", "cpu_s")}
        rep.profile_diff = diff
        off = [f"{k} {ours[k]:.6g} against {_bounds(low[k], high[k])} ({diff[k + '_pct']:+.2f}%)"
               for k, limit in (("minflt", FAULT_TOLERANCE_PCT), ("majflt", FAULT_TOLERANCE_PCT),
                                ("cpu_s", CPU_TOLERANCE_PCT))
               if abs(diff[f"{k}_pct"]) > limit]
        if off:
            raise AnalysisError(prof_path, None, "the profile disagrees with getrusage since registration: "
                                                 + ", ".join(off))
    except AnalysisError as e:
        rep.source_reason = str(e)
        diag.warn_error(e, "this run falls back to getrusage (work JSONs)")
        _getrusage_window(rep, works)
        return
    inside = prof.window(t0, t1, pids)
    counts = pf.Counts()
    for p in pids:
        counts = counts + inside.get(p, pf.Counts())
    rep.source, rep.profile = "profile", prof
    rep.window_cpu_s = counts.cpu_ns / 1e9
    rep.window_majflt = counts.majflt
    rep.window_minflt = counts.minflt


def fault_rate_series(rep: Repeat) -> list[tuple[int, float]]:
    """The run's major-fault rate (all its processes, per second over the trailing
    ONSET_SPAN_S) at each tick of the timed window; empty without a profile."""
    if rep.profile is None:
        return []
    return pf.rate_over(rep.profile.ticks(), rep.window_start_ns, rep.window_end_ns, int(ONSET_SPAN_S * 1e9))


def _thrashing_onsets(case: Case2) -> None:
    """Where in each run thrashing starts: the first time the major-fault rate exceeds the
    in-memory level (the highest rate any in-memory run of this machine reached, rule 1
    of analysis.knee), and the share of the timed window spent above it."""
    quiet = [fault_rate_series(rep) for reps in case.repeats.values() for rep in reps
             if rep.source == "profile" and rep.in_memory]
    quiet = [s for s in quiet if s]
    if not quiet:
        return
    level = max(rate for s in quiet for _, rate in s)
    case.fault_level_per_s = level
    for reps in case.repeats.values():
        for rep in reps:
            series = fault_rate_series(rep)
            if not series:
                continue
            above, prev = 0, rep.window_start_ns
            for ts, rate in series:
                if rate > level:
                    if rep.thrashing_onset_s is None:
                        rep.thrashing_onset_s = (ts - rep.window_start_ns) / 1e9
                    above += ts - prev
                prev = ts
            rep.thrashing_share = above / (rep.window_end_ns - rep.window_start_ns)


def _check_starved(run_json: dict, rp: Path, procs: list, diag: Diagnostics) -> None:
    """Cross-check run.json's ``starved`` (the runner's count of processes under 1% of the
    fastest one) against the work JSONs; the analysis uses the work JSONs either way."""
    try:
        runner = number(run_json, "starved", rp, required=False, minimum=0, integer=True)
    except AnalysisError as e:
        diag.warn_error(e, "not cross-checked (the work JSONs are used)")
        return
    if runner is None or not procs:
        return
    ours = sum(1 for t in procs if t < 0.01 * max(procs))
    if ours != runner:
        diag.warn(rp, f"key 'starved' is {runner} but the work JSONs have {ours} process(es) under 1% "
                      f"of the fastest; the work JSONs are used")


def _pages(w: dict, wp: Path, mb: Optional[float], page_size: int) -> Optional[float]:
    """The process's size in pages: the work JSON's ``pages``, else ``mb`` x 1 MiB / page size
    (the work JSON's ``page_size``, else the machine's)."""
    pages = number(w, "pages", wp, required=False, minimum=0)
    if pages is not None:
        return pages
    if mb is None:
        return None
    ps = number(w, "page_size", wp, required=False, minimum=1)
    return mb * MIB / (ps or page_size)


def _load_psi(rep: Repeat, rdir: Path, diag: Diagnostics) -> None:
    sp = rdir / "psi-samples.csv"
    try:
        cols = read_csv(sp, {"t_s": float, "some_avg10": float, "full_avg10": float})
        if not cols["t_s"]:
            raise AnalysisError(sp, None, "no samples")
        rep.psi_some_avg10 = max(cols["some_avg10"])
        rep.psi_full_avg10 = max(cols["full_avg10"])
    except AnalysisError as e:
        diag.warn_error(e, "PSI avg10 of this repeat left out")
    try:
        before = read_psi(rdir / "psi-before.txt")
        after_path = rdir / "psi-after.txt"
        after = read_psi(after_path)
        for kind in ("some", "full"):
            if kind in before and kind in after:
                delta = after[kind] - before[kind]
                if delta < 0:
                    raise AnalysisError(after_path, None, f"'{kind}' total went backwards")
                setattr(rep, f"psi_{kind}_pct", 100.0 * delta / (rep.wall_s * 1e6))
    except AnalysisError as e:
        diag.warn_error(e, "PSI totals of this repeat left out")


def load(run: Run) -> list[Case2]:
    return [load_machine(run, m) for m in run.machines]


def read_params(case: Case2) -> dict:
    return read_json(case.machine.dir / "case2" / "params.json")


def mem_available_mb(case: Case2) -> Optional[float]:
    """MemAvailable right before case 2 started: case2/params.json ``mem_available_kb``,
    else facts.json's (None when neither is usable)."""
    pp = case.machine.dir / "case2" / "params.json"
    kb = number(read_params(case), "mem_available_kb", pp, required=False)
    if kb is not None and kb > 0:
        return kb / 1024
    return case.machine.mem_available_mb


def work_mb(case: Case2, diag: Diagnostics) -> float:
    """The per-process size: case2/params.json ``work_mb`` (or ``case2_work_mb``)."""
    pp = case.machine.dir / "case2" / "params.json"
    params = read_json(pp)
    for key in ("work_mb", "case2_work_mb"):
        if key in params:
            return number(params, key, pp, minimum=1e-9)
    sizes = {rep.work_mb for reps in case.repeats.values() for rep in reps}
    if len(sizes) == 1 and None not in sizes:
        size = sizes.pop()
        diag.warn(pp, f"missing key 'work_mb'; using the work JSONs' mb ({size:g})")
        return size
    raise AnalysisError(pp, None, "missing key 'work_mb' (and the work JSONs do not agree on 'mb')")


# --------------------------------------------------------------------------- aggregation

def _stats(values: list[float]) -> dict[str, Optional[float]]:
    if not values:
        return {"mean": None, "min": None, "max": None, "sd": None, "median": None}
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None,
            "median": statistics.median(values)}


def aggregate(case: Case2) -> list[dict]:
    rows = []
    for n in case.n_values:
        reps = case.repeats[n]
        row = {"machine": case.machine.name, "n": n, "repeats": len(reps),
               "repeats_dropped": case.dropped.get(n, 0)}
        for metric in METRICS:
            values = [getattr(rep, metric) for rep in reps]
            values = [float(v) for v in values if v is not None and not math.isnan(v)]
            for stat, v in _stats(values).items():
                row[f"{metric}_{stat}"] = v
        row.update(sources(reps))
        row["utilization_cpus"] = row["cpu_util_median"]
        diffs = [rep.profile_diff for rep in reps if rep.profile_diff is not None]
        row["profile_diff_pct"] = ({k: max((d[k] for d in diffs), key=abs) for k in diffs[0]}
                                   if diffs else None)
        row["profile_diff_max_pct"] = (max(abs(v) for v in row["profile_diff_pct"].values())
                                       if diffs else None)
        row["interrupted"] = sum(rep.interrupted for rep in reps)
        row["runs"] = [rep.summary() for rep in reps]
        row["dropped_repeats"] = [d for d in case.dropped_repeats if d["n"] == n]
        rows.append(row)
    return rows


def sources(reps: Sequence[Repeat]) -> dict:
    """Where a group of runs' numbers come from: ``source`` "profile", "getrusage" or
    "mixed", ``source_counts`` ({source: runs}) and the fallbacks' reasons."""
    counts: dict[str, int] = {}
    for rep in reps:
        counts[rep.source] = counts.get(rep.source, 0) + 1
    source = next(iter(counts)) if len(counts) == 1 else "mixed"
    return {"source": source, "source_counts": counts,
            "source_reasons": [f"r-{rep.r}: {rep.source_reason}" for rep in reps if rep.source_reason]}


def rows(cases: list[Case2]) -> list[dict]:
    return [row for case in cases for row in aggregate(case)]


def _machine_columns() -> list[Column]:
    cols = [Column("machine"), Column("n", "N", "int"), Column("repeats", "reps", "int"),
            Column("repeats_dropped", "dropped", kind="int"), Column("source"),
            Column("profile_diff_max_pct", "prof_vs_rusage_%", kind="float", digits=2),
            Column("interrupted", kind="int", human=False),
            Column("utilization_cpus", kind="float", digits=3, human=False)]
    digits = {"throughput": 0, "slowest": 0, "cpu_util": 3, "majflt_per_s": 2, "minflt_per_s": 1,
              "overlap_s": 2}
    for metric in METRICS:
        for stat in ("mean", "min", "max", "sd", "median"):
            if stat == "median" and metric not in MEDIANS:
                continue
            cols.append(Column(f"{metric}_{stat}", kind="float", digits=digits.get(metric, 2), human=False))
    return cols


def columns() -> list[Column]:
    """Text/Markdown show a selection (renamed short); CSV/JSON every statistic."""
    shown = {
        "throughput_mean": ("throughput", "si"), "throughput_min": ("thr_min", "si"),
        "throughput_max": ("thr_max", "si"), "slowest_median": ("slowest", "si"),
        "cpu_util_mean": ("cpu_util", "float"),
        "majflt_per_s_mean": ("majflt/s", "float"), "majflt_per_s_max": ("majflt/s_max", "float"),
        "psi_some_avg10_mean": ("some_avg10", "float"), "psi_full_avg10_mean": ("full_avg10", "float"),
        "psi_some_pct_mean": ("some_%", "float"), "psi_full_pct_mean": ("full_%", "float"),
        "overlap_s_min": ("overlap_s", "float"),
    }
    out = []
    for c in _machine_columns():
        if c.key in shown:
            header, kind = shown[c.key]
            c = Column(c.key, header, kind, c.digits, human=True)
        out.append(c)
    return out


JSON_EXTRA = ("source_counts", "source_reasons", "profile_diff_pct", "runs", "dropped_repeats")

NOTES = [
    "throughput: accesses/s summed over the N processes (mean, min, max over the repeats)",
    "slowest: accesses/s of the slowest process (median over the repeats): it collapses when some "
    "processes starve, even where the sum hardly moves",
    "source: profile (pfprof's records in the timed window, cross-checked against getrusage since "
    "registration), getrusage (the work JSONs: the profile was missing, corrupt or disagreed; the "
    "warnings say why), or mixed over the repeats (--json: source_counts, source_reasons); "
    "prof_vs_rusage_%: the largest difference between the profile and getrusage since registration "
    "(minor, major faults, CPU; % of getrusage) over the repeats (--json: profile_diff_pct)",
    "cpu_util: CPU time of the N processes over the timed window (barrier release to the last "
    "process's end) in CPUs (up to the vCPUs); on getrusage, lifetime CPU / wall time of the run",
    "majflt/s: major faults of the N processes per second of the timed window (mean, max)",
    "some/full_avg10: highest PSI memory avg10 (%) during the run; some/full_%: stall / wall time",
    "overlap_s: how long all N timed phases ran together (min over the repeats)",
]


# --------------------------------------------------------------------------- figure

def plot(run: Run, cases: list[Case2], out_dir: Path) -> list[Path]:
    from analysis import plots
    plt = plots.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    (ax_t, ax_u), (ax_f, ax_p) = axes
    for case in cases:
        colour = case.machine.colour
        label = f"{case.machine.name} ({case.machine.memory_mb:g} MiB)"
        ns = case.n_values
        for ax, metric in ((ax_t, "throughput"), (ax_u, "cpu_util"),
                           (ax_f, "majflt_per_s"), (ax_p, "psi_full_avg10")):
            xs, ys, mx, my = [], [], [], []
            for n in ns:
                vals = [getattr(r, metric) for r in case.repeats[n]]
                vals = [v for v in vals if v is not None]
                xs += [n] * len(vals)
                ys += vals
                if vals:
                    mx.append(n)
                    my.append(statistics.median(vals))
            if metric == "throughput":
                ys = [max(v, 1.0) for v in ys]
                my = [max(v, 1.0) for v in my]
            ax.plot(mx, my, "-o", color=colour, label=label, markersize=4)
            ax.scatter(xs, ys, color=colour, alpha=0.35, s=14, linewidths=0)
        slow = [(n, statistics.median(v)) for n in ns
                if (v := [r.slowest for r in case.repeats[n] if r.slowest is not None])]
        if slow:
            ax_t.plot([n for n, _ in slow], [max(v, 1.0) for _, v in slow], "--", color=colour,
                      marker="v", markersize=4, label=f"{case.machine.name}: slowest process")
    ax_t.set_yscale("log")
    ax_t.set_ylabel("accesses/s (solid: sum over N, dashed: slowest process)")
    ax_u.set_ylabel("CPU utilization (CPU s / wall s)")
    ax_f.set_yscale("symlog", linthresh=1.0)
    ax_f.set_ylim(0, max(ax_f.get_ylim()[1], 10))
    ax_p.set_ylim(0, max(ax_p.get_ylim()[1], 1))
    ax_f.set_ylabel("major faults per second")
    ax_p.set_ylabel("PSI memory full avg10, max (%)")
    for ax in (ax_f, ax_p):
        ax.set_xlabel("N (processes)")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        plots.integer_ticks(ax)
    ax_t.legend(loc="best", fontsize="small")
    fig.suptitle("Case Study 2: lines are medians over repeats, dots single repeats (sums)")
    fig.tight_layout()
    return plots.save(fig, out_dir, "case2")


# --------------------------------------------------------------------------- command

def main(args) -> int:
    from analysis import cli_common
    run = cli_common.open_run(args)
    cases = load(run)
    table = rows(cases)
    fmt = cli_common.fmt(args)
    from analysis.tables import render
    if getattr(args, "series", False):
        from analysis import report_series
        return report_series.main(args, run, cases)
    text = render(table, columns(), fmt, notes=NOTES, extra_json=JSON_EXTRA)
    figures = [] if args.no_plots else plot(run, cases, cli_common.out_dir(args, run))
    cli_common.emit(text, figures, fmt)
    return 0
