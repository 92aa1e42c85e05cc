"""``python -m analysis export RUN``: the run as one tidy long table, one row per process.

One row per machine x case x N x repeat x process for Case Study 2, and per
machine x pair x process for Case Study 1, with the machine's attributes
repeated on every row, so that a pandas user can group by any of them.  The
runs are those the other subcommands analyse: read by :mod:`analysis.case2`
and :mod:`analysis.case1` (a dropped Case 2 repeat is left out here too, with
the same warning); each process's own getrusage comes from its work JSON.

Columns (docs/results-format.md, "analysis/tidy.csv"):

- run_id (manifest, else the directory's name), machine, memory_mb, and the
  read-back attributes of :mod:`analysis.machines`: kernel, suite, swap_type,
  mglru, cpus; accelerator (facts.json);
- case (1 or 2), pair (Case 1), n and repeat (Case 2), process (K of
  work-K.json), pid, mode, mb, accesses, seconds (the timed phase),
  accesses_per_s, interrupted (the work JSON's: partial counts);
- minflt, majflt, cpu_s: the process's getrusage at exit (its whole life);
- minflt_profile, majflt_profile, cpu_s_profile: pfprof's records of the
  process summed, i.e. since it registered (empty where a Case 2 run fell
  back to getrusage);
- window_s, minflt_window, majflt_window, cpu_s_window (Case 2): the run's
  timed window (barrier release to the last process's end) and the process's
  counts inside it, from ``source``: the profile (edge records pro rata), or
  getrusage around the timed phase (``*_timed``; no CPU time there);
- source: ``profile`` or ``getrusage``, as in ``case2 --json``; wall_s: the
  run's wall time (run.json, Case 2).

Written as CSV, or Parquet (``--format parquet`` or an ``--out`` ending in
``.parquet``) when pyarrow is installed.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from analysis import case1, case2, machines
from analysis import profile as pf
from analysis.errors import AnalysisError
from analysis.load import Machine, Run, number, read_json

COLUMNS = ("run_id", "machine", "memory_mb", "kernel", "suite", "swap_type", "mglru", "cpus", "accelerator",
           "case", "pair", "n", "repeat", "process", "pid", "mode", "mb", "accesses", "seconds",
           "accesses_per_s", "interrupted", "minflt", "majflt", "cpu_s",
           "minflt_profile", "majflt_profile", "cpu_s_profile",
           "window_s", "minflt_window", "majflt_window", "cpu_s_window", "source", "wall_s")
# Counts and indices: nullable integers, so that a blank cell stays blank and 3 is not "3.0".
INTEGER_COLUMNS = ("cpus", "case", "n", "repeat", "process", "pid", "accesses", "minflt", "majflt",
                   "minflt_profile", "majflt_profile")


def machine_columns(run: Run, machine: Machine) -> dict:
    attrs = machines.attributes(run.manifest, machine.name, machine.facts)
    accelerator = machine.facts.get("accelerator")
    return {"run_id": run.meta("run_id") or run.path.resolve().name, "machine": machine.name,
            "memory_mb": machine.memory_mb, "kernel": attrs["kernel"], "suite": attrs["suite"],
            "swap_type": attrs["swap_type"], "mglru": attrs["mglru"], "cpus": attrs["cpus"],
            "accelerator": accelerator if isinstance(accelerator, str) else None}


def process_columns(wp: Path, w: dict) -> dict:
    """What the work JSON says of its process (the fields the loaders do not keep)."""
    mode = w.get("mode")
    cpu = [number(w, key, wp, required=False, minimum=0) for key in ("utime_s", "stime_s")]
    return {"pid": number(w, "pid", wp, required=False, integer=True, minimum=1),
            "mode": mode if isinstance(mode, str) else None,
            "mb": number(w, "mb", wp, required=False, minimum=0),
            "accesses": number(w, "accesses", wp, required=False, minimum=0),
            "seconds": number(w, "seconds", wp, required=False, minimum=0),
            "accesses_per_s": number(w, "accesses_per_s", wp, required=False, minimum=0),
            "interrupted": w.get("interrupted") is True,
            "minflt": number(w, "minflt", wp, required=False, minimum=0),
            "majflt": number(w, "majflt", wp, required=False, minimum=0),
            "cpu_s": None if None in cpu else sum(cpu)}


def profile_columns(totals: Optional[pf.Counts]) -> dict:
    if totals is None:
        return {"minflt_profile": None, "majflt_profile": None, "cpu_s_profile": None}
    return {"minflt_profile": totals.minflt, "majflt_profile": totals.majflt,
            "cpu_s_profile": totals.cpu_ns / 1e9}


def case2_rows(run: Run, machine: Machine) -> list[dict]:
    base = machine_columns(run, machine)
    rows = []
    for reps in case2.load_machine(run, machine).repeats.values():
        for rep in reps:
            try:
                rows += repeat_rows(base, rep)
            except AnalysisError as e:  # a field only the export reads
                run.diag.warn_error(e, "this repeat is left out of the export")
    return rows


def repeat_rows(base: dict, rep: case2.Repeat) -> list[dict]:
    """The N processes of one Case 2 run; the window's counts from the run's source,
    exactly as analysis.case2 summed them for the run."""
    profile = rep.profile  # set only where the profile passed case2's cross-check (source "profile")
    totals, inside = {}, {}
    if profile is not None:
        totals = profile.totals()
        inside = profile.window(rep.window_start_ns, rep.window_end_ns, rep.pids)
    rows = []
    for k in range(1, rep.n + 1):
        wp = rep.path / f"work-{k}.json"
        w = read_json(wp)
        row = {**base, "case": 2, "pair": None, "n": rep.n, "repeat": rep.r, "process": k,
               **process_columns(wp, w), "window_s": rep.window_s, "source": rep.source, "wall_s": rep.wall_s}
        if profile is not None:
            window = inside.get(row["pid"], pf.Counts())
            row.update(profile_columns(totals.get(row["pid"])), minflt_window=window.minflt,
                       majflt_window=window.majflt, cpu_s_window=window.cpu_ns / 1e9)
        else:
            row.update(profile_columns(None), **getrusage_window(rep, wp, w))
        rows.append(row)
    return rows


def getrusage_window(rep: case2.Repeat, wp: Path, w: dict) -> dict:
    """A fallback run's window counts: getrusage around the timed phase, where the run
    itself used them (analysis.case2 does only when every process has them); no CPU time."""
    minflt = number(w, "minflt_timed", wp, required=False, minimum=0)
    majflt = number(w, "majflt_timed", wp, required=False, minimum=0)
    return {"minflt_window": minflt if rep.window_minflt is not None else None,
            "majflt_window": majflt if rep.window_majflt is not None else None,
            "cpu_s_window": None}


def case1_rows(run: Run, machine: Machine) -> list[dict]:
    base = machine_columns(run, machine)
    rows = []
    for pair in case1.load_machine(machine):
        profile = pf.Profile(machine.dir / "case1" / pair.name / "profile.csv", pair.profile)
        totals = profile.totals()
        for p in pair.processes:
            rows.append({**base, "case": 1, "pair": pair.name, "n": None, "repeat": None, "process": p.k,
                         **process_columns(p.path, read_json(p.path)), **profile_columns(totals.get(p.pid)),
                         "window_s": None, "minflt_window": None, "majflt_window": None,
                         "cpu_s_window": None, "source": "profile", "wall_s": None})
    return rows


def tidy(run: Run):
    """The table as a pandas DataFrame, columns in COLUMNS order."""
    import pandas as pd
    rows = []
    for m in run.machines:
        has = {case: (m.dir / case).is_dir() for case in ("case1", "case2")}
        if not any(has.values()):
            run.diag.warn(m.dir, "no case1/ or case2/ directory; this machine is left out of the export")
        if has["case1"]:
            rows += case1_rows(run, m)
        if has["case2"]:
            rows += case2_rows(run, m)
    if not rows:
        raise AnalysisError(run.path, None, "nothing to export: no Case Study 1 or 2 process in the run")
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in INTEGER_COLUMNS:
        values = pd.to_numeric(frame[column])
        if (values.dropna() % 1 == 0).all():  # a fractional count stays a float rather than be cut
            frame[column] = values.astype("Int64")
    frame["interrupted"] = frame["interrupted"].astype("boolean")
    return frame


def output_format(args) -> str:
    if args.format:
        return args.format
    return "parquet" if args.out and args.out.endswith(".parquet") else "csv"


def main(args) -> int:
    from analysis import cli_common
    fmt = output_format(args)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401  (pandas' Parquet engine)
        except ImportError:
            print("analysis: error: Parquet needs pyarrow, which is not installed "
                  "(.venv/bin/pip install pyarrow), or export CSV", file=sys.stderr)
            return 2
        if args.out == "-":
            print("analysis: error: Parquet is binary: give --out FILE", file=sys.stderr)
            return 2
    run = cli_common.open_run(args)
    frame = tidy(run)
    if args.out == "-":
        frame.to_csv(sys.stdout, index=False)
        return 0
    out = Path(args.out) if args.out else run.path / "analysis" / f"tidy.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.tmp")  # never a half-written table under the real name
    try:
        if fmt == "parquet":
            frame.to_parquet(partial, index=False, engine="pyarrow")
        else:
            frame.to_csv(partial, index=False)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    print(out)
    return 0
