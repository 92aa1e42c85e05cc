"""Case Study 1: accumulated minor and major faults per process and pair, beside the arithmetic.

Per machine, per pair (``RUN/<machine>/case1/pair-*/``):

- a figure (``case1-<machine>.png/.svg``): accumulated minor faults (top row)
  and major faults (bottom row) of each process against time, in seconds since
  the pair's first profile record, from profile.csv (the per-sample deltas
  summed per pid);
- a table of totals per process, and per pair: minor and major faults from
  the profile (``minflt_profile``, ``majflt_profile``: faults since the
  process registered) and from the process's own getrusage in its work JSON
  (``minflt_work``, ``majflt_work``: its whole life), beside the expectation.

The expectation.  P = mb x 1 MiB / page size (the work JSON's ``page_size``,
else facts.json's, else 4 KiB) pages, A = ``accesses`` of the timed phase (work JSON).
``first_touch`` = P x (1 - exp(-A/P)) is the expected number of distinct pages
that A uniformly random accesses touch in a fresh region of P pages: each page
escapes all A accesses with probability (1 - 1/P)^A ~ exp(-A/P).  It is only
meaningful for R mode (L mode's accesses are not independent; the column is
empty).  ``expected_minflt`` is what the process should show in total:

- with the fill (case1/params.json ``fill`` true; without that key, the work
  JSON's own ``fill``, else its ``fill_s`` > 0), every page is first-touched before the timed
  phase, so the expected count is P whatever A is; the random accesses then
  touch no new page and P x (1 - exp(-A/P)) only says how much of the region
  the timed phase alone would have covered;
- without the fill (the course's setting), it is P x (1 - exp(-A/P)) for R
  mode, and unknown for L mode.

Neither counts the few hundred faults of a process's start-up (binary, libc,
stack), nor page-table or transparent-huge-page effects (a huge page is one
fault for 512 pages).  Expected major faults: 0, when the pair fits in memory.

``ratio`` = ``minflt_profile`` / ``expected_minflt`` (the profile counts from
the registration, so start-up before it is left out); ``flag`` says
``over`` or ``under`` when the ratio is more than RATIO_TOLERANCE (2%) from 1,
so a difference that the arithmetic does not explain is never left to the
reader's eye.  Rows without an expectation (L mode without the fill) have
neither.

The figure draws each process's expected curve (dashed, thin) beside the
measured one: without the fill, P x (1 - exp(-a(t)/P)) with a(t) the accesses
done by time t, taken as uniform over the timed phase (the work JSON's
``start_mono_ns`` to ``end_mono_ns``, the profile's clock); with the fill, a
rise to P over the fill (``fill_s`` before the timed phase), then flat.

Bad input: Case Study 1 has one run per pair, so any missing or corrupt file
(params.json, profile.csv, a work JSON) is an error naming the file and line.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from analysis.errors import AnalysisError
from analysis.load import Machine, Run, number, read_csv, read_json
from analysis.tables import Column

PROFILE_COLUMNS = {"ts_ns": int, "jiffies": int, "pid": int, "minflt": int,
                   "majflt": int, "cpu_ns": int, "flags": int}
WORK_RE = re.compile(r"^work-(\d+)\.json$")
LINESTYLES = ["-", "--", "-.", ":"]
RATIO_TOLERANCE = 0.02       # measured / expected minor faults beyond 1 +- this is flagged
RATIO_DIGITS = 3             # the ratio as shown; the flag judges that, so the two never disagree


@dataclass
class Process:
    k: int
    path: Path
    pid: int
    mode: str
    mb: float
    accesses: float
    per_iteration: Optional[float]
    minflt_work: float
    majflt_work: float
    fill: bool
    page_size: Optional[int] = None
    start_ns: Optional[int] = None     # the timed phase, CLOCK_MONOTONIC like the profile's ts_ns
    end_ns: Optional[int] = None
    fill_s: Optional[float] = None

    def pages(self, default_page_size: int) -> float:
        return self.mb * 1024 * 1024 / (self.page_size or default_page_size)

    def expected_at(self, ts_ns: Sequence[int], default_page_size: int) -> Optional[list[float]]:
        """The expected accumulated minor faults at each of ``ts_ns`` (see the module
        docstring); None when there is no expectation or no timed phase to place it."""
        if self.start_ns is None or self.end_ns is None or self.end_ns <= self.start_ns:
            return None
        pages = self.pages(default_page_size)
        if self.fill:
            fill_ns = (self.fill_s or 0.0) * 1e9
            begin = self.start_ns - fill_ns
            return [pages * min(1.0, max(0.0, (t - begin) / fill_ns)) if fill_ns > 0 else
                    (pages if t >= self.start_ns else 0.0) for t in ts_ns]
        if self.mode != "R":
            return None
        span = self.end_ns - self.start_ns
        return [first_touch(pages, self.accesses * min(1.0, max(0.0, (t - self.start_ns) / span)))
                for t in ts_ns]


@dataclass
class Pair:
    machine: Machine
    name: str
    processes: list[Process]
    profile: dict  # column -> list


def first_touch(pages: float, accesses: float) -> float:
    """Expected distinct pages touched by ``accesses`` uniform random accesses over ``pages``."""
    if pages <= 0:
        return 0.0
    return pages * -math.expm1(-accesses / pages)


def _fill_flag(params: dict, path: Path) -> Optional[bool]:
    for key in ("fill", "case1_fill"):
        if key in params:
            v = params[key]
            if not isinstance(v, bool):
                raise AnalysisError(path, None, f"key '{key}': expected true or false, found {v!r}")
            return v
    return None


def load_machine(machine: Machine) -> list[Pair]:
    base = machine.dir / "case1"
    if not base.is_dir():
        raise AnalysisError(base, None, "no such directory (no Case Study 1 results for this machine)")
    params_path = base / "params.json"
    fill = _fill_flag(read_json(params_path), params_path)
    pair_dirs = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("pair-"))
    if not pair_dirs:
        raise AnalysisError(base, None, "no pair-* directory")
    pairs = []
    for pdir in pair_dirs:
        works = sorted((int(m.group(1)), p) for p in pdir.iterdir() if (m := WORK_RE.match(p.name)))
        if not works:
            raise AnalysisError(pdir / "work-1.json", None, "no such file")
        procs = [_process(k, wp, fill) for k, wp in works]
        profile = read_csv(pdir / "profile.csv", PROFILE_COLUMNS,
                           nonnegative=("minflt", "majflt", "cpu_ns"))
        pairs.append(Pair(machine=machine, name=pdir.name, processes=procs, profile=profile))
    return pairs


def _process(k: int, wp: Path, fill: Optional[bool]) -> Process:
    w = read_json(wp)
    mode = w.get("mode")
    if mode not in ("R", "L"):
        raise AnalysisError(wp, None, f"key 'mode': expected \"R\" or \"L\", found {mode!r}")
    if fill is None:
        own = w.get("fill")
        fill = own if isinstance(own, bool) else bool(number(w, "fill_s", wp, required=False, minimum=0))
    return Process(k=k, path=wp, pid=number(w, "pid", wp, integer=True, minimum=1), mode=mode,
                   mb=number(w, "mb", wp, minimum=0), accesses=number(w, "accesses", wp, minimum=0),
                   per_iteration=number(w, "accesses_per_iteration", wp, required=False),
                   minflt_work=number(w, "minflt", wp, minimum=0),
                   majflt_work=number(w, "majflt", wp, minimum=0), fill=fill,
                   page_size=number(w, "page_size", wp, required=False, integer=True, minimum=1),
                   start_ns=number(w, "start_mono_ns", wp, required=False, integer=True, minimum=0),
                   end_ns=number(w, "end_mono_ns", wp, required=False, integer=True, minimum=0),
                   fill_s=number(w, "fill_s", wp, required=False, minimum=0))


def load(run: Run) -> list[Pair]:
    return [pair for m in run.machines for pair in load_machine(m)]


def _sum_by_pid(profile: dict, column: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for pid, v in zip(profile["pid"], profile[column]):
        out[pid] = out.get(pid, 0) + v
    return out


def rows(run: Run, pairs: list[Pair]) -> list[dict]:
    out = []
    for pair in pairs:
        minf = _sum_by_pid(pair.profile, "minflt")
        majf = _sum_by_pid(pair.profile, "majflt")
        prows = []
        for p in pair.processes:
            if p.pid not in minf:
                run.diag.warn(pair.machine.dir / "case1" / pair.name / "profile.csv",
                              f"no record of pid {p.pid} ({p.path.name}); profile columns left empty")
            pages = p.pages(pair.machine.page_size)
            ft = first_touch(pages, p.accesses) if p.mode == "R" else None
            prows.append({
                "machine": pair.machine.name, "pair": pair.name, "proc": f"work-{p.k}", "pid": p.pid,
                "mode": p.mode, "fill": "yes" if p.fill else "no", "mb": p.mb, "accesses": p.accesses,
                "pages": pages, "minflt_profile": minf.get(p.pid), "majflt_profile": majf.get(p.pid),
                "minflt_work": p.minflt_work, "majflt_work": p.majflt_work,
                "first_touch": ft, "expected_minflt": pages if p.fill else ft,
            })
        total = {"machine": pair.machine.name, "pair": pair.name, "proc": "total"}
        for key in ("mb", "accesses", "pages", "minflt_profile", "majflt_profile", "minflt_work",
                    "majflt_work", "first_touch", "expected_minflt"):
            vals = [r[key] for r in prows]
            total[key] = None if any(v is None for v in vals) else sum(vals)
        for r in prows + [total]:
            r["ratio"], r["flag"] = ratio_flag(r["minflt_profile"], r["expected_minflt"])
        out += prows + [total]
    return out


def ratio_flag(measured: Optional[float], expected: Optional[float]) -> tuple:
    """measured / expected and ``over``/``under`` beyond RATIO_TOLERANCE ("" within it);
    (None, None) without both numbers."""
    if measured is None or not expected:
        return None, None
    ratio = measured / expected
    shown = round(ratio, RATIO_DIGITS)
    if shown > 1 + RATIO_TOLERANCE:
        return ratio, "over"
    if shown < 1 - RATIO_TOLERANCE:
        return ratio, "under"
    return ratio, ""


COLUMNS = [
    Column("machine"), Column("pair"), Column("proc"), Column("pid", kind="int"),
    Column("mode"), Column("fill"), Column("mb", kind="float", digits=0),
    Column("accesses", kind="int"), Column("pages", kind="int"),
    Column("minflt_profile", "minflt(prof)", kind="int"), Column("majflt_profile", "majflt(prof)", kind="int"),
    Column("minflt_work", "minflt(work)", kind="int"), Column("majflt_work", "majflt(work)", kind="int"),
    Column("first_touch", "P(1-e^-A/P)", kind="float", digits=0),
    Column("expected_minflt", "expected", kind="float", digits=0),
    Column("ratio", "prof/expected", kind="float", digits=RATIO_DIGITS),
    Column("flag"),
]

NOTES = [
    "P: pages of the region (mb x 1 MiB / page size); A: accesses of the timed phase (work JSON)",
    "P(1-e^-A/P): first touches expected of A uniformly random accesses over P fresh pages (R mode)",
    "expected: minor faults expected in all: P with the fill (it first-touches every page, so the "
    "random accesses add none), P(1-e^-A/P) without it (R mode); start-up faults (~100-300) not included",
    "(prof): since registration, summed from profile.csv; (work): the process's getrusage at exit",
    "prof/expected: minflt(prof) / expected; flag: over or under when more than 2% from 1",
]


# --------------------------------------------------------------------------- figure

def plot(run: Run, pairs: list[Pair], out_dir: Path) -> list[Path]:
    from analysis import plots
    plt = plots.pyplot()
    paths: list[Path] = []
    for m in run.machines:
        mpairs = [p for p in pairs if p.machine is m]
        if not mpairs:
            continue
        fig, axes = plt.subplots(2, len(mpairs), figsize=(5.5 * len(mpairs) + 1, 7), squeeze=False)
        for col, pair in enumerate(mpairs):
            prof = pair.profile
            t0 = min(prof["ts_ns"]) if prof["ts_ns"] else 0
            by_pid: dict[int, list[tuple[int, int, int]]] = {}
            for ts, pid, mi, ma in zip(prof["ts_ns"], prof["pid"], prof["minflt"], prof["majflt"]):
                by_pid.setdefault(pid, []).append((ts, mi, ma))
            names = {p.pid: p for p in pair.processes}
            for i, (pid, recs) in enumerate(sorted(by_pid.items(), key=lambda kv: (names[kv[0]].k if kv[0] in names else 1 << 30, kv[0]))):
                recs.sort()
                ts = [(r[0] - t0) / 1e9 for r in recs]
                acc_min, acc_maj, a, b = [], [], 0, 0
                for _, mi, ma in recs:
                    a += mi
                    b += ma
                    acc_min.append(a)
                    acc_maj.append(b)
                p = names.get(pid)
                label = (f"work-{p.k} {p.mode} {p.mb:g} MiB" + (f", {p.per_iteration:g}/iter" if p.per_iteration else "")
                         + f" (pid {pid})") if p else f"pid {pid} (no work JSON)"
                style = dict(color=m.colour, linestyle=LINESTYLES[i % len(LINESTYLES)],
                             drawstyle="steps-post", label=label, alpha=1.0 if i == 0 else 0.75)
                axes[0][col].plot(ts, acc_min, **style)
                axes[1][col].plot(ts, acc_maj, **style)
                expected = p.expected_at([r[0] for r in recs], m.page_size) if p else None
                if expected is not None:
                    axes[0][col].plot(ts, expected, color="black", linestyle=style["linestyle"], linewidth=0.9,
                                      alpha=0.8, label=f"work-{p.k} expected")
            axes[0][col].set_title(f"{pair.name}")
            axes[0][col].set_ylabel("accumulated minor faults")
            axes[1][col].set_ylabel("accumulated major faults")
            axes[1][col].set_xlabel("time since the first record (s)")
            axes[0][col].legend(loc="best", fontsize="small")
            for ax in (axes[0][col], axes[1][col]):
                ax.grid(True, alpha=0.3)
                ax.ticklabel_format(axis="y", style="plain", useOffset=False)
                _, top = ax.get_ylim()
                ax.set_ylim(0, max(top, 1))
        fig.suptitle(f"Case Study 1 on {m.name} ({m.memory_mb:g} MiB RAM): faults per process")
        fig.tight_layout()
        paths += plots.save(fig, out_dir, f"case1-{m.name}")
    return paths


# --------------------------------------------------------------------------- command

def main(args) -> int:
    from analysis import cli_common
    from analysis.tables import render
    run = cli_common.open_run(args)
    pairs = load(run)
    table = rows(run, pairs)
    fmt = cli_common.fmt(args)
    text = render(table, COLUMNS, fmt, notes=NOTES)
    figures = [] if args.no_plots else plot(run, pairs, cli_common.out_dir(args, run))
    cli_common.emit(text, figures, fmt)
    return 0
