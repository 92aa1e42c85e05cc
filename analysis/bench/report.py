"""The report's sections: header, overhead, handler time, fidelity, testbed overhead, targets, discussion."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from analysis.bench.bench_dir import BASELINE
from analysis.bench.discussion import discussion
from analysis.bench.fidelity import Fidelity
from analysis.bench.format import (NOT_MEASURED, display_path, f_ci, f_int, f_mib, f_over, f_pct, f_range,
                                   f_ratio, f_s, f_share)
from analysis.bench.measurements import Measurements
from analysis.bench.targets import TARGET_HANDLER_PCT, TARGET_R2, judge_targets
from analysis.load import Run, read_text
from analysis.tables import Column


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


class Report(Measurements):
    """The report as blocks (headings, paragraphs, lists, tables) and as the JSON data, section by section."""

    def __init__(self, run: Run, notes: Optional[Path]):
        super().__init__(run)
        self.notes = notes
        self.blocks: list[Block] = []
        self.data: dict = {}

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
        testbed = man.get("testbed") if isinstance(man.get("testbed"), dict) else {}
        placement = testbed.get("placement") if isinstance(testbed.get("placement"), dict) else None
        items.append("vCPUs: " + (str(placement.get("reason")) if placement else NOT_MEASURED
                                  + " (no placement in the manifest: not the local testbed, or older)"))
        self.blocks.append(Block("list", items=items))
        self.data["placement"] = placement
        pinned = placement.get("machines") if placement and isinstance(placement.get("machines"), dict) else {}
        self.data.update(run_id=run_id, date=date, git_revision=rev, git_dirty=dirty, host=host,
                         lab=tb.get("lab"), accelerator=tb.get("accelerator"))
        mrows = []
        for m in run.machines:
            f = m.facts
            mrows.append({"machine": self.labels[m.name], "ram": f"{m.memory_mb:g} MiB",
                          "swap": f_mib(f.get("swap_mb")),
                          "cpus": f.get("cpus"), "kernel": f.get("kernel"), "accelerator": f.get("accelerator"),
                          "cores": ",".join(str(c) for v in pinned.get(m.name) or [] for c in v.get("cores", []))
                          or "not pinned"})
        self.table(mrows, [S("machine"), S("ram", "RAM", True), S("swap", num=True), S("cpus", "vCPUs", True),
                           S("kernel"), S("accelerator"), S("cores", "host cores")])
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
        rows, split_rows, data = [], [], []
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
            split_rows.append(self.split_row(self.labels[name], scope, fid.profiles, d))
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
        self.table(split_rows, [S("machine"), S("scope"), S("runs", "runs with split", True),
                                S("timer", "timer late ms/tick", True), S("queue", "queue delay ms/tick", True),
                                S("tshare", "from timer", True), S("qshare", "from queue", True),
                                S("tover", "timer late > 1 jiffy", True),
                                S("qover", "queue delay > 1 jiffy", True)],
                   ["where the lateness of the same ticks comes from (deltas of /proc/pfprof/stats over each "
                    "run): timer late = the timer callback's time - the tick's due time (the host ran the vCPU "
                    "late); queue delay = the work's start - the timer callback's time (the work waited behind "
                    "runnable tasks in the guest); from timer / from queue: shares of their sum; > 1 jiffy: "
                    "ticks with more than 1000/hz ms of it",
                    "runs with split: runs whose stats have these counters; n/a: none has (a module older than "
                    "the split); -: no lateness at all"])

    @staticmethod
    def split_row(machine: str, scope: str, runs: int, d: dict) -> dict:
        """A row of the lateness split: "n/a" throughout when no run's stats have it."""
        if not d["lateness_split_runs"]:
            return {"machine": machine, "scope": scope, "runs": f"0 of {runs}",
                    **dict.fromkeys(("timer", "queue", "tshare", "qshare", "tover", "qover"), "n/a")}
        ms = [None if d[k] is None else f"{d[k]:.3f}" for k in ("timer_late_mean_ms", "queue_delay_mean_ms")]
        return {"machine": machine, "scope": scope, "runs": f"{d['lateness_split_runs']} of {runs}",
                "timer": ms[0], "queue": ms[1],
                "tshare": f_pct(d["timer_late_share_pct"], 1), "qshare": f_pct(d["queue_delay_share_pct"], 1),
                "tover": f_int(d["timer_late_ticks_over_jiffy"]), "qover": f_int(d["queue_delay_ticks_over_jiffy"])}

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
                 "(sweep - work) split into settling (settle_s), the runner outside the work (from the runner's "
                 "start, or its previous run's end, to each run's end, less wall_s and settle_s) and the "
                 "remainder: starting the runner and the sweep (Ansible, ssh, interpreter start-up) and "
                 "ending it; (%): share of the rest"]
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

    def section_targets(self) -> None:
        self.h("Targets")
        targets = judge_targets(self)
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

    def section_discussion(self) -> None:
        sentences = discussion(self)
        self.data["discussion"] = sentences
        if sentences:
            self.h("Discussion")
            self.p(" ".join(sentences))
