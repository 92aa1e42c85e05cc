"""The discussion: sentences generated from the numbers."""
from __future__ import annotations

from analysis.bench.format import f_over, profiler_name
from analysis.bench.measurements import Measurements


def discussion(measurements: Measurements) -> list[str]:
    out = []
    for name, b in measurements.benches.items():
        rows = [r for r in measurements.overhead if r["machine"] == name and r["ratio_mean"] is not None]
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
    timed = [(m, measurements.sweeps[m.name].timing) for m in measurements.run.machines
             if measurements.sweeps.get(m.name) is not None and measurements.sweeps[m.name].timing.ratio is not None]
    if timed:
        m, t = max(timed, key=lambda mt: mt[1].ratio)
        comps = t.components()
        s = (f"The testbed's own overhead is largest on {measurements.labels[m.name]}: the sweep took {t.ratio:.2f}x "
             f"its {t.work_s:.0f} s of work")
        over = t.overhead_s
        if comps and over and over > 0:
            name_, v = max(comps, key=lambda c: c[1])
            s += (f"; of the {over:.0f} s beyond the work, " + ", ".join(
                f"{c} took {x:.0f} s ({100 * x / over:.0f}%)" for c, x in comps)
                  + f": the largest part is {name_}")
        out.append(s + ".")
    return out
