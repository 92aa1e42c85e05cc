"""Case Study 2: per machine and N, what the N processes achieved, repeats aggregated.

Per repeat (``RUN/<machine>/case2/n-NN/r-K/``):

- throughput: the sum over the N processes of ``accesses_per_s`` (work-K.json),
  in accesses per second of each process's timed phase;
- cpu_util: the course's CPU utilization, the N processes' CPU time divided by
  the run's wall time: sum of ``utime_s + stime_s`` (each process's own
  getrusage, work-K.json) / ``wall_s`` (run.json).  It covers the fill and the
  timed phase; direct reclaim is charged as system time, so it does not fall
  much when the machine thrashes (why the knee is not decided from it);
- majflt_per_s: the sum of the processes' ``majflt`` (getrusage) / ``wall_s``;
- slowest: the ``accesses_per_s`` of the slowest process.  Linux thrashes
  unfairly: past the available memory some processes starve (100-3000
  accesses/s) while the others keep running at full speed, so the sum hardly
  moves and the slowest process shows the collapse;
- in_memory: whether each process took at most max(50, 1% of its pages)
  major faults (rule 1 of analysis.knee; pages: the work JSON's ``pages``,
  else ``mb`` x 1 MiB / page size);
- psi_some_avg10 / psi_full_avg10: the highest PSI memory avg10 (%) in
  psi-samples.csv; psi_some_pct / psi_full_pct: the ``total`` stall time
  (psi-after.txt minus psi-before.txt) as a percentage of ``wall_s``;
- overlap_s: from run.json (how long all N timed phases ran together).

The work JSONs (getrusage) are the ground truth that the pfprof profile must
reproduce, and there is one per process, so they are used rather than
profile.csv, which case2 does not read.

Per N the repeats are aggregated as mean, min, max and sample standard
deviation (and the median for throughput, major faults and the slowest
process, which the knee rule in analysis.knee uses).

run.json's ``starved`` (the runner's count of processes under 1% of the
fastest one), where present, is checked against the work JSONs (warning when
they disagree); the analysis itself uses the work JSONs.

Bad input: a repeat whose run.json or any work-K.json is missing or corrupt,
or whose run.json reports a non-zero exit code or an OOM kill, is dropped
with a warning naming the file (a run that timed out but whose processes all
printed their JSON, ``"interrupted": true``, is kept with a warning: its
throughput is that of the part that ran, which is what thrashing looks like); bad PSI files only leave that repeat's PSI
columns empty (warning).  No usable repeat at all for a machine is an error,
as is a missing or corrupt case2/params.json (read by compare).
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from analysis import knee
from analysis.errors import AnalysisError, Diagnostics
from analysis.load import MIB, Machine, Run, number, read_csv, read_json, read_psi
from analysis.tables import Column

N_DIR = re.compile(r"^n-(\d+)$")
R_DIR = re.compile(r"^r-(\d+)$")

METRICS = ("throughput", "slowest", "cpu_util", "majflt_per_s", "psi_some_avg10", "psi_full_avg10",
           "psi_some_pct", "psi_full_pct", "overlap_s")
MEDIANS = ("throughput", "slowest", "majflt_per_s")


@dataclass
class Repeat:
    machine: str
    n: int
    r: int
    path: Path
    throughput: float
    accesses: Optional[float]
    cpu_s: float
    majflt: float
    wall_s: float
    overlap_s: Optional[float]
    work_mb: Optional[float]
    processes: tuple = ()          # each process's accesses_per_s, work-1 first
    process_majflt: tuple = ()     # each process's majflt
    process_pages: tuple = ()      # each process's size in pages (None: unknown)
    psi_some_avg10: Optional[float] = None
    psi_full_avg10: Optional[float] = None
    psi_some_pct: Optional[float] = None
    psi_full_pct: Optional[float] = None

    @property
    def cpu_util(self) -> float:
        return self.cpu_s / self.wall_s

    @property
    def majflt_per_s(self) -> float:
        return self.majflt / self.wall_s

    @property
    def slowest(self) -> Optional[float]:
        return min(self.processes) if self.processes else None

    @property
    def in_memory(self) -> bool:
        return knee.ran_in_memory(self.process_majflt, self.process_pages)

    def sample(self) -> knee.Sample:
        return knee.Sample(self.throughput, self.majflt_per_s, tuple(self.processes), self.in_memory)


@dataclass
class Case2:
    """One machine's sweep: valid repeats by N, and how many were dropped."""
    machine: Machine
    repeats: dict[int, list[Repeat]]
    dropped: dict[int, int]

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
    for n, ndir in ndirs:
        if n < 1:
            run.diag.warn(ndir, "N must be at least 1; directory ignored")
            continue
        rdirs = _sorted_dirs(ndir, R_DIR)
        good = []
        for r, rdir in rdirs:
            rep = load_repeat(machine, n, r, rdir, run.diag)
            if rep is not None:
                good.append(rep)
        repeats[n] = good
        dropped[n] = len(rdirs) - len(good)
        if not good:
            run.diag.warn(ndir, "no usable repeat; this N is left out")
    if not any(repeats.values()):
        raise AnalysisError(base, None, "no usable repeat (see the warnings above)")
    return Case2(machine=machine, repeats=repeats, dropped=dropped)


def load_repeat(machine: Machine, n: int, r: int, rdir: Path, diag: Diagnostics) -> Optional[Repeat]:
    try:
        rp = rdir / "run.json"
        run_json = read_json(rp)
        wall = number(run_json, "wall_s", rp)
        if wall <= 0:
            raise AnalysisError(rp, None, f"key 'wall_s': {wall} is not positive")
        overlap = number(run_json, "overlap_s", rp, required=False, minimum=0)
        declared_n = number(run_json, "n", rp, required=False, integer=True)
        if declared_n is not None and declared_n != n:
            raise AnalysisError(rp, None, f"key 'n' is {declared_n} but the directory is {rdir.parent.name}")
        codes = run_json.get("exit_codes")
        oom = run_json.get("oom_killed") or 0
        if isinstance(codes, list) and any(c != 0 for c in codes) or (isinstance(oom, int) and oom > 0):
            raise AnalysisError(rp, None, f"exit codes {codes}, oom_killed {oom}")
        cpu = 0.0
        accesses: Optional[float] = 0.0
        mbs = set()
        procs, majs, pages = [], [], []
        for k in range(1, n + 1):
            wp = rdir / f"work-{k}.json"
            w = read_json(wp)
            procs.append(number(w, "accesses_per_s", wp, minimum=0))
            cpu += number(w, "utime_s", wp, minimum=0) + number(w, "stime_s", wp, minimum=0)
            majs.append(number(w, "majflt", wp, minimum=0))
            acc = number(w, "accesses", wp, required=False, minimum=0)
            accesses = None if acc is None or accesses is None else accesses + acc
            mb = number(w, "mb", wp, required=False, minimum=0)
            if mb is not None:
                mbs.add(mb)
            pages.append(_pages(w, wp, mb, machine.page_size))
    except AnalysisError as e:
        diag.warn_error(e, "this repeat is dropped")
        return None
    _check_starved(run_json, rp, procs, diag)
    if run_json.get("timed_out") is True:
        diag.warn(rp, "the run timed out and its work processes were stopped; kept, their JSONs "
                      "measure the part that ran")
    rep = Repeat(machine=machine.name, n=n, r=r, path=rdir, throughput=sum(procs), accesses=accesses,
                 cpu_s=cpu, majflt=sum(majs), wall_s=wall, overlap_s=overlap,
                 work_mb=mbs.pop() if len(mbs) == 1 else None,
                 processes=tuple(procs), process_majflt=tuple(majs), process_pages=tuple(pages))
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
        rows.append(row)
    return rows


def rows(cases: list[Case2]) -> list[dict]:
    return [row for case in cases for row in aggregate(case)]


def _machine_columns() -> list[Column]:
    cols = [Column("machine"), Column("n", "N", "int"), Column("repeats", "reps", "int"),
            Column("repeats_dropped", "dropped", kind="int")]
    digits = {"throughput": 0, "slowest": 0, "cpu_util": 3, "majflt_per_s": 2, "overlap_s": 2}
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


NOTES = [
    "throughput: accesses/s summed over the N processes (mean, min, max over the repeats)",
    "slowest: accesses/s of the slowest process (median over the repeats): it collapses when some "
    "processes starve, even where the sum hardly moves",
    "cpu_util: CPU time of the N processes (utime+stime, work JSONs) / wall time of the run",
    "majflt/s: major faults of the N processes per wall second (mean, max)",
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
    text = render(table, columns(), fmt, notes=NOTES)
    figures = [] if args.no_plots else plot(run, cases, cli_common.out_dir(args, run))
    cli_common.emit(text, figures, fmt)
    return 0
