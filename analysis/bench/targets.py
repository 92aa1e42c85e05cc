"""The benchmark's targets, and whether each was met and by how much."""
from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.bench.format import NOT_MEASURED, f_ci, profiler_name
from analysis.bench.readers import sum_known

if TYPE_CHECKING:                # a cycle at run time: measurements -> stats -> TARGET_R2 here
    from analysis.bench.measurements import Measurements

TARGET_RATIO = 1.002             # pfprof's mean wall-time ratio
TARGET_HANDLER_PCT = 0.1         # work handler time per tick, % of interval_ms, at the largest N
TARGET_R2 = 0.9                  # "linear in the number of processes"
TARGET_IDLE_PCT = 99.9           # ticks within one jiffy, idle
TARGET_KNEE_PCT = 99.0           # ... at the thrashing point
TARGET_SWEEP_RATIO = 1.10        # sweep wall / work time, per machine
TARGET_CPU_PCT = 0.3             # pfprof's own CPU (monitor + sampling work), % of the work's wall time


def judge_targets(measurements: Measurements) -> list[dict]:
    """Every target per machine (and N), with what was measured, the limit, met or not and by how much."""
    out = []

    def add(target, label, measured, value, limit, met, by, machine=None, n=None, result=None):
        out.append({"target": target, "machine": machine, "label": label, "n": n, "measured": measured,
                    "value": value, "limit": limit, "met": met, "by": by, "result": result})

    for name, b in measurements.benches.items():
        rows = [r for r in measurements.overhead if r["machine"] == name]
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
                # By the profilers' own CPU while the work ran: pfprof's share, and its order.
                v = cpu["pfprof"]
                limit = TARGET_CPU_PCT
                add(f"pfprof CPU <= {limit:.1f}% of the work's wall time", b.label, f"{v:.2f}%", v, limit,
                    v <= limit, f"{abs(v - limit):.2f} pp", name, n)
                peers = {p: x for p, x in cpu.items() if p != "pfprof"}
                if peers:
                    low = min(peers, key=peers.get)
                    add("pfprof CPU below " + " and ".join(profiler_name(p) for p in peers), b.label,
                        ", ".join([f"pfprof {v:.2f}%"] + [f"{p} {x:.2f}%" for p, x in peers.items()]), v,
                        peers[low], all(v < x for x in peers.values()),
                        f"{abs(peers[low] - v):.2f} pp {'below' if v < peers[low] else 'above'} {low}", name, n)
        fit = measurements.fits[name]
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
    for m in measurements.run.machines:
        label = measurements.labels[m.name]
        b, sw = measurements.benches.get(m.name), measurements.sweeps.get(m.name)
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
        total = sum_known(parts)
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
    ov = measurements.overall()
    t = f"sweep step <= {TARGET_SWEEP_RATIO} x work time (testbed.json)"
    if ov is None or ov.get("ratio") is None:
        add(t, "all machines", NOT_MEASURED, None, TARGET_SWEEP_RATIO, None, None)
    else:
        add(t, f"all machines, against {ov['label']}", f"{ov['ratio']:.3f}x", ov["ratio"], TARGET_SWEEP_RATIO,
            ov["ratio"] <= TARGET_SWEEP_RATIO, f"{abs(TARGET_SWEEP_RATIO - ov['ratio']):.3f}")
    return out
