"""The figures computed from the cells: overhead ratios with confidence intervals, handler time, its line."""
from __future__ import annotations

import math
import statistics
from typing import Optional, Sequence

from analysis.bench.bench_dir import BASELINE, Bench
from analysis.bench.targets import TARGET_R2

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal's.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z95 = 1.96


def t95(df: int) -> float:
    """The two-sided 95% t quantile for ``df`` degrees of freedom (1.96 beyond 30)."""
    return T95[df - 1] if 1 <= df <= len(T95) else Z95


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
