"""Case Study 2 over time: ``python -m analysis case2 --series [RUN]`` and the report's figures.

For the points around each machine's knee (N*-1, N* and N*+1, those the
sweep has; without a knee the two largest N), the first repeat of each that
has a profile: per process, the major-fault rate and the CPU (in CPUs) of
each of its records (the record's counts over the time since the process's
previous record) against the time since the barrier's release (the timed
window starts at 0; the fill before it is negative), and the run's total
major-fault rate over the trailing second beside the machine's in-memory
level (analysis.case2: where thrashing starts).  The slowest process
(fewest accesses/s in its work JSON) is drawn bold.

Text: per run, the course's per-tick sums (jiffies, minor, major, CPU)
grouped into half-second bins of the window, and the slowest process's own;
``--json``: every tick, summed and per process.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from analysis import case2 as c2
from analysis import knee as kn
from analysis.load import Run

BIN_S = 0.5   # text output: ticks grouped per half second of the window


def knee_n(case: c2.Case2) -> Optional[int]:
    samples = {n: [r.sample() for r in reps] for n, reps in case.repeats.items() if reps}
    return kn.find_knee(samples).n


def points(case: c2.Case2) -> list[int]:
    """N*-1, N*, N*+1 where the sweep has them; without a knee the two largest N."""
    ns = case.n_values
    k = knee_n(case)
    if k is None:
        return ns[-2:]
    i = ns.index(k)
    return ns[max(0, i - 1):i + 2]


def chosen(case: c2.Case2) -> list[c2.Repeat]:
    """The first repeat with a profile of each point (none for a point without one)."""
    out = []
    for n in points(case):
        reps = [r for r in case.repeats[n] if r.profile is not None]
        if reps:
            out.append(reps[0])
    return out


def process_series(rep: c2.Repeat, pid: int) -> list[dict]:
    """One process's records: t_s (since the window start), majflt/s and CPUs over each
    record's interval (the first record of a registration has none: left out)."""
    prof = rep.profile
    out = []
    for i, p in enumerate(prof.pid):
        prev = prof.prev_ts[i]
        if p != pid or prev is None or prof.ts[i] <= prev:
            continue
        span = (prof.ts[i] - prev) / 1e9
        out.append({"t_s": round((prof.ts[i] - rep.window_start_ns) / 1e9, 3),
                    "minflt_per_s": round(prof.minflt[i] / span, 1),
                    "majflt_per_s": round(prof.majflt[i] / span, 1),
                    "cpus": round(prof.cpu_ns[i] / 1e9 / span, 3)})
    return out


def run_json(case: c2.Case2, rep: c2.Repeat) -> dict:
    ticks = rep.profile.ticks()
    return {"machine": case.machine.name, "n": rep.n, "repeat": rep.r, "path": str(rep.path),
            "window_s": rep.window_s, "fault_level_per_s": case.fault_level_per_s,
            "thrashing_onset_s": rep.thrashing_onset_s, "thrashing_share": rep.thrashing_share,
            "slowest_pid": rep.slowest_pid,
            "ticks": [{"t_s": round((t.ts_ns - rep.window_start_ns) / 1e9, 3), "jiffies": t.jiffies,
                       "minflt": t.minflt, "majflt": t.majflt, "cpu_ns": t.cpu_ns} for t in ticks],
            "processes": {str(pid): process_series(rep, pid) for pid in rep.pids}}


def run_text(case: c2.Case2, rep: c2.Repeat) -> str:
    slow = rep.slowest_pid
    onset = "-" if rep.thrashing_onset_s is None else f"{rep.thrashing_onset_s:.2f} s"
    share = "-" if rep.thrashing_share is None else f"{100 * rep.thrashing_share:.0f}%"
    level = "-" if case.fault_level_per_s is None else f"{case.fault_level_per_s:.1f}/s"
    lines = [f"{case.machine.name} N={rep.n} r-{rep.r} ({rep.path}): window {rep.window_s:.2f} s, "
             f"in-memory level {level}, thrashing from {onset}, above it {share} of the window; "
             f"slowest process pid {slow}",
             f"{'t_s':>6}  {'ticks':>5}  {'minflt':>7}  {'majflt':>7}  {'cpu_s':>7}  "
             f"{'slow_majflt':>11}  {'slow_cpu_s':>10}"]
    bins: dict[int, list] = {}
    for t in rep.profile.ticks():
        if rep.window_start_ns < t.ts_ns <= rep.window_end_ns:
            bins.setdefault(int((t.ts_ns - rep.window_start_ns - 1) / 1e9 // BIN_S), []).append(t)
    slow_bins: dict[int, list] = {}
    if slow is not None:
        for t in rep.profile.ticks(slow):
            if rep.window_start_ns < t.ts_ns <= rep.window_end_ns:
                slow_bins.setdefault(int((t.ts_ns - rep.window_start_ns - 1) / 1e9 // BIN_S), []).append(t)
    for b in sorted(bins):
        ts = bins[b]
        ss = slow_bins.get(b, [])
        lines.append(f"{(b + 1) * BIN_S:6.1f}  {len(ts):5d}  {sum(t.minflt for t in ts):7d}  "
                     f"{sum(t.majflt for t in ts):7d}  {sum(t.cpu_ns for t in ts) / 1e9:7.3f}  "
                     f"{sum(t.majflt for t in ss):11d}  {sum(t.cpu_ns for t in ss) / 1e9:10.3f}")
    return "\n".join(lines) + "\n"


def plot(run: Run, cases: list[c2.Case2], out_dir: Path) -> list[Path]:
    """One figure per machine: a row per point around the knee, fault rate and CPU over time."""
    from analysis import plots
    plt = plots.pyplot()
    paths: list[Path] = []
    for case in cases:
        reps = chosen(case)
        if not reps:
            continue
        k = knee_n(case)
        fig, axes = plt.subplots(len(reps), 2, figsize=(12, 2.9 * len(reps) + 0.8), squeeze=False)
        for row, rep in zip(axes, reps):
            ax_f, ax_c = row
            slow = rep.slowest_pid
            for pid in rep.pids:
                pts = process_series(rep, pid)
                xs = [p["t_s"] for p in pts]
                lw, alpha = (2.2, 1.0) if pid == slow else (0.8, 0.55)
                # '_': out of the legend, still named when hovering a point (analysis.plots)
                label = f"pid {pid} (slowest)" if pid == slow else f"_pid {pid}"
                ax_f.plot(xs, [p["majflt_per_s"] for p in pts], linewidth=lw, alpha=alpha, label=label)
                ax_c.plot(xs, [p["cpus"] for p in pts], linewidth=lw, alpha=alpha, label=label)
            total = c2.fault_rate_series(rep)
            ax_f.plot([(t - rep.window_start_ns) / 1e9 for t, _ in total], [v for _, v in total],
                      color="black", linewidth=1.4, linestyle="--", label="all processes, over 1 s")
            if case.fault_level_per_s is not None:
                ax_f.axhline(case.fault_level_per_s, color="grey", linestyle=":",
                             label=f"in-memory level {case.fault_level_per_s:.1f}/s")
            if rep.thrashing_onset_s is not None:
                for ax in row:
                    ax.axvline(rep.thrashing_onset_s, color="red", linewidth=1.2, alpha=0.7)
            for ax in row:
                ax.axvspan(0, rep.window_s, color="#dddddd", alpha=0.35, linewidth=0)
                ax.grid(True, alpha=0.3)
            mark = " = N*" if rep.n == k else ""
            ax_f.set_title(f"N={rep.n}{mark} r-{rep.r}: major faults/s per process", fontsize="medium")
            ax_c.set_title(f"N={rep.n}{mark} r-{rep.r}: CPU per process (CPUs)", fontsize="medium")
            ax_f.set_yscale("symlog", linthresh=10.0)
            ax_f.set_ylim(bottom=0, top=max(ax_f.get_ylim()[1], 10))
            ax_c.set_ylim(bottom=0)
            ax_f.legend(loc="upper left", fontsize="x-small")
        for ax in axes[-1]:
            ax.set_xlabel("seconds since the barrier's release")
        fig.suptitle(f"{case.machine.name} ({case.machine.memory_mb:g} MiB): fault rate and CPU over time "
                     f"around the knee (N* = {k if k is not None else 'none'})\ngrey: the timed window, "
                     f"red: thrashing onset, bold: the slowest process")
        fig.tight_layout()
        paths += plots.save(fig, out_dir, f"case2-series-{case.machine.name}")
    return paths


def main(args, run: Run, cases: list[c2.Case2]) -> int:
    from analysis import cli_common
    runs = [(case, rep) for case in cases for rep in chosen(case)]
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps([run_json(case, rep) for case, rep in runs], indent=1) + "\n")
    else:
        for case in cases:
            if not chosen(case):
                sys.stdout.write(f"{case.machine.name}: no run with a profile around the knee "
                                 f"(N = {', '.join(map(str, points(case)))})\n")
        sys.stdout.write("\n".join(run_text(case, rep) for case, rep in runs))
    figures = [] if args.no_plots else plot(run, cases, cli_common.out_dir(args, run))
    cli_common.emit("", figures, cli_common.fmt(args))
    return 0
