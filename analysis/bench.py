"""``bench``: what pfprof costs, how faithful its ticks are, and the testbed's own overhead.

Reads ``RUN/<machine>/bench/`` (written by the benchmark, ``./bench.sh``),
the same run's ``case2/`` sweep and ``RUN/testbed.json`` (formats:
docs/results-format.md, "bench/" and "testbed.json"), prints a plain-text
report and writes the same content as Markdown to ``docs/benchmarks.md`` of
the repository (``--doc FILE`` elsewhere, ``--no-doc`` nowhere; written
atomically).  Every figure is labelled with its machine, RAM and
accelerator: ``small (256 MiB, TCG)``.

Sections
--------
1. Header: run id, date, git revision, the host (testbed.json), each
   machine's RAM, swap, vCPUs, kernel and accelerator, and the benchmark's
   parameters.
2. Overhead, per machine, N and profiler (pfprof, perf, poller): the paired
   ratio wall(profiler) / wall(none) of the same round, then over the rounds
   the mean, its 95% confidence interval (Student t with rounds - 1 degrees
   of freedom, :data:`T95`; 1.96 beyond 30), min and max; and the profiler
   process's CPU time while the work ran (``cpu_during_s``, else its whole
   ``cpu_s``; for pfprof plus the module's own sampling work, ``work_ns_sum``)
   as % of the wall time without a profiler (mean CPU / mean wall of the
   ``none`` cells): on one vCPU every profiler's CPU second is taken from the
   work, so this is the cost without the emulator's timing noise.  A round whose ``none`` cell is missing
   or failed gives no ratio for that N.
3. Work handler time per tick, per machine and N: sum of the pfprof cells'
   ``pfprof.work_ns_sum`` / sum of their ``pfprof.ticks``, in us and as % of
   interval_ms; a least-squares line a + b*N over the N values with R^2:
   the cost is called linear in the number of processes when R^2 >= 0.9
   (judged from 3 N values or more), b is the cost per process.
4. Fidelity: the share of tick intervals within one jiffy (1000/hz ms) of
   interval_ms, |d - interval| <= jiffy, where d are the differences of
   consecutive distinct ``ts_ns`` of the records without flag bit 2 (4: the
   records of ``U <pid>`` are written off-tick).  Idle (bench/idle) and at
   the thrashing point N* of the case2 sweep (analysis.knee's rule; the
   largest N when there is no knee, said so), each profile separately and
   the intervals pooled.  Also the number of intervals, the worst one (the
   farthest from interval_ms), the ticks_merged / ticks_resync deltas of
   /proc/pfprof/stats and the records dropped: the monitor's own count (the
   last "dropped X" of its log tail) and the records_dropped delta.
5. Testbed overhead, per machine: work time = sum of the case2 runs'
   ``wall_s``; sweep wall = case2/params.json ``ended - started``; their
   ratio, and the rest split into settling (sum of ``settle.settle_s``), the
   runner's own time outside the work (sum of ``(ended - runner_started) -
   wall_s - settle_s`` over the runs that have ``runner_started``) and the
   remainder (Ansible, ssh, interpreter start-up between runs).  Overall:
   testbed.json's ``sweep`` step against the work time of the machine with
   the most RAM, and every step's time.
6. Targets: pfprof's mean ratio <= 1.002 and below perf's and the poller's
   (per machine and N; met only when the 95% interval is, else "not shown");
   the same two by the profilers' CPU while the work ran; handler time at the largest N < 0.1% of interval_ms
   and linear in N; fidelity >= 99.9% idle and >= 99% at N*; no record
   dropped; sweep wall <= 1.15 x work time.  Each met or missed, and by how
   much.
7. Discussion: sentences generated from the numbers (an order of the
   profilers by wall time is claimed only when pfprof's interval excludes
   the others' means; the order by CPU beside it).
8. Notes: ``--notes FILE`` (default ``docs/benchmarks-notes.md`` when it
   exists), hand-written Markdown included verbatim in the doc.

Bad input: a run in which no machine has a bench/ directory is an error
(run the benchmark, ./bench.sh); so is a missing or corrupt
bench/params.json, overhead round file, idle run.json or profile.csv,
testbed.json or case2/params.json (``analysis: error: FILE: what``, exit
2).  A cell with ``ok`` false is left out (warning).  A machine without
bench/ is left out of the benchmark tables (warning); without case2/, or a
run without testbed.json, those sections say "not measured in this run".
A case2 profile.csv or pfprof-stats file that is missing or corrupt only
leaves that repeat out of the fidelity figures (warning for a corrupt one).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import re
import statistics
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from analysis import case2 as c2
from analysis import knee as kn
from analysis import tables
from analysis.errors import AnalysisError, Diagnostics
from analysis.load import Machine, Run, number, read_csv, read_json, read_text
from analysis.tables import Column

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal's.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z95 = 1.96

BASELINE = "none"                # the condition without a profiler
UNREG = 4                        # profile.csv flag bit 2: written off-tick by "U <pid>"
TARGET_RATIO = 1.002             # pfprof's mean wall-time ratio
TARGET_HANDLER_PCT = 0.1         # work handler time per tick, % of interval_ms, at the largest N
TARGET_R2 = 0.9                  # "linear in the number of processes"
TARGET_IDLE_PCT = 99.9           # ticks within one jiffy, idle
TARGET_KNEE_PCT = 99.0           # ... at the thrashing point
TARGET_SWEEP_RATIO = 1.15        # sweep wall / work time
NOT_MEASURED = "not measured in this run"
PROFILER_NAMES = {"poller": "the poller"}

_ROUND = re.compile(r"^r-(\d+)\.json$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
_DROPPED = re.compile(r"\bdropped (\d+)")
_INT = re.compile(r"^[+-]?\d+$")


def t95(df: int) -> float:
    """The two-sided 95% t quantile for ``df`` degrees of freedom (1.96 beyond 30)."""
    return T95[df - 1] if 1 <= df <= len(T95) else Z95


# --------------------------------------------------------------------------- small readers

def iso_seconds(value, path: Path, key: str) -> float:
    """An ISO 8601 time (``2026-11-25T23:40:00.12Z``; no zone: UTC) as POSIX seconds."""
    m = _ISO.match(value.strip()) if isinstance(value, str) else None
    bad = AnalysisError(path, None, f"key '{key}': expected an ISO time like 2026-11-25T23:40:00Z, "
                                    f"found {json.dumps(value)}")
    if not m:
        raise bad
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    offset = 0
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    try:
        t = datetime.datetime(y, mo, d, h, mi, s, tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        raise bad from None
    return t + (float(frac) if frac else 0.0) - offset


def optional_time(obj: dict, key: str, path: Path) -> Optional[float]:
    return None if obj.get(key) is None else iso_seconds(obj[key], path, key)


def read_stats(path: Path) -> dict[str, int]:
    """A copy of /proc/pfprof/stats: ``key value`` lines; the integer values."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise AnalysisError(path, lineno, f"expected 'key value', found {line.strip()!r}")
        if _INT.match(parts[1]):
            out[parts[0]] = int(parts[1])
    return out


def stats_dict(obj: dict, key: str, path: Path) -> Optional[dict[str, int]]:
    """A parsed stats object inside a JSON file (its integer values), None when absent."""
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise AnalysisError(path, None, f"key '{key}': expected an object of counters")
    return {k: x for k, x in v.items() if isinstance(x, int) and not isinstance(x, bool)}


def stats_delta(before: Optional[dict], after: Optional[dict], key: str) -> Optional[int]:
    if before is None or after is None or key not in before or key not in after:
        return None
    return after[key] - before[key]


def monitor_dropped(monitor) -> Optional[int]:
    """The monitor's count of dropped records: the last "dropped X" of its log tail."""
    tail = monitor.get("log_tail") if isinstance(monitor, dict) else None
    found = _DROPPED.findall(tail) if isinstance(tail, str) else []
    return int(found[-1]) if found else None


def _sum_known(values: Sequence[Optional[float]]):
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _in(path: Path, what: str, e: AnalysisError) -> AnalysisError:
    """Re-raise a key error of one element of a list with the element named."""
    return AnalysisError(path, e.line, f"{what}: {e.what}")


# --------------------------------------------------------------------------- fidelity

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
        return _sum_known(self.dropped_monitor + self.dropped_stats)

    def json(self) -> dict:
        return {"scope": self.scope, "n": self.n, "knee": self.knee, "profiles": self.profiles,
                "intervals": self.intervals, "within": self.within, "share_pct": self.share_pct,
                "worst_interval_ms": None if self.worst_ns is None else self.worst_ns / 1e6,
                "ticks_merged": _sum_known(self.merged), "ticks_resync": _sum_known(self.resync),
                "dropped_monitor": _sum_known(self.dropped_monitor),
                "dropped_stats": _sum_known(self.dropped_stats)}


# --------------------------------------------------------------------------- bench/

@dataclass
class Cell:
    path: Path
    round: int
    n: int
    condition: str
    wall_s: float
    cpu_s: Optional[float] = None
    ticks: Optional[int] = None
    work_ns_sum: Optional[int] = None
    records_dropped: Optional[int] = None


@dataclass
class Bench:
    machine: Machine
    label: str
    params: dict
    interval_ms: float
    hz: float
    rounds_planned: Optional[int]
    rounds: list = field(default_factory=list)
    cells: list = field(default_factory=list)
    idle: Optional[Fidelity] = None
    idle_handler: Optional[tuple] = None      # (us per tick, ticks) from the idle stats deltas
    overhead_dir: Optional[Path] = None

    @property
    def interval_ns(self) -> float:
        return self.interval_ms * 1e6

    @property
    def jiffy_ns(self) -> float:
        return 1e9 / self.hz

    @property
    def n_values(self) -> list[int]:
        planned = [n for n in self.params.get("processes") or [] if isinstance(n, int)]
        return sorted(set(planned) | {c.n for c in self.cells})

    @property
    def profilers(self) -> list[str]:
        planned = [c for c in self.params.get("conditions") or [] if isinstance(c, str)]
        seen = sorted({c.condition for c in self.cells} - set(planned))
        return [c for c in planned + seen if c != BASELINE]


def load_bench(run: Run, machine: Machine, label: str) -> Bench:
    base = machine.dir / "bench"
    pp = base / "params.json"
    params = read_json(pp)
    interval = number(params, "interval_ms", pp, minimum=1e-9)
    hz = number(params, "hz", pp, minimum=1)
    rounds = number(params, "rounds", pp, required=False, minimum=1, integer=True)
    for key in ("processes", "conditions"):
        if key in params and not isinstance(params[key], list):
            raise AnalysisError(pp, None, f"key '{key}': expected a list")
    b = Bench(machine=machine, label=label, params=params, interval_ms=interval, hz=hz, rounds_planned=rounds)
    _load_overhead(run, b, base / "overhead")
    _load_idle(run, b, base / "idle")
    return b


def _load_overhead(run: Run, b: Bench, odir: Path) -> None:
    if not odir.is_dir():
        run.diag.warn(odir, "no such directory; overhead and handler time not measured for this machine")
        return
    b.overhead_dir = odir
    files = sorted((int(m.group(1)), p) for p in odir.iterdir() if (m := _ROUND.match(p.name)))
    if not files:
        run.diag.warn(odir, "no r-NN.json; overhead and handler time not measured for this machine")
    for _, path in files:
        obj = read_json(path)
        rnd = number(obj, "round", path, minimum=1, integer=True)
        if rnd in b.rounds:
            raise AnalysisError(path, None, f"round {rnd} appears in two files")
        b.rounds.append(rnd)
        cells = obj.get("cells")
        if not isinstance(cells, list):
            raise AnalysisError(path, None, "key 'cells': expected a list of cells")
        seen = set()
        for i, raw in enumerate(cells, start=1):
            cell = _cell(path, rnd, i, raw, run.diag)
            if cell is None:
                continue
            if (cell.n, cell.condition) in seen:
                raise AnalysisError(path, None, f"cell {i}: a second cell for N={cell.n} {cell.condition}")
            seen.add((cell.n, cell.condition))
            b.cells.append(cell)
    if b.rounds_planned is not None and files and len(b.rounds) != b.rounds_planned:
        run.diag.warn(odir, f"{len(b.rounds)} round file(s), params.json says rounds {b.rounds_planned}")


def _cell(path: Path, rnd: int, i: int, raw, diag: Diagnostics) -> Optional[Cell]:
    what = f"cell {i}"
    if not isinstance(raw, dict):
        raise AnalysisError(path, None, f"{what}: expected an object")
    try:
        n = number(raw, "n", path, minimum=1, integer=True)
        cond = raw.get("condition")
        if not isinstance(cond, str) or not cond:
            raise AnalysisError(path, None, f"key 'condition': expected a name, found {json.dumps(cond)}")
        ok = raw.get("ok")
        if not isinstance(ok, bool):
            raise AnalysisError(path, None, f"key 'ok': expected true or false, found {json.dumps(ok)}")
        if not ok:
            diag.warn(path, f"{what} (N={n} {cond}) failed (ok false, exit codes "
                            f"{raw.get('exit_codes')}); left out")
            return None
        wall = number(raw, "wall_s", path)
        if wall <= 0:
            raise AnalysisError(path, None, f"key 'wall_s': {wall} is not positive")
        cell = Cell(path=path, round=rnd, n=n, condition=cond, wall_s=wall)
        prof = raw.get("profiler")
        if prof is not None:
            if not isinstance(prof, dict):
                raise AnalysisError(path, None, "key 'profiler': expected an object or null")
            # while the work ran (cpu_during_s), else the process's whole life
            during = number(prof, "cpu_during_s", path, required=False, minimum=0)
            cell.cpu_s = during if during is not None else number(prof, "cpu_s", path, required=False, minimum=0)
        pf = raw.get("pfprof")
        if pf is not None:
            if not isinstance(pf, dict):
                raise AnalysisError(path, None, "key 'pfprof': expected an object or null")
            cell.ticks = number(pf, "ticks", path, required=False, minimum=0, integer=True)
            cell.work_ns_sum = number(pf, "work_ns_sum", path, required=False, minimum=0, integer=True)
            cell.records_dropped = number(pf, "records_dropped", path, required=False, minimum=0,
                                          integer=True)
            # pfprof's cost is the monitor's CPU plus the module's sampling work in the kernel
            if cell.cpu_s is not None and cell.work_ns_sum is not None:
                cell.cpu_s += cell.work_ns_sum / 1e9
    except AnalysisError as e:
        raise _in(path, what, e) from None
    return cell


def _load_idle(run: Run, b: Bench, idir: Path) -> None:
    if not idir.is_dir():
        run.diag.warn(idir, "no such directory; idle fidelity not measured for this machine")
        return
    rp = idir / "run.json"
    info = read_json(rp)
    before = stats_dict(info, "pfprof_stats_before", rp)
    after = stats_dict(info, "pfprof_stats_after", rp)
    monitor = info.get("monitor")
    if isinstance(monitor, dict) and monitor.get("exit_code") not in (0, None):
        run.diag.warn(rp, f"the monitor exited with status {monitor.get('exit_code')}")
    fid = Fidelity(scope="idle")
    fid.add_profile(idir / "profile.csv", b.interval_ns, b.jiffy_ns)
    fid.add_counters(before, after, monitor)
    b.idle = fid
    ticks, work = stats_delta(before, after, "ticks"), stats_delta(before, after, "work_ns_sum")
    if ticks and work is not None:
        b.idle_handler = (work / ticks / 1000, ticks)


# --------------------------------------------------------------------------- case2/

@dataclass
class Timing:
    runs: int = 0
    unreadable: int = 0
    work_s: float = 0.0
    sweep_s: Optional[float] = None
    settle_s: Optional[float] = None
    in_runner_s: Optional[float] = None
    in_runner_runs: int = 0

    @property
    def ratio(self) -> Optional[float]:
        return self.sweep_s / self.work_s if self.sweep_s is not None and self.work_s > 0 else None

    @property
    def overhead_s(self) -> Optional[float]:
        return None if self.sweep_s is None else self.sweep_s - self.work_s

    @property
    def remainder_s(self) -> Optional[float]:
        if self.sweep_s is None:
            return None
        return self.sweep_s - self.work_s - (self.settle_s or 0.0) - (self.in_runner_s or 0.0)

    def components(self) -> list[tuple[str, float]]:
        parts = [("settling between runs", self.settle_s), ("the runner outside the work", self.in_runner_s),
                 ("Ansible, ssh and start-up between runs", self.remainder_s)]
        return [(name, v) for name, v in parts if v is not None]


@dataclass
class Sweep:
    n: int
    knee: bool
    fidelity: Fidelity
    timing: Timing


def load_sweep(run: Run, machine: Machine, interval_ns: Optional[float], jiffy_ns: Optional[float]) -> Sweep:
    case = c2.load_machine(run, machine)
    pp = machine.dir / "case2" / "params.json"
    params = read_json(pp)
    samples = {n: [r.sample() for r in reps] for n, reps in case.repeats.items() if reps}
    knee = kn.find_knee(samples)
    n = knee.n if knee.n is not None else max(case.n_values)
    fid = Fidelity(scope=f"N={n}", n=n, knee=knee.n is not None)
    timing = Timing()
    started, ended = optional_time(params, "started", pp), optional_time(params, "ended", pp)
    if started is not None and ended is not None:
        timing.sweep_s = ended - started
    for m, ndir in c2._sorted_dirs(machine.dir / "case2", c2.N_DIR):
        for _, rdir in c2._sorted_dirs(ndir, c2.R_DIR):
            info = _run_timing(run, rdir, timing)
            if m == n and interval_ns is not None:
                _sweep_fidelity(run, rdir, info, fid, interval_ns, jiffy_ns)
    return Sweep(n=n, knee=knee.n is not None, fidelity=fid, timing=timing)


def _run_timing(run: Run, rdir: Path, t: Timing) -> Optional[dict]:
    """Add one case2 run to the timing; its run.json (None when unreadable: the case2
    loader has already said so)."""
    rp = rdir / "run.json"
    try:
        info = read_json(rp)
        wall = number(info, "wall_s", rp, minimum=0)
        settle = info.get("settle")
        settle_s = number(settle, "settle_s", rp, required=False, minimum=0) if isinstance(settle, dict) else None
        runner_started = optional_time(info, "runner_started", rp)
        ended = optional_time(info, "ended", rp) if runner_started is not None else None
    except AnalysisError as e:
        t.unreadable += 1
        if rp.exists():
            run.diag.warn_error(e, "this run is left out of the testbed overhead")
        return None
    t.runs += 1
    t.work_s += wall
    if settle_s is not None:
        t.settle_s = (t.settle_s or 0.0) + settle_s
    if runner_started is not None and ended is not None:
        t.in_runner_s = (t.in_runner_s or 0.0) + (ended - runner_started) - wall - (settle_s or 0.0)
        t.in_runner_runs += 1
    return info


def _sweep_fidelity(run: Run, rdir: Path, info: Optional[dict], fid: Fidelity,
                    interval_ns: float, jiffy_ns: float) -> None:
    prof = rdir / "profile.csv"
    if not prof.exists():
        run.diag.warn(prof, "no such file; this repeat is left out of the fidelity at N*")
        return
    try:
        fid.add_profile(prof, interval_ns, jiffy_ns)
    except AnalysisError as e:
        run.diag.warn_error(e, "this repeat is left out of the fidelity at N*")
        return
    stats = []
    for when in ("before", "after"):
        sp = rdir / f"pfprof-stats-{when}.txt"
        try:
            stats.append(read_stats(sp) if sp.exists() else None)
        except AnalysisError as e:
            run.diag.warn_error(e, "ticks merged and records dropped of this repeat unknown")
            stats.append(None)
    fid.add_counters(stats[0], stats[1], (info or {}).get("monitor"))


# --------------------------------------------------------------------------- figures

def overhead_rows(b: Bench) -> list[dict]:
    rows = []
    for n in b.n_values:
        none = {c.round: c for c in b.cells if c.n == n and c.condition == BASELINE}
        wall_none = statistics.fmean(c.wall_s for c in none.values()) if none else None
        for prof in b.profilers:
            cells = sorted((c for c in b.cells if c.n == n and c.condition == prof), key=lambda c: c.round)
            ratios = [c.wall_s / none[c.round].wall_s for c in cells if c.round in none]
            cpus = [c.cpu_s for c in cells if c.cpu_s is not None]
            row = {"machine": b.machine.name, "label": b.label, "n": n, "profiler": prof,
                   "rounds": len(ratios), "ratios": ratios, "ratio_mean": None, "ci_low": None,
                   "ci_high": None, "ci_half": None, "ratio_min": None, "ratio_max": None,
                   "wall_none_mean_s": wall_none, "profiler_cpu_s_mean": None, "profiler_cpu_pct": None}
            if ratios:
                mean = statistics.fmean(ratios)
                row.update(ratio_mean=mean, ratio_min=min(ratios), ratio_max=max(ratios))
                if len(ratios) > 1:
                    half = t95(len(ratios) - 1) * statistics.stdev(ratios) / math.sqrt(len(ratios))
                    row.update(ci_half=half, ci_low=mean - half, ci_high=mean + half)
            if cpus:
                row["profiler_cpu_s_mean"] = statistics.fmean(cpus)
                if wall_none:
                    row["profiler_cpu_pct"] = 100.0 * row["profiler_cpu_s_mean"] / wall_none
            rows.append(row)
    return rows


def handler_rows(b: Bench) -> list[dict]:
    rows = []
    for n in b.n_values:
        cells = [c for c in b.cells if c.n == n and c.condition == "pfprof"
                 and c.ticks is not None and c.work_ns_sum is not None]
        ticks = sum(c.ticks for c in cells)
        work = sum(c.work_ns_sum for c in cells)
        us = work / ticks / 1000 if ticks else None
        rows.append({"machine": b.machine.name, "label": b.label, "n": n, "cells": len(cells), "ticks": ticks,
                     "work_ns_sum": work, "us_per_tick": us,
                     "pct_of_interval": None if us is None else 100.0 * us * 1000 / b.interval_ns})
    return rows


def fit_line(points: Sequence[tuple[float, float]]) -> Optional[dict]:
    """Least squares y = a + b x with R^2 (None: fewer than 2 distinct x; R^2 None when y is constant)."""
    if len({x for x, _ in points}) < 2:
        return None
    xm = statistics.fmean(x for x, _ in points)
    ym = statistics.fmean(y for _, y in points)
    sxx = sum((x - xm) ** 2 for x, _ in points)
    b = sum((x - xm) * (y - ym) for x, y in points) / sxx
    a = ym - b * xm
    ss_tot = sum((y - ym) ** 2 for _, y in points)
    ss_res = sum((y - a - b * x) ** 2 for x, y in points)
    return {"intercept": a, "slope": b, "r2": None if ss_tot == 0 else 1 - ss_res / ss_tot}


def handler_fit(b: Bench, rows: list[dict]) -> dict:
    pts = [(r["n"], r["us_per_tick"]) for r in rows if r["us_per_tick"] is not None]
    fit = fit_line(pts)
    last = max(pts) if pts else None
    out = {"machine": b.machine.name, "label": b.label, "n_values": [n for n, _ in pts],
           "intercept_us": fit and fit["intercept"], "slope_us_per_process": fit and fit["slope"],
           "r2": fit and fit["r2"], "linear": None,
           "at_n": last and last[0], "us_at_n": last and last[1],
           "pct_at_n": last and 100.0 * last[1] * 1000 / b.interval_ns,
           "idle_us_per_tick": b.idle_handler[0] if b.idle_handler else None}
    if fit and fit["r2"] is not None and len(pts) >= 3:
        out["linear"] = fit["r2"] >= TARGET_R2
    return out


# --------------------------------------------------------------------------- formatting

def f_ratio(v: Optional[float]) -> Optional[str]:
    return None if v is None else f"{v:.4f}"


def f_pct(v: Optional[float], digits: int = 2, sign: bool = False) -> Optional[str]:
    if v is None:
        return None
    return f"{v:+.{digits}f}%" if sign else f"{v:.{digits}f}%"


def f_over(ratio: Optional[float]) -> Optional[str]:
    """A ratio as the overhead it means: 1.0012 -> +0.12%."""
    return None if ratio is None else f_pct(100.0 * (ratio - 1), sign=True)


def f_s(v: Optional[float]) -> Optional[str]:
    return None if v is None else f"{v:.1f}"


def f_ci(row: dict) -> Optional[str]:
    if row["ci_low"] is None:
        return None
    return f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]"


def f_range(lo: Optional[float], hi: Optional[float]) -> Optional[str]:
    return None if lo is None else f"{lo:.4f}-{hi:.4f}"


def f_int(v) -> Optional[str]:
    return None if v is None else str(int(v))


def f_share(part: Optional[float], whole: Optional[float]) -> Optional[str]:
    """Seconds with their share of ``whole``: 16.0 (28%)."""
    if part is None:
        return None
    if not whole:
        return f_s(part)
    return f"{part:.1f} ({100.0 * part / whole:.0f}%)"


def _mib(v) -> Optional[str]:
    return f"{v:g} MiB" if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def profiler_name(p: str) -> str:
    return PROFILER_NAMES.get(p, p)


def machine_label(m: Machine, accelerator: Optional[str]) -> str:
    acc = m.facts.get("accelerator") or accelerator
    parts = [f"{m.memory_mb:g} MiB"] + ([str(acc).upper()] if acc else [])
    return f"{m.name} ({', '.join(parts)})"


def display_path(p: Path) -> str:
    from thrashlab.lab import REPO_ROOT
    p = Path(os.path.abspath(p))
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------- the report

@dataclass
class Block:
    kind: str                        # h1 | h2 | p | list | table | markdown
    text: str = ""
    items: Sequence[str] = ()
    rows: Sequence[dict] = ()
    columns: Sequence[Column] = ()


def S(key: str, header: Optional[str] = None, num: bool = False) -> Column:
    """A column of preformatted text (right-aligned when it holds numbers)."""
    return Column(key, header, "num" if num else "str")


class Report:
    def __init__(self, run: Run, notes: Optional[Path]):
        self.run = run
        self.notes = notes
        self.blocks: list[Block] = []
        self.data: dict = {}
        with_bench = [m for m in run.machines if (m.dir / "bench").is_dir()]
        if not with_bench:
            raise AnalysisError(run.path, None, "no machine has a bench/ directory: this run has no benchmark "
                                                "(run the benchmark command, ./bench.sh)")
        self.testbed_path = run.path / "testbed.json"
        self.testbed = read_json(self.testbed_path) if self.testbed_path.exists() else None
        self.steps = self._steps() if self.testbed is not None else None
        acc = self.testbed.get("accelerator") if self.testbed else None
        self.labels = {m.name: machine_label(m, acc if isinstance(acc, str) else None) for m in run.machines}
        self.benches: dict[str, Bench] = {}
        for m in run.machines:
            if m.name in {w.name for w in with_bench}:
                self.benches[m.name] = load_bench(run, m, self.labels[m.name])
            else:
                run.diag.warn(m.dir / "bench", "no such directory; this machine is left out of the "
                                               "overhead, handler-time and idle-fidelity tables")
        self.sweeps: dict[str, Optional[Sweep]] = {}
        for m in run.machines:
            b = self.benches.get(m.name)
            interval, jiffy = (b.interval_ns, b.jiffy_ns) if b else self._interval_from_stats(m)
            self.sweeps[m.name] = load_sweep(run, m, interval, jiffy) if (m.dir / "case2").is_dir() else None
        self.overhead = [r for b in self.benches.values() for r in overhead_rows(b)]
        self.handler = {name: handler_rows(b) for name, b in self.benches.items()}
        self.fits = {name: handler_fit(b, self.handler[name]) for name, b in self.benches.items()}

    def _interval_from_stats(self, m: Machine):
        """interval_ms and hz of a machine without bench/: from its first case2 stats copy."""
        for sp in sorted((m.dir / "case2").glob("n-*/r-*/pfprof-stats-before.txt")):
            try:
                st = read_stats(sp)
            except AnalysisError:
                continue
            if st.get("interval_ms", 0) > 0 and st.get("hz", 0) > 0:
                return st["interval_ms"] * 1e6, 1e9 / st["hz"]
        return None, None

    def _steps(self) -> list[tuple[str, float]]:
        p = self.testbed_path
        steps = self.testbed.get("steps")
        if not isinstance(steps, list):
            raise AnalysisError(p, None, "key 'steps': expected a list of {name, seconds}")
        out = []
        for i, s in enumerate(steps, start=1):
            if not isinstance(s, dict) or not isinstance(s.get("name"), str):
                raise AnalysisError(p, None, f"step {i}: expected an object with a 'name'")
            try:
                out.append((s["name"], number(s, "seconds", p, minimum=0)))
            except AnalysisError as e:
                raise _in(p, f"step {i} ({s['name']})", e) from None
        return out

    # ------------------------------------------------------------------ blocks

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(Block(f"h{level}", text))

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def table(self, rows, columns, notes: Sequence[str] = ()) -> None:
        self.blocks.append(Block("table", rows=rows, columns=columns, items=notes))

    def build(self) -> None:
        self.header()
        self.section_overhead()
        self.section_handler()
        self.section_fidelity()
        self.section_testbed()
        self.section_targets()
        self.section_discussion()
        if self.notes is not None:
            self.h("Notes")
            self.blocks.append(Block("markdown", read_text(self.notes), items=(display_path(self.notes),)))
        self.data["notes"] = None if self.notes is None else display_path(self.notes)
        self.data["warnings"] = list(self.run.diag.warnings)

    # ------------------------------------------------------------------ 1. header

    def header(self) -> None:
        run, man, tb = self.run, self.run.manifest, self.testbed or {}
        run_id = tb.get("run_id") or man.get("run_id") or run.path.name
        first = next(iter(self.benches.values()))
        date = man.get("started") or first.params.get("started")
        rev = tb.get("git_revision") or man.get("git_revision")
        dirty = tb["git_dirty"] if "git_dirty" in tb else man.get("git_dirty")
        host = tb.get("host") if isinstance(tb.get("host"), dict) else None
        self.h(f"Benchmark of run {run_id}", 1)
        host_text = NOT_MEASURED + " (no testbed.json)"
        if host:
            host_text = (f"{host.get('cpus', '?')} CPUs, kernel {host.get('kernel', '?')}"
                         + (f", {host['hostname']}" if host.get("hostname") else ""))
        items = [f"run: {run_id}" + (f" (lab {tb['lab']})" if tb.get("lab") else ""),
                 f"date: {date or '?'}",
                 f"git revision: {rev or '?'}" + (" (dirty: uncommitted changes)" if dirty else ""),
                 f"host: {host_text}"]
        self.blocks.append(Block("list", items=items))
        self.data.update(run_id=run_id, date=date, git_revision=rev, git_dirty=dirty, host=host,
                         lab=tb.get("lab"), accelerator=tb.get("accelerator"))
        mrows = []
        for m in run.machines:
            f = m.facts
            mrows.append({"machine": self.labels[m.name], "ram": f"{m.memory_mb:g} MiB",
                          "swap": _mib(f.get("swap_mb")),
                          "cpus": f.get("cpus"), "kernel": f.get("kernel"), "accelerator": f.get("accelerator")})
        self.table(mrows, [S("machine"), S("ram", "RAM", True), S("swap", num=True), S("cpus", "vCPUs", True),
                           S("kernel"), S("accelerator")])
        prows = []
        for b in self.benches.values():
            pr = b.params
            work = pr.get("work") if isinstance(pr.get("work"), dict) else {}
            wtext = " ".join(x for x in (
                f"{work['mb']} MiB" if "mb" in work else "", f"mode {work['mode']}" if "mode" in work else "",
                f"{work['accesses_total']} accesses" if "accesses_total" in work else "",
                f"({work['accesses_per_iteration']}/iteration)" if "accesses_per_iteration" in work else "")
                if x)
            prows.append({"machine": b.label,
                          "rounds": f"{len(b.rounds)}" + (f"/{b.rounds_planned}" if b.rounds_planned else ""),
                          "n": ",".join(str(n) for n in b.n_values),
                          "conditions": ",".join([BASELINE] + b.profilers), "work": wtext or None,
                          "interval": f"{b.interval_ms:g} ms", "hz": f"{b.hz:g}",
                          "idle": None if pr.get("idle_seconds") is None else f"{pr['idle_seconds']:g} s",
                          "perf": pr.get("perf_version")})
        self.table(prows, [S("machine"), S("rounds", num=True), S("n", "N"), S("conditions"), S("work"),
                           S("interval", num=True), S("hz", "HZ", True), S("idle", num=True),
                           S("perf", "perf version")],
                   ["rounds: round files read / rounds planned (params.json); each round runs every N under "
                    "every condition once, in the order of the cells' positions"])
        self.data["machines"] = [{"machine": m.name, "label": self.labels[m.name], "memory_mb": m.memory_mb,
                                  "swap_mb": m.facts.get("swap_mb"), "cpus": m.facts.get("cpus"),
                                  "kernel": m.facts.get("kernel"), "accelerator": m.facts.get("accelerator"),
                                  "bench": m.name in self.benches,
                                  "bench_params": self.benches[m.name].params if m.name in self.benches else None}
                                 for m in run.machines]

    # ------------------------------------------------------------------ 2. overhead

    def section_overhead(self) -> None:
        self.h("Overhead: wall time of a fixed in-memory work with a profiler / without")
        self.data["overhead"] = self.overhead
        rows = [{"machine": r["label"], "n": str(r["n"]), "profiler": r["profiler"], "rounds": str(r["rounds"]),
                 "ratio": f_ratio(r["ratio_mean"]), "ci": f_ci(r), "range": f_range(r["ratio_min"], r["ratio_max"]),
                 "overhead": f_over(r["ratio_mean"]), "cpu": f_pct(r["profiler_cpu_pct"])}
                for r in self.overhead]
        if not rows:
            self.p(f"Overhead: {NOT_MEASURED} (no usable round).")
            return
        self.table(rows, [S("machine"), S("n", "N", True), S("profiler"), S("rounds", num=True),
                          S("ratio", "ratio", True), S("ci", "95% CI", True), S("range", "min-max", True),
                          S("overhead", num=True), S("cpu", "profiler CPU", True)],
                   ["ratio: wall(profiler) / wall(none) of the same round, mean over the rounds; 95% CI: "
                    "mean +- t(rounds-1) x sd / sqrt(rounds) (Student t); overhead: the mean ratio - 1",
                    "profiler CPU: the profiler process's user+system CPU time (mean over the rounds) as % of "
                    "the mean wall time without a profiler",
                    "rounds: rounds with both cells; a failed cell is left out (warning)"])

    # ------------------------------------------------------------------ 3. handler

    def section_handler(self) -> None:
        self.h("Work handler time per tick")
        self.data["handler"] = [r for rows in self.handler.values() for r in rows]
        self.data["handler_fit"] = list(self.fits.values())
        rows = []
        for name, hrows in self.handler.items():
            for r in hrows:
                rows.append({"machine": r["label"], "n": str(r["n"]), "cells": str(r["cells"]),
                             "ticks": str(r["ticks"]),
                             "us": None if r["us_per_tick"] is None else f"{r['us_per_tick']:.2f}",
                             "pct": f_pct(r["pct_of_interval"], 3)})
        if not any(r["us_per_tick"] is not None for r in self.data["handler"]):
            self.p(f"Handler time: {NOT_MEASURED} (no pfprof cell with ticks).")
            return
        notes = ["us/tick: the pfprof cells' work_ns_sum / ticks (deltas of /proc/pfprof/stats over each "
                 "cell), summed over the rounds; % of interval: of interval_ms"]
        for name, fit in self.fits.items():
            b = self.benches[name]
            if fit["slope_us_per_process"] is None:
                notes.append(f"{b.label}: no line (fewer than 2 N values)")
                continue
            r2 = fit["r2"]
            if fit["linear"] is None:
                verdict = ("not judged (fewer than 3 N values)" if r2 is not None
                           else "constant over N (R^2 undefined)")
            else:
                verdict = "linear in the number of processes" if fit["linear"] else "not linear"
            notes.append(f"{b.label}: {fit['intercept_us']:.2f} + {fit['slope_us_per_process']:.3f} x N us "
                         f"(least squares), R^2 = {'-' if r2 is None else f'{r2:.3f}'}: {verdict} "
                         f"(R^2 >= {TARGET_R2}); {fit['slope_us_per_process']:.3f} us per process; at "
                         f"N={fit['at_n']}: {fit['us_at_n']:.2f} us = {fit['pct_at_n']:.3f}% of "
                         f"{b.interval_ms:g} ms (target < {TARGET_HANDLER_PCT}%)")
            if b.idle_handler:
                notes.append(f"{b.label}: idle (one sleeping process, bench/idle): {b.idle_handler[0]:.2f} us "
                             f"per tick over {b.idle_handler[1]} ticks")
        self.table(rows, [S("machine"), S("n", "N", True), S("cells", num=True), S("ticks", num=True),
                          S("us", "us/tick", True), S("pct", "% of interval", True)], notes)

    # ------------------------------------------------------------------ 4. fidelity

    def fidelities(self) -> list[tuple[str, Fidelity, float]]:
        out = []
        for m in self.run.machines:
            b, sw = self.benches.get(m.name), self.sweeps.get(m.name)
            if b and b.idle:
                out.append((m.name, b.idle, b.interval_ms))
            if sw and sw.fidelity.profiles:
                interval = b.interval_ms if b else None
                out.append((m.name, sw.fidelity, interval))
        return out

    def section_fidelity(self) -> None:
        self.h("Fidelity of the 50 ms ticks")
        rows, data = [], []
        for name, fid, _ in self.fidelities():
            d = fid.json()
            d.update(machine=name, label=self.labels[name])
            data.append(d)
            scope = fid.scope if fid.n is None else f"N={fid.n} " + ("(N*)" if fid.knee else "(largest N, no knee)")
            rows.append({"machine": self.labels[name], "scope": scope, "profiles": str(fid.profiles),
                         "intervals": str(fid.intervals), "share": f_pct(fid.share_pct, 2),
                         "worst": None if d["worst_interval_ms"] is None else f"{d['worst_interval_ms']:.1f} ms",
                         "merged": f_int(d["ticks_merged"]), "resync": f_int(d["ticks_resync"]),
                         "dmon": f_int(d["dropped_monitor"]), "dstats": f_int(d["dropped_stats"])})
        self.data["fidelity"] = data
        missing = [self.labels[m.name] for m in self.run.machines if self.sweeps.get(m.name) is None]
        if not rows:
            self.p(f"Fidelity: {NOT_MEASURED}.")
            return
        b0 = next(iter(self.benches.values()))
        notes = [f"within 1 jiffy: intervals d between consecutive distinct ts_ns (records without flag 4, "
                 f"which U writes off-tick) with |d - interval_ms| <= 1000/hz ms (here {b0.interval_ms:g} ms "
                 f"+- {1000 / b0.hz:g} ms); worst: the interval farthest from interval_ms",
                 "at N*: every repeat of the thrashing N of the case2 sweep, intervals pooled; merged, "
                 "resync, dropped (stats): deltas of /proc/pfprof/stats; dropped (monitor): the monitor's count"]
        if missing:
            notes.append(f"at N*: {NOT_MEASURED} for {', '.join(missing)} (no case2/)")
        self.table(rows, [S("machine"), S("scope"), S("profiles", num=True), S("intervals", num=True),
                          S("share", "within 1 jiffy", True), S("worst", num=True),
                          S("merged", "ticks_merged", True), S("resync", "ticks_resync", True),
                          S("dmon", "dropped (monitor)", True), S("dstats", "dropped (stats)", True)], notes)

    # ------------------------------------------------------------------ 5. testbed

    def section_testbed(self) -> None:
        self.h("Testbed overhead: how much of a Case Study 2 sweep is the testbed's own")
        rows, data = [], []
        for m in self.run.machines:
            sw = self.sweeps.get(m.name)
            if sw is None:
                rows.append({"machine": self.labels[m.name], "runs": NOT_MEASURED})
                data.append({"machine": m.name, "label": self.labels[m.name], "measured": False})
                continue
            t = sw.timing
            over = t.overhead_s
            rows.append({"machine": self.labels[m.name], "runs": str(t.runs), "work": f_s(t.work_s),
                         "sweep": f_s(t.sweep_s), "ratio": None if t.ratio is None else f"{t.ratio:.3f}",
                         "settle": f_share(t.settle_s, over), "runner": f_share(t.in_runner_s, over),
                         "rest": f_share(t.remainder_s, over)})
            data.append({"machine": m.name, "label": self.labels[m.name], "measured": True, "runs": t.runs,
                         "runs_unreadable": t.unreadable, "work_s": t.work_s, "sweep_s": t.sweep_s,
                         "ratio": t.ratio, "overhead_s": over, "settle_s": t.settle_s,
                         "in_runner_s": t.in_runner_s, "in_runner_runs": t.in_runner_runs,
                         "remainder_s": t.remainder_s})
        overall = self.overall()
        self.data["testbed"] = {"machines": data, "overall": overall,
                                "steps": None if self.steps is None else
                                [{"name": n, "seconds": s} for n, s in self.steps]}
        notes = ["work: sum of the case2 runs' wall_s; sweep: case2/params.json ended - started; the rest "
                 "(sweep - work) split into settling (settle_s), the runner outside the work ((ended - "
                 "runner_started) - wall_s - settle_s) and the remainder: Ansible, ssh and interpreter "
                 "start-up between runs; (%): share of the rest"]
        for d in data:
            if d.get("measured") and d["sweep_s"] is None:
                notes.append(f"{d['label']}: sweep wall {NOT_MEASURED} (case2/params.json has no started/ended)")
            elif d.get("measured") and d["in_runner_runs"] < d["runs"]:
                notes.append(f"{d['label']}: runner_started in {d['in_runner_runs']} of {d['runs']} run.json; "
                             f"the others' runner time is in the remainder")
            if d.get("runs_unreadable"):
                notes.append(f"{d['label']}: {d['runs_unreadable']} run(s) without a usable run.json left out")
        self.table(rows, [S("machine"), S("runs", num=True), S("work", "work s", True),
                          S("sweep", "sweep s", True), S("ratio", "sweep/work", True),
                          S("settle", "settling s", True), S("runner", "runner s", True),
                          S("rest", "remainder s", True)], notes)
        if overall is None:
            self.p(f"Whole sweep step and the other steps: {NOT_MEASURED} (no testbed.json).")
            return
        if overall.get("ratio") is not None:
            self.p(f"Overall: the sweep step took {overall['sweep_s']:.1f} s (testbed.json) against "
                   f"{overall['work_s']:.1f} s of work on {overall['label']}, the machine with the most RAM: "
                   f"{overall['ratio']:.3f}x.")
        else:
            self.p("Overall: " + overall["why"] + ".")
        total = sum(s for _, s in self.steps)
        self.table([{"step": n, "s": f_s(s), "share": f_pct(100.0 * s / total if total else None, 0)}
                    for n, s in self.steps] + [{"step": "total", "s": f_s(total), "share": None}],
                   [S("step"), S("s", "seconds", True), S("share", num=True)],
                   ["steps: testbed.json, the host-side orchestrator's timing of each step"])

    def overall(self) -> Optional[dict]:
        if self.steps is None:
            return None
        sweep = sum(s for n, s in self.steps if n == "sweep") if any(n == "sweep" for n, _ in self.steps) else None
        measured = [m for m in self.run.machines if self.sweeps.get(m.name) is not None]
        if not measured:
            return {"sweep_s": sweep, "ratio": None, "why": f"no case2 sweep: {NOT_MEASURED}"}
        big = max(measured, key=lambda m: m.memory_mb)
        work = self.sweeps[big.name].timing.work_s
        if sweep is None:
            return {"sweep_s": None, "ratio": None, "machine": big.name, "label": self.labels[big.name],
                    "work_s": work, "why": "testbed.json has no 'sweep' step"}
        return {"sweep_s": sweep, "machine": big.name, "label": self.labels[big.name], "work_s": work,
                "ratio": sweep / work if work > 0 else None}

    # ------------------------------------------------------------------ 6. targets

    def targets(self) -> list[dict]:
        out = []

        def add(target, label, measured, value, limit, met, by, machine=None, n=None, result=None):
            out.append({"target": target, "machine": machine, "label": label, "n": n, "measured": measured,
                        "value": value, "limit": limit, "met": met, "by": by, "result": result})

        for name, b in self.benches.items():
            rows = [r for r in self.overhead if r["machine"] == name]
            for n in b.n_values:
                at = {r["profiler"]: r for r in rows if r["n"] == n}
                pf = at.get("pfprof")
                t1 = f"pfprof overhead <= {100 * (TARGET_RATIO - 1):.1f}% (mean ratio <= {TARGET_RATIO})"
                if pf is None or pf["ratio_mean"] is None:
                    add(t1, b.label, NOT_MEASURED, None, TARGET_RATIO, None, None, name, n)
                    add("pfprof below perf and the poller", b.label, NOT_MEASURED, None, None, None, None, name, n)
                    continue
                mean = pf["ratio_mean"]
                ci = f" {f_ci(pf)}" if pf["ci_low"] is not None else ""
                # Met only when the whole confidence interval is within the limit: a
                # mean below it with an interval reaching past it shows nothing.
                high = pf["ci_high"] if pf["ci_high"] is not None else mean
                unshown = mean <= TARGET_RATIO < high
                add(t1, b.label, f"{mean:.4f}{ci}", mean, TARGET_RATIO, high <= TARGET_RATIO,
                    f"CI reaches {100 * (high - 1):+.2f}%" if unshown else f"{abs(100 * (TARGET_RATIO - mean)):.2f} pp",
                    name, n, "not shown" if unshown else None)
                others = {p: r["ratio_mean"] for p, r in at.items() if p != "pfprof" and r["ratio_mean"] is not None}
                if not others:
                    add("pfprof below perf and the poller", b.label, NOT_MEASURED, None, None, None, None, name, n)
                    continue
                closest = min(others, key=others.get)
                measured = ", ".join([f"pfprof {mean:.4f}"] + [f"{p} {v:.4f}" for p, v in others.items()])
                below = all(mean < v for v in others.values())
                gap = 100 * (others[closest] - mean)
                by = f"{abs(gap):.2f} pp {'below' if gap > 0 else 'above'} {closest}"
                # below by the means, but within pfprof's own confidence interval: not shown
                unshown = below and pf["ci_high"] is not None and pf["ci_high"] >= others[closest]
                add("pfprof below " + " and ".join(profiler_name(p) for p in others), b.label, measured,
                    mean, others[closest], below and not unshown, by + (" (within the CI)" if unshown else ""),
                    name, n, "not shown" if unshown else None)
                cpu = {p: r["profiler_cpu_pct"] for p, r in at.items() if r["profiler_cpu_pct"] is not None}
                if "pfprof" in cpu:
                    # The same targets by the profilers' own CPU while the work ran.
                    v = cpu["pfprof"]
                    limit = 100 * (TARGET_RATIO - 1)
                    add(f"pfprof CPU <= {limit:.1f}% of the work's wall time", b.label, f"{v:.2f}%", v, limit,
                        v <= limit, f"{abs(v - limit):.2f} pp", name, n)
                    peers = {p: x for p, x in cpu.items() if p != "pfprof"}
                    if peers:
                        low = min(peers, key=peers.get)
                        add("pfprof CPU below " + " and ".join(profiler_name(p) for p in peers), b.label,
                            ", ".join([f"pfprof {v:.2f}%"] + [f"{p} {x:.2f}%" for p, x in peers.items()]), v,
                            peers[low], all(v < x for x in peers.values()),
                            f"{abs(peers[low] - v):.2f} pp {'below' if v < peers[low] else 'above'} {low}", name, n)
            fit = self.fits[name]
            th = f"handler time at N={fit['at_n']} < {TARGET_HANDLER_PCT}% of interval_ms"
            if fit["pct_at_n"] is None:
                add(f"handler time < {TARGET_HANDLER_PCT}% of interval_ms", b.label, NOT_MEASURED, None,
                    TARGET_HANDLER_PCT, None, None, name)
            else:
                v = fit["pct_at_n"]
                add(th, b.label, f"{v:.3f}% ({fit['us_at_n']:.2f} us)", v, TARGET_HANDLER_PCT,
                    v < TARGET_HANDLER_PCT, f"{abs(TARGET_HANDLER_PCT - v):.3f} pp", name, fit["at_n"])
            tl = f"handler time linear in N (R^2 >= {TARGET_R2})"
            if fit["linear"] is None:
                why = NOT_MEASURED if fit["r2"] is None and fit["slope_us_per_process"] is None else \
                    "not judged (fewer than 3 N values or constant)"
                add(tl, b.label, why, fit["r2"], TARGET_R2, None, None, name)
            else:
                add(tl, b.label, f"R^2 {fit['r2']:.3f}, {fit['slope_us_per_process']:.3f} us/process", fit["r2"],
                    TARGET_R2, fit["linear"], f"{abs(fit['r2'] - TARGET_R2):.3f}", name)
        for m in self.run.machines:
            label = self.labels[m.name]
            b, sw = self.benches.get(m.name), self.sweeps.get(m.name)
            for fid, limit, what in ((b.idle if b else None, TARGET_IDLE_PCT, "idle"),
                                     (sw.fidelity if sw else None, TARGET_KNEE_PCT, "at N*")):
                t = f"ticks within 1 jiffy {what} >= {limit}%"
                if fid is None or fid.share_pct is None:
                    add(t, label, NOT_MEASURED, None, limit, None, None, m.name)
                    continue
                v = fid.share_pct
                note = "" if fid.n is None or fid.knee else " (largest N, no knee)"
                add(t, label, f"{v:.2f}% of {fid.intervals}{note}", v, limit, v >= limit,
                    f"{abs(v - limit):.2f} pp", m.name, fid.n)
            fids = [f for f in ((b.idle if b else None), (sw.fidelity if sw else None)) if f is not None]
            cells = [c.records_dropped for c in (b.cells if b else []) if c.condition == "pfprof"]
            parts = [f.dropped() for f in fids] + cells
            total = _sum_known(parts)
            if total is None:
                add("0 records dropped", label, NOT_MEASURED, None, 0, None, None, m.name)
            else:
                add("0 records dropped", label, f"{total} (idle, N*, overhead cells)", total, 0, total == 0,
                    f"{total} record(s)" if total else "0", m.name)
            t = f"sweep wall <= {TARGET_SWEEP_RATIO} x work time"
            if sw is None or sw.timing.ratio is None:
                add(t, label, NOT_MEASURED, None, TARGET_SWEEP_RATIO, None, None, m.name)
            else:
                r = sw.timing.ratio
                add(t, label, f"{r:.3f}x", r, TARGET_SWEEP_RATIO, r <= TARGET_SWEEP_RATIO,
                    f"{abs(TARGET_SWEEP_RATIO - r):.3f}", m.name)
        ov = self.overall()
        t = f"sweep step <= {TARGET_SWEEP_RATIO} x work time (testbed.json)"
        if ov is None or ov.get("ratio") is None:
            add(t, "all machines", NOT_MEASURED, None, TARGET_SWEEP_RATIO, None, None)
        else:
            add(t, f"all machines, against {ov['label']}", f"{ov['ratio']:.3f}x", ov["ratio"], TARGET_SWEEP_RATIO,
                ov["ratio"] <= TARGET_SWEEP_RATIO, f"{abs(TARGET_SWEEP_RATIO - ov['ratio']):.3f}")
        return out

    def section_targets(self) -> None:
        self.h("Targets")
        targets = self.targets()
        self.data["targets"] = targets
        rows = [{"target": t["target"] + ("" if t["n"] is None or "N=" in t["target"] else f", N={t['n']}"),
                 "machine": t["label"], "measured": t["measured"],
                 "result": t.get("result") or {True: "met", False: "missed", None: "-"}[t["met"]],
                 "by": t["by"] if t["met"] is not None else None} for t in targets]
        met = sum(1 for t in targets if t["met"])
        judged = sum(1 for t in targets if t["met"] is not None)
        self.table(rows, [S("target"), S("machine"), S("measured"), S("result"), S("by", num=True)],
                   [f"{met} of {judged} measured targets met; by: the margin to the limit (pp: percentage points); "
                    "not shown: the mean is on the right side of the limit but its 95% confidence interval "
                    "reaches past it"])

    # ------------------------------------------------------------------ 7. discussion

    def discussion(self) -> list[str]:
        out = []
        for name, b in self.benches.items():
            rows = [r for r in self.overhead if r["machine"] == name and r["ratio_mean"] is not None]
            if not rows:
                continue
            n = max(r["n"] for r in rows)
            at = {r["profiler"]: r for r in rows if r["n"] == n}
            pf = at.get("pfprof")
            others = [r for p, r in at.items() if p != "pfprof"]
            if pf is None:
                continue
            ci = (f" [{f_over(pf['ci_low'])}, {f_over(pf['ci_high'])}]" if pf["ci_low"] is not None else "")
            procs = f"{n} process{'es' if n != 1 else ''}"
            s = f"At {procs} pfprof cost {f_over(pf['ratio_mean'])}{ci}"
            if others:
                s += " against " + " and ".join(f"{f_over(r['ratio_mean'])} for {profiler_name(r['profiler'])}"
                                                for r in others)
            s += f" in wall time on {b.label}"
            count = {2: "two", 3: "three", 4: "four"}.get(len(others) + 1, str(len(others) + 1))
            if others:
                # An order is only claimed when pfprof's interval excludes the peers' means.
                separated = pf["ci_low"] is not None and all(
                    not (pf["ci_low"] <= r["ratio_mean"] <= pf["ci_high"]) for r in others)
                dearer = [profiler_name(r["profiler"]) for r in others if r["ratio_mean"] <= pf["ratio_mean"]]
                if not separated:
                    s += (f": the {count} are not told apart, the 95% interval is wider than their "
                          f"differences")
                else:
                    s += f": the cheapest of the {count}" if not dearer else f": dearer than {' and '.join(dearer)}"
            out.append(s + ".")
            cpus = {r["profiler"]: r["profiler_cpu_pct"] for r in at.values() if r["profiler_cpu_pct"] is not None}
            if "pfprof" in cpus and len(cpus) > 1:
                peers = {p: v for p, v in cpus.items() if p != "pfprof"}
                cheaper = all(cpus["pfprof"] < v for v in peers.values())
                out.append(f"By the CPU each one took while the work ran (noise-free on one vCPU), pfprof cost "
                           f"{cpus['pfprof']:.2f}% of the work's time at {procs} against "
                           + " and ".join(f"{v:.2f}% for {profiler_name(p)}" for p, v in peers.items())
                           + (f": the cheapest of the {count}." if cheaper else "."))
        timed = [(m, self.sweeps[m.name].timing) for m in self.run.machines
                 if self.sweeps.get(m.name) is not None and self.sweeps[m.name].timing.ratio is not None]
        if timed:
            m, t = max(timed, key=lambda mt: mt[1].ratio)
            comps = t.components()
            s = (f"The testbed's own overhead is largest on {self.labels[m.name]}: the sweep took {t.ratio:.2f}x "
                 f"its {t.work_s:.0f} s of work")
            over = t.overhead_s
            if comps and over and over > 0:
                name_, v = max(comps, key=lambda c: c[1])
                s += (f"; of the {over:.0f} s beyond the work, " + ", ".join(
                    f"{c} took {x:.0f} s ({100 * x / over:.0f}%)" for c, x in comps)
                      + f": the largest part is {name_}")
            out.append(s + ".")
        return out

    def section_discussion(self) -> None:
        sentences = self.discussion()
        self.data["discussion"] = sentences
        if sentences:
            self.h("Discussion")
            self.p(" ".join(sentences))


# --------------------------------------------------------------------------- rendering

def render_text(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2"):
            out.append(f"{b.text}\n{('=' if b.kind == 'h1' else '-') * len(b.text)}\n")
        elif b.kind == "p":
            out.append(textwrap.fill(b.text, width=100, break_on_hyphens=False) + "\n")
        elif b.kind == "list":
            out.append("".join(textwrap.fill(i, width=100, subsequent_indent="  ", break_on_hyphens=False) + "\n"
                               for i in b.items))
        elif b.kind == "table":
            out.append(tables.render(b.rows, b.columns, "text", notes=b.items))
        elif b.kind == "markdown":
            out.append(f"notes: {b.items[0]}\n")
    return "\n".join(out)


def render_markdown(blocks: Sequence[Block], run_id: str) -> str:
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}\n")
            out.append(f"Generated by `python -m analysis bench` from run `{run_id}`; regenerate it rather than "
                       f"edit it (hand-written explanations belong in docs/benchmarks-notes.md, included "
                       f"below under Notes).\n")
        elif b.kind == "h2":
            out.append(f"## {b.text}\n")
        elif b.kind == "p":
            out.append(b.text + "\n")
        elif b.kind == "list":
            out.append("".join(f"- {i}\n" for i in b.items))
        elif b.kind == "table":
            out.append(tables.render(b.rows, b.columns, "markdown", notes=b.items))
        elif b.kind == "markdown":
            out.append(b.text.rstrip("\n") + "\n")
    return "\n".join(out)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- command

def default_doc() -> Path:
    from thrashlab.lab import REPO_ROOT
    return REPO_ROOT / "docs" / "benchmarks.md"


def default_notes() -> Path:
    from thrashlab.lab import REPO_ROOT
    return REPO_ROOT / "docs" / "benchmarks-notes.md"


def main(args) -> int:
    from analysis import cli_common
    run = cli_common.open_run(args)
    notes = Path(args.notes) if args.notes else (default_notes() if default_notes().is_file() else None)
    doc = None if args.no_doc else Path(args.doc) if args.doc else default_doc()
    rep = Report(run, notes)
    rep.build()
    rep.data["doc"] = None if doc is None else str(doc)
    if doc is not None:
        write_atomic(doc, render_markdown(rep.blocks, rep.data["run_id"]))
    if args.json:
        sys.stdout.write(json.dumps(rep.data, indent=2, default=str) + "\n")
        if doc is not None:
            print(f"written: {doc}", file=sys.stderr)
    else:
        sys.stdout.write(render_text(rep.blocks))
        if doc is not None:
            sys.stdout.write(f"\nwritten: {doc}\n")
    sys.stdout.flush()
    return 0
