"""Case Study 2's table: the repeats of each machine and N aggregated, its columns and notes.

Part of :mod:`analysis.case2`.
"""
from __future__ import annotations

import math
import statistics
from typing import Optional, Sequence

from analysis.case2_load import Case2, Repeat
from analysis.tables import Column

METRICS = ("throughput", "slowest", "cpu_util", "majflt_per_s", "minflt_per_s", "psi_some_avg10", "psi_full_avg10",
           "psi_some_pct", "psi_full_pct", "overlap_s")
MEDIANS = ("throughput", "slowest", "majflt_per_s", "cpu_util")


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
        row.update(sources(reps))
        row["utilization_cpus"] = row["cpu_util_median"]
        diffs = [rep.profile_diff for rep in reps if rep.profile_diff is not None]
        row["profile_diff_pct"] = ({k: max((d[k] for d in diffs), key=abs) for k in diffs[0]}
                                   if diffs else None)
        row["profile_diff_max_pct"] = (max(abs(v) for v in row["profile_diff_pct"].values())
                                       if diffs else None)
        row["interrupted"] = sum(rep.interrupted for rep in reps)
        row["runs"] = [rep.summary() for rep in reps]
        row["dropped_repeats"] = [d for d in case.dropped_repeats if d["n"] == n]
        rows.append(row)
    return rows


def sources(reps: Sequence[Repeat]) -> dict:
    """Where a group of runs' numbers come from: ``source`` "profile", "getrusage" or
    "mixed", ``source_counts`` ({source: runs}) and the fallbacks' reasons."""
    counts: dict[str, int] = {}
    for rep in reps:
        counts[rep.source] = counts.get(rep.source, 0) + 1
    source = next(iter(counts)) if len(counts) == 1 else "mixed"
    return {"source": source, "source_counts": counts,
            "source_reasons": [f"r-{rep.r}: {rep.source_reason}" for rep in reps if rep.source_reason]}


def rows(cases: list[Case2]) -> list[dict]:
    return [row for case in cases for row in aggregate(case)]


def _machine_columns() -> list[Column]:
    cols = [Column("machine"), Column("n", "N", "int"), Column("repeats", "reps", "int"),
            Column("repeats_dropped", "dropped", kind="int"), Column("source"),
            Column("profile_diff_max_pct", "prof_vs_rusage_%", kind="float", digits=2),
            Column("interrupted", kind="int", human=False),
            Column("utilization_cpus", kind="float", digits=3, human=False)]
    digits = {"throughput": 0, "slowest": 0, "cpu_util": 3, "majflt_per_s": 2, "minflt_per_s": 1,
              "overlap_s": 2}
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


JSON_EXTRA = ("source_counts", "source_reasons", "profile_diff_pct", "runs", "dropped_repeats")

NOTES = [
    "throughput: accesses/s summed over the N processes (mean, min, max over the repeats)",
    "slowest: accesses/s of the slowest process (median over the repeats): it collapses when some "
    "processes starve, even where the sum hardly moves",
    "source: profile (pfprof's records in the timed window, cross-checked against getrusage since "
    "registration), getrusage (the work JSONs: the profile was missing, corrupt or disagreed; the "
    "warnings say why), or mixed over the repeats (--json: source_counts, source_reasons); "
    "prof_vs_rusage_%: the largest difference between the profile and getrusage since registration "
    "(minor, major faults, CPU; % of getrusage) over the repeats (--json: profile_diff_pct)",
    "cpu_util: CPU time of the N processes over the timed window (barrier release to the last "
    "process's end) in CPUs (up to the vCPUs); on getrusage, lifetime CPU / wall time of the run",
    "majflt/s: major faults of the N processes per second of the timed window (mean, max)",
    "some/full_avg10: highest PSI memory avg10 (%) during the run; some/full_%: stall / wall time",
    "overlap_s: how long all N timed phases ran together (min over the repeats)",
]
