"""Case Study 2: per machine and N, what the N processes achieved, repeats aggregated.

Which number comes from where, per repeat (``RUN/<machine>/case2/n-NN/r-K/``):

- the timed window: from the earliest ``start_mono_ns`` (the barrier's
  release: every process starts its timed phase right after it) to the latest
  ``end_mono_ns`` of the work JSONs.  work stamps them with CLOCK_MONOTONIC,
  pfprof stamps its records with ``ktime_get_ns()``, the same clock, so the
  window applies to the records directly;
- from profile.csv (analysis.profile), when it passes the cross-check below
  (``source`` "profile"): cpu_util (= ``utilization_cpus``), the CPU time of
  the N processes inside the window over the window, in CPUs (2 vCPUs read
  up to 2.0); majflt_per_s and minflt_per_s, their faults inside the window
  per second of it (records straddling an edge count pro rata);
- the cross-check, every run: each process's records summed (everything
  since it registered) against its getrusage since registration (work JSON:
  ``minflt`` - ``minflt_after_register``, ``majflt`` -
  ``majflt_after_register``, ``utime_s`` + ``stime_s`` -
  ``cpu_before_register_s``, read before the unregistration; the
  ``*_at_unregister`` counters, read right after it, bound the records from
  above), summed over the processes; the differences (``profile_diff_pct``:
  minflt_pct, majflt_pct, cpu_s_pct, how far outside those bounds, in % of
  getrusage) are reported.  Beyond 1% in faults or 2% in CPU the profile is
  not used: the run warns and falls back to getrusage;
- the getrusage fallback (``source`` "getrusage", ``source_reason`` says
  why: profile.csv missing or corrupt, with the file and line; disagreeing;
  no registration baseline or no timed window in the work JSONs): major and
  minor faults per second from ``majflt_timed``/``minflt_timed`` (getrusage
  around the timed phase) over the window; cpu_util from ``utime_s +
  stime_s`` over run.json's ``wall_s`` (lifetime: the work JSONs hold no
  timed-phase CPU); where the work JSONs lack the timed counts, lifetime
  faults over ``wall_s`` (the reason says so);
- from the work JSONs always (the profile does not count accesses):
  throughput, the sum of ``accesses_per_s`` of the N processes' timed
  phases; slowest, the slowest process's (Linux thrashes unfairly: past the
  available memory some processes starve while the others keep their speed,
  so the sum hardly moves and the slowest process shows the collapse);
  in_memory, rule 1 of analysis.knee (each process at most max(50, 1% of its
  pages) major faults, lifetime getrusage; pages: the work JSON's ``pages``,
  else ``mb`` x 1 MiB / page size);
- psi_some_avg10 / psi_full_avg10: the highest PSI memory avg10 (%) in
  psi-samples.csv; psi_some_pct / psi_full_pct: the ``total`` stall time
  (psi-after.txt minus psi-before.txt) as a percentage of ``wall_s``;
- overlap_s: from run.json (how long all N timed phases ran together);
- thrashing_onset_s / thrashing_share: where thrashing starts in the run.
  The major-fault rate of all N processes over the trailing second
  (ONSET_SPAN_S, faults inside the window only), at every tick of the
  window; the machine's in-memory level is the highest such rate of any of
  its in-memory runs (rule 1) read from a profile; the onset is the first
  tick whose rate exceeds the level (seconds since the window's start), the
  share the part of the window above it.  None without a profile, and for
  every run of a machine none of whose in-memory runs has a profile.

Per N the repeats are aggregated as mean, min, max and sample standard
deviation (and the median for throughput, major faults, cpu_util and the
slowest process; the knee rule in analysis.knee uses the medians), with
``source`` "profile", "getrusage" or "mixed" and ``source_counts``.

run.json's ``starved`` (the runner's count of processes under 1% of the
fastest one), where present, is checked against the work JSONs (warning when
they disagree); the analysis itself uses the work JSONs.

Bad input: a repeat whose run.json or any work-K.json is missing or corrupt,
or whose run.json reports a failed process or an OOM kill, is dropped with a
warning naming the file, and listed in ``dropped_repeats`` ({n, repeat,
reason}).  A process the runner stopped at ``case2_timeout`` is not a
failure: its exit code is 124 with its real code, 0, in ``exit_codes_raw``
(work exits 0 after SIGTERM and prints its partial counts with
``"interrupted": true``); the run is kept, marked ``interrupted``, with a
warning, and its numbers are those of the part that ran (the deepest
thrashing runs are the likeliest to time out).  A missing or corrupt
profile.csv only makes that run fall back to getrusage (warning naming the
file and line); bad PSI files only leave that repeat's PSI columns empty
(warning).  No usable repeat at all for a machine is an error, as is a
missing or corrupt case2/params.json (read by compare).

Modules: this one holds the command and re-exports the names other modules use;
:mod:`analysis.case2_load` reads the files into repeats, :mod:`analysis.case2_profile`
the timed window and its cross-check against getrusage, :mod:`analysis.case2_table`
the aggregated table, :mod:`analysis.case2_figure` the figure.
"""
from __future__ import annotations

from analysis.case2_figure import plot
from analysis.case2_load import (N_DIR, R_DIR, TIMEOUT_EXIT, Case2, Repeat, load, load_machine, load_repeat,
                                 mem_available_mb, read_params, sorted_dirs, work_mb)
from analysis.case2_profile import CPU_TOLERANCE_PCT, FAULT_TOLERANCE_PCT, ONSET_SPAN_S, fault_rate_series
from analysis.case2_table import JSON_EXTRA, MEDIANS, METRICS, NOTES, aggregate, columns, rows, sources

__all__ = ["N_DIR", "R_DIR", "TIMEOUT_EXIT", "Case2", "Repeat", "load", "load_machine", "load_repeat",
           "mem_available_mb", "read_params", "sorted_dirs", "work_mb", "CPU_TOLERANCE_PCT",
           "FAULT_TOLERANCE_PCT", "ONSET_SPAN_S", "fault_rate_series", "JSON_EXTRA", "MEDIANS", "METRICS",
           "NOTES", "aggregate", "columns", "rows", "sources", "plot", "main"]


def main(args) -> int:
    from analysis import cli_common
    run = cli_common.open_run(args)
    cases = load(run)
    table = rows(cases)
    fmt = cli_common.fmt(args)
    from analysis.tables import render
    if getattr(args, "series", False):
        from analysis import report_series
        return report_series.main(args, run, cases)
    text = render(table, columns(), fmt, notes=NOTES, extra_json=JSON_EXTRA)
    figures = [] if args.no_plots else plot(run, cases, cli_common.out_dir(args, run))
    cli_common.emit(text, figures, fmt)
    return 0
