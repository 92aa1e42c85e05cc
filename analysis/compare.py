"""The headline: one row per machine, its thrashing point N* beside the working-set prediction.

Columns (and keys of ``--json``):

- ``machine``, ``memory_mb`` (facts.json, else the lab), ``mem_available_mb``
  (``mem_available_kb`` / 1024 as read right before case 2 started: from
  case2/params.json, else facts.json), ``work_mb`` (case2/params.json);
- ``predicted_n``: Denning's working-set prediction, ``mem_available_mb / work_mb``
  (the N at which the processes' memory equals the available memory; null
  without ``mem_available_kb``);
- ``onset_n``: the smallest N whose major-fault rate is far above the
  in-memory runs' (test (a) of the rule below in at least half of the
  repeats), collapse or not: where paging starts, at or before N* (null: no
  N of the sweep paged);
- ``thrashing_n``: N*, by the rule below (null: no knee inside the sweep);
- ``thrashing_after``: the largest N of the sweep below N* that did not
  thrash: the knee lies in (thrashing_after, thrashing_n], an interval where
  the sweep has gaps (the text then says "N* in (a, b]"); null without a knee
  or when N* is the first N of the sweep;
- ``peak_throughput`` / ``peak_n``: the highest per-N median throughput and its N;
- ``throughput_at_n``, ``majflt_per_s_at_n``: the median summed throughput and
  median major-fault rate at N*;
- ``starved_at_n``: how many processes starved at N* (ran below E(N*)/20,
  median over the repeats), ``slowest_at_n``: the slowest process's
  accesses/s at N* (median over the repeats): the collapse that the sum hides
  when Linux thrashes unfairly;
- ``repeats_thrashing_at_n``: the repeats' votes at N*;
- ``kernel``, ``suite``, ``swap_type``, ``mglru``, ``cpus``, ``sysctl``
  (and ``zswap_compressor``): what the machine was, read back from it
  (analysis.machines); always in JSON, as text columns where they differ
  between the run's machines;
- ``thrashing_onset_s``, ``thrashing_share``: at N* (medians over its
  repeats), when in the timed window the major-fault rate first exceeded the
  machine's in-memory level (s since the barrier's release) and the share of
  the window above it (analysis.case2; null without profiles);
- ``source``: where the machine's rates come from, "profile", "getrusage"
  or "mixed" (JSON also ``source_counts``: runs per source);
- ``n_values`` (the N of the sweep with a usable repeat); in JSON also
  ``dropped_repeats`` (every repeat left out: {n, repeat, reason}),
  ``fault_level_per_s`` (the in-memory level of the onset), and, at
  N*: ``collapse_at_n`` (what collapsed: ``sum``, ``starved``),
  ``baseline_n_values`` (the smaller N >= 2 whose in-memory runs make the
  baseline; ``[1]`` when N=1 alone ran in memory: it gives only F0),
  ``baseline_throughput`` (T0), ``expected_process_throughput`` (E(N*)),
  ``starved_threshold`` (E(N*)/20; these three null without a speed baseline),
  ``fault_threshold_per_s``; ``reasons``: the tests that fired at N*, each
  ``{"test", "value", "limit", "margin"}`` (margin: how many times past its
  limit; ``paging``: major faults/s against max(50/s, 20 x F0); ``sum``:
  accesses/s under 0.5 x T0; ``paging_bound``: major faults per access from
  0.001 up, without a speed baseline; ``starved``: the slowest process's
  accesses/s under the limit ``against`` E(N)/20 or fastest/20, with the
  number of starved ``processes``), the text prints them as one note per
  machine; and the ``anomalies`` and ``notes`` (disagreeing repeats, paging
  without a collapse, anomalies).

Python API: :func:`compare_rows` (``run_dir -> list[dict]``, the JSON objects)
and :func:`render_table` (those rows as text, csv, markdown or json).

Several runs (``compare RUN RUN ...``, :func:`compare_runs_rows`): the rows
of every run in the order given, each with ``run`` (the run directory's
name, ``latest`` resolved; ``PARENT/NAME`` where two share a name) and
``machine`` its own name; text, Markdown and the figure (``compare-runs``)
name each row ``RUN/MACHINE``; the attribute columns are those that differ
across all the rows. One RUN prints exactly what it always did.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

from analysis import case2 as c2
from analysis import knee as kn
from analysis import machines as mach
from analysis.errors import Diagnostics
from analysis.load import Run
from analysis.tables import Column, json_rows, render

if __doc__:  # (None under python -OO)
    __doc__ += "\nThe thrashing point N* (analysis.knee)\n\n" + kn.RULE

COLUMNS = [
    Column("machine"),
    Column("memory_mb", kind="int"),
    Column("mem_available_mb", "avail_mb", kind="float", digits=1),
    Column("work_mb", kind="float", digits=1),
    Column("predicted_n", kind="float", digits=2),
    Column("onset_n", "onset", kind="int"),
    Column("thrashing_n", kind="int"),
    Column("thrashing_after", "after", kind="int"),
    Column("peak_throughput", kind="si", digits=0),
    Column("peak_n", kind="int"),
    Column("throughput_at_n", "throughput_at_n*", kind="si", digits=0),
    Column("majflt_per_s_at_n", "majflt/s_at_n*", kind="float", digits=1),
    Column("starved_at_n", "starved_at_n*", kind="g", digits=1),
    Column("slowest_at_n", "slowest_at_n*", kind="si", digits=0),
    Column("repeats_thrashing_at_n", "votes_at_n*"),
    Column("thrashing_onset_s", "onset_s_at_n*", kind="float", digits=2),
    Column("thrashing_share", "share_above_at_n*", kind="float", digits=2),
    Column("n_values", "sweep", kind="ranges"),
    Column("source"),
]
JSON_EXTRA = mach.ATTRIBUTES + ("zswap_compressor", "collapse_at_n", "baseline_n_values", "baseline_throughput",
                                 "expected_process_throughput", "starved_threshold", "fault_threshold_per_s",
                                 "fault_level_per_s", "source_counts", "dropped_repeats", "reasons", "anomalies",
                                 "notes")


def machine_row(run: Run, case: c2.Case2) -> dict:
    m = case.machine
    work = c2.work_mb(case, run.diag)
    samples = {n: [r.sample() for r in reps] for n, reps in case.repeats.items() if reps}
    knee = kn.find_knee(samples)
    avail = c2.mem_available_mb(case)
    if avail is None:
        run.diag.warn(m.dir / "facts.json", "no usable 'mem_available_kb' (nor in case2/params.json); "
                                            "predicted_n left empty")
    peak = max(knee.points, key=lambda p: p.throughput)
    at = knee.point(knee.n)
    at_reps = case.repeats.get(knee.n, []) if at else []
    onsets = [r.thrashing_onset_s for r in at_reps if r.thrashing_onset_s is not None]
    shares = [r.thrashing_share for r in at_reps if r.thrashing_share is not None]
    src = c2.sources([r for reps in case.repeats.values() for r in reps])
    return {
        "machine": m.name,
        "memory_mb": m.memory_mb,
        "mem_available_mb": avail,
        "work_mb": work,
        "predicted_n": None if avail is None else avail / work,
        "onset_n": knee.onset,
        "thrashing_n": knee.n,
        "thrashing_after": knee.after,
        "peak_throughput": peak.throughput,
        "peak_n": peak.n,
        "throughput_at_n": at.throughput if at else None,
        "majflt_per_s_at_n": at.majflt_per_s if at else None,
        "starved_at_n": at.starved if at else None,
        "slowest_at_n": at.slowest if at else None,
        "repeats_thrashing_at_n": at.votes_text if at else None,
        "thrashing_onset_s": _round(_median(onsets), 2) if onsets else None,
        "thrashing_share": _round(_median(shares), 3) if shares else None,
        "n_values": case.n_values,
        "source": src["source"],
        "source_counts": src["source_counts"],
        "fault_level_per_s": _round(case.fault_level_per_s, 2),
        "dropped_repeats": case.dropped_repeats,
        "collapse_at_n": at.reasons if at else None,
        "baseline_n_values": list(at.baseline.ns) if at else None,
        "baseline_throughput": _round(at.baseline_throughput if at else None, 0),
        "expected_process_throughput": _round(at.expected_process if at else None, 0),
        "starved_threshold": _round(at.starved_threshold if at else None, 1),
        "fault_threshold_per_s": None if at is None else round(at.fault_threshold, 1),
        "reasons": [_rounded(d) for d in at.reason_details()] if at else None,
        "anomalies": knee.anomalies,
        "notes": knee.notes,
        **mach.attributes(run.manifest, m.name, m.facts),
        "_knee": knee,
        "_case": case,
    }


def _round(v: Optional[float], digits: int) -> Optional[float]:
    return None if v is None else round(v, digits)


def _rounded(reason: dict) -> dict:
    """A reason of analysis.knee for JSON: rates to 0.1, faults per access to 6 decimals."""
    out = dict(reason)
    for key in ("value", "limit"):
        v = out[key]
        if isinstance(v, float) and math.isfinite(v):
            out[key] = round(v, 6 if reason["test"] == "paging_bound" else 1)
        elif isinstance(v, float):
            out[key] = None     # paging-bound with no access at all
    return out


def knee_text(row: dict) -> Optional[str]:
    """One line per machine with a knee: N* (with its interval where the sweep has gaps)
    and the tests that fired, by what margin (from the row's JSON keys)."""
    n, after = row.get("thrashing_n"), row.get("thrashing_after")
    if n is None:
        return None
    where = f"N*={n}"
    if after is not None and n - after > 1:
        where += f" in ({after}, {n}]"
    return f"{row['machine']}: {where}: {kn.reasons_text(row.get('reasons') or [], n)}"


def rows_for(run: Run, cases: Optional[list] = None) -> list[dict]:
    cases = cases if cases is not None else c2.load(run)
    return [machine_row(run, case) for case in cases]


def compare_rows(run_dir: Union[str, Path], diag: Optional[Diagnostics] = None) -> list[dict]:
    """The compare table of a run directory as JSON-ready dicts (what ``--json`` prints).

    Warnings go to ``diag`` (default: printed to stderr); a bad run raises
    :class:`analysis.errors.AnalysisError`.
    """
    run = Run(run_dir, diag if diag is not None else Diagnostics())
    return json_rows(rows_for(run), COLUMNS, JSON_EXTRA)


def notes_of(rows: Sequence[dict]) -> list[str]:
    notes = [t for t in (knee_text(r) for r in rows) if t]
    for r in rows:
        notes += [f"note: {r['machine']}: {n}" for n in r.get("notes", [])]
        notes += [f"dropped: {r['machine']}: N={d['n']} r-{d['repeat']}: {d['reason']}"
                  for d in r.get("dropped_repeats", [])]
    if notes or rows:
        notes.append("N*: the smallest N whose major-fault rate is far above the in-memory runs' and whose "
                     "progress collapsed: the summed throughput fell below half of the in-memory runs' "
                     "of smaller N >= 2, or at least one process starved (below 1/20 of the speed a process "
                     "had in memory); null: no knee in the sweep (the rule: python -m analysis compare "
                     "--help). onset: the smallest N whose major-fault rate is far above the in-memory "
                     "runs', collapse or not (at or before N*).")
        notes.append("onset_s_at_n*, share_above_at_n*: when the major-fault rate (over the trailing "
                     "second, from the profile) first exceeded the machine's in-memory level, in seconds "
                     "since the barrier's release, and the share of the timed window above it (medians "
                     "over N*'s repeats); source: where the rates come from (profile, getrusage or "
                     "mixed, see python -m analysis case2).")
        notes.append("starved_at_n*, slowest_at_n*: starved processes and the slowest process's "
                     "accesses/s at N* (medians over the repeats); Linux thrashes unfairly, so these "
                     "collapse while the sum may hardly move.")
    return notes


def columns_for(rows: Sequence[dict]) -> list[Column]:
    """COLUMNS, with a column after memory_mb for every machine attribute that differs."""
    differ = mach.differing(rows)
    extra = [Column(a, mach.HEADERS[a]) for a in differ]
    at = [c.key for c in COLUMNS].index("memory_mb") + 1
    return COLUMNS[:at] + extra + COLUMNS[at:]


def render_table(rows: Sequence[dict], fmt: str = "text") -> str:
    """Rows from :func:`compare_rows` (or the internal rows) as text, csv, markdown or json."""
    shown = [{**r, **{a: mach.describe(r.get(a)) for a in mach.differing(rows)}} for r in rows] \
        if fmt in ("text", "markdown", "csv") else rows
    return render(shown, columns_for(rows), fmt, notes=notes_of(rows), extra_json=JSON_EXTRA)


# --------------------------------------------------------------------------- figure

def plot(run: Optional[Run], rows: list[dict], out_dir: Path, stem: str = "compare") -> list[Path]:
    """The figure; each row's series is named by its ``machine`` and drawn in its
    ``_colour`` (default: the machine's colour in its run)."""
    from analysis import plots
    plt = plots.pyplot()
    fig, (ax_t, ax_u) = plt.subplots(2, 1, figsize=(9, 8), sharex=True,
                                     gridspec_kw={"height_ratios": [3, 2]})
    differ = mach.differing(rows)
    for row in rows:
        case: c2.Case2 = row["_case"]
        knee: kn.Knee = row["_knee"]
        colour = row.get("_colour") or case.machine.colour
        name = row["machine"]
        ns = [p.n for p in knee.points]
        thr = [max(p.throughput, 1.0) for p in knee.points]
        util = [_median([r.cpu_util for r in case.repeats[n]]) for n in ns]
        label = mach.label(row, differ)
        ax_t.plot(ns, thr, "-o", color=colour, label=label, markersize=4)
        slow = [(p.n, max(p.slowest, 1.0)) for p in knee.points if p.slowest is not None]
        if slow:
            ax_t.plot([n for n, _ in slow], [v for _, v in slow], "--", color=colour, marker="v",
                      markersize=4, label=f"{name}: slowest process")
        ax_u.plot(ns, util, "-o", color=colour, label=label, markersize=4)
        if util:  # where utilization peaked: the course's curve rises to it, then falls
            peak_u = max(range(len(ns)), key=lambda i: util[i])
            ax_u.plot([ns[peak_u]], [util[peak_u]], marker="^", markersize=11, color=colour,
                      markeredgecolor="black", linestyle="none")
            ax_u.annotate(f"peak N={ns[peak_u]}", (ns[peak_u], util[peak_u]), textcoords="offset points",
                          xytext=(6, 6), fontsize="small", color=colour)
        if knee.n is not None:
            for ax in (ax_t, ax_u):
                ax.axvline(knee.n, color=colour, linestyle="-", linewidth=2.2, alpha=0.55)
            p = knee.point(knee.n)
            ax_t.plot([knee.n], [max(p.throughput, 1.0)], marker="v", markersize=12, color=colour,
                      markeredgecolor="black", linestyle="none", label=f"{name}: N* = {knee.n}")
        if row["predicted_n"] is not None:
            for ax in (ax_t, ax_u):
                ax.axvline(row["predicted_n"], color=colour, linestyle=":", linewidth=1.6)
            ax_t.plot([], [], color=colour, linestyle=":",
                      label=f"{name}: predicted {row['predicted_n']:.1f}")
    ax_t.set_yscale("log")
    ax_t.set_ylabel("accesses/s (median over repeats;\nsolid: sum over N, dashed: slowest process)")
    ax_u.set_ylabel("CPU utilization in CPUs\n(CPU s / wall s, median; ▲ peak)")
    ax_u.set_xlabel("N (processes)")
    for ax in (ax_t, ax_u):
        ax.grid(True, alpha=0.3)
        plots.integer_ticks(ax)
    ax_t.legend(loc="best", fontsize="small")
    ax_t.set_title("Thrashing point per machine: solid vertical line and triangle N*, dotted line the "
                   "working-set prediction;\ndashed curve the slowest process (it collapses where the "
                   "sum may hardly move)", fontsize="medium")
    fig.tight_layout()
    return plots.save(fig, out_dir, stem)


def _median(values: list[float]) -> float:
    import statistics
    return statistics.median(values)


# --------------------------------------------------------------------------- several runs

def run_names(runs: Sequence[Run]) -> list[str]:
    """Each run's name in the rows: its directory's name (``latest`` resolved to the
    run it points at); where two runs share it, with the parent directory's
    name before it (``other/20261125-...``)."""
    from analysis.errors import AnalysisError
    real = [r.path.resolve() for r in runs]
    for i, p in enumerate(real):
        if p in real[:i]:
            raise AnalysisError(runs[i].path, None, f"the same run twice (as {runs[real.index(p)].path})")
    names = [p.name for p in real]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in real]


def rows_of_runs(runs: Sequence[Run]) -> list[dict]:
    """The rows of every run, in the order given, each with its ``run`` (the run's name)."""
    rows = []
    for name, run in zip(run_names(runs), runs):
        rows += [{"run": name, **r} for r in rows_for(run)]
    return rows


def compare_runs_rows(run_dirs: Sequence[Union[str, Path]], diag: Optional[Diagnostics] = None) -> list[dict]:
    """The compare rows of several runs as JSON-ready dicts (``compare RUN RUN ... --json``):
    those of :func:`compare_rows` with ``run`` first."""
    d = diag if diag is not None else Diagnostics()
    rows = rows_of_runs([Run(p, d) for p in run_dirs])
    return json_rows(rows, [Column("run")] + columns_for(rows), JSON_EXTRA)


def named(rows: Sequence[dict]) -> list[dict]:
    """The rows with ``machine`` named RUN/MACHINE, for people (text, Markdown, the figure)."""
    return [{**r, "machine": f"{r['run']}/{r['machine']}"} for r in rows]


def render_runs_table(rows: Sequence[dict], fmt: str = "text") -> str:
    """Rows of several runs (:func:`rows_of_runs`): text and Markdown name each row RUN/MACHINE;
    csv and json keep ``machine`` and add a ``run`` column before it."""
    if fmt in ("text", "markdown"):
        return render_table(named(rows), fmt)
    columns = [Column("run")] + columns_for(rows)
    shown = [{**r, **{a: mach.describe(r.get(a)) for a in mach.differing(rows)}} for r in rows] \
        if fmt == "csv" else rows
    return render(shown, columns, fmt, extra_json=JSON_EXTRA)


def plot_runs(rows: list[dict], out_dir: Path) -> list[Path]:
    """The figure of several runs: one series per RUN/MACHINE, one colour each."""
    from analysis.load import PALETTE
    series = [{**r, "_colour": PALETTE[i % len(PALETTE)]} for i, r in enumerate(named(rows))]
    return plot(None, series, out_dir, stem="compare-runs")


# --------------------------------------------------------------------------- command

def resolve(run: str) -> str:
    """RUN as given, or, when no such path exists and it is a bare name, that run
    under the results directory (``compare 20261129-063424-case2 ...`` as
    ``python -m analysis runs`` lists them)."""
    if os.path.exists(run) or os.sep in run or run in (".", ".."):
        return run
    from thrashlab.paths import results_root
    under = results_root() / run
    return str(under) if under.is_dir() else run


def main(args) -> int:
    from analysis import cli_common
    args.run = [resolve(r) for r in args.run] if isinstance(args.run, list) else resolve(args.run)
    if isinstance(args.run, list):  # several runs
        diag = Diagnostics()
        runs = [Run(p, diag) for p in args.run]
        rows = rows_of_runs(runs)
        fmt = cli_common.fmt(args)
        text = render_runs_table(rows, fmt)
        figures = [] if args.no_plots else plot_runs(rows, cli_common.out_dir(args, runs[0]))
        cli_common.emit(text, figures, fmt)
        return 0
    run = cli_common.open_run(args)
    rows = rows_for(run)
    fmt = cli_common.fmt(args)
    text = render_table(rows, fmt)
    figures = [] if args.no_plots else plot(run, rows, cli_common.out_dir(args, run))
    cli_common.emit(text, figures, fmt)
    return 0
