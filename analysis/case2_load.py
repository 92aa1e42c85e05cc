"""Case Study 2's files: every repeat of every N (run.json, the work JSONs, profile, PSI) into a :class:`Repeat`.

Part of :mod:`analysis.case2` (whose docstring says what each number means).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from analysis import knee
from analysis import profile as pf
from analysis.case2_profile import load_window, thrashing_onsets
from analysis.errors import AnalysisError, Diagnostics
from analysis.load import MIB, Machine, Run, number, read_csv, read_json, read_psi

N_DIR = re.compile(r"^n-(\d+)$")
R_DIR = re.compile(r"^r-(\d+)$")

TIMEOUT_EXIT = 124           # the runner's exit code of a process stopped at the run's timeout


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


def sorted_dirs(parent: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
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
    ndirs = sorted_dirs(base, N_DIR)
    if not ndirs:
        raise AnalysisError(base, None, "no n-NN directory")
    repeats: dict[int, list[Repeat]] = {}
    dropped: dict[int, int] = {}
    dropped_repeats: list[dict] = []
    for n, ndir in ndirs:
        if n < 1:
            run.diag.warn(ndir, "N must be at least 1; directory ignored")
            continue
        rdirs = sorted_dirs(ndir, R_DIR)
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
    thrashing_onsets(case)
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
    load_window(rep, works, diag)
    _load_psi(rep, rdir, diag)
    return rep


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
