"""Case Study 2's figure: throughput, utilization, fault rate and PSI against N, one colour per machine.

Part of :mod:`analysis.case2`.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from analysis.case2_load import Case2
from analysis.load import Run


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
