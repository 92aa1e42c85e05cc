"""A Case Study 2 run's profile: its timed window, cross-checked against getrusage, and the fault-rate onsets.

Part of :mod:`analysis.case2`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

from analysis import profile as pf
from analysis.errors import AnalysisError, Diagnostics
from analysis.load import number

if TYPE_CHECKING:                # a cycle at run time: case2_load calls load_window and thrashing_onsets
    from analysis.case2_load import Case2, Repeat

# The profile against getrusage since registration (work JSONs): pfprof reads the same
# counters (the faults sum exactly), the CPU time is the scheduler's runtime on both sides.
FAULT_TOLERANCE_PCT = 1.0
CPU_TOLERANCE_PCT = 2.0
# The fault rate whose onset is sought: per second over the trailing second (about twenty
# 50 ms ticks), so that one fault in one tick is not a rate.
ONSET_SPAN_S = 1.0


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


def load_window(rep: Repeat, works: list, diag: Diagnostics) -> None:
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


def thrashing_onsets(case: Case2) -> None:
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
