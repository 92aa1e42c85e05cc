"""``bench``: what pfprof costs, how faithful its ticks are, and the testbed's own overhead.

Reads ``RUN/<machine>/bench/`` (written by the benchmark, ``./bench.sh``),
the same run's ``case2/`` sweep and ``RUN/testbed.json`` (formats:
docs/results-format.md, "bench/" and "testbed.json"), prints a plain-text
report and writes the same content as Markdown to ``docs/benchmarks.md`` of
the repository (``--doc FILE`` elsewhere, ``--no-doc`` nowhere; written
atomically).  Every figure is labelled with its machine, RAM and
accelerator: ``small (256 MiB, TCG)``.

Sections
--------
1. Header: run id, date, git revision, the host (testbed.json), each
   machine's RAM, swap, vCPUs, kernel and accelerator, and the benchmark's
   parameters.
2. Overhead, per machine, N and profiler (pfprof, perf, poller): the paired
   ratio wall(profiler) / wall(none) of the same round, then over the rounds
   the mean, its 95% confidence interval (Student t with rounds - 1 degrees
   of freedom, :data:`T95`; 1.96 beyond 30), min and max; and the profiler
   process's CPU time while the work ran (``cpu_during_s``, else its whole
   ``cpu_s``; for pfprof plus the module's own sampling work, ``work_ns_sum``)
   as % of the wall time without a profiler (mean CPU / mean wall of the
   ``none`` cells): on one vCPU every profiler's CPU second is taken from the
   work, so this is the cost without the emulator's timing noise.  A round whose ``none`` cell is missing
   or failed gives no ratio for that N.
3. Work handler time per tick, per machine and N: sum of the pfprof cells'
   ``pfprof.work_ns_sum`` / sum of their ``pfprof.ticks``, in us and as % of
   interval_ms; a least-squares line a + b*N over the N values with R^2:
   the cost is called linear in the number of processes when R^2 >= 0.9
   (judged from 3 N values or more), b is the cost per process.
4. Fidelity: the share of tick intervals within one jiffy (1000/hz ms) of
   interval_ms, |d - interval| <= jiffy, where d are the differences of
   consecutive distinct ``ts_ns`` of the records without flag bit 2 (4: the
   records of ``U <pid>`` are written off-tick).  Idle (bench/idle) and at
   the thrashing point N* of the case2 sweep (analysis.knee's rule; the
   largest N when there is no knee, said so), each profile separately and
   the intervals pooled.  Also the number of intervals, the worst one (the
   farthest from interval_ms), the ticks_merged / ticks_resync deltas of
   /proc/pfprof/stats and the records dropped: the monitor's own count (the
   last "dropped X" of its log tail) and the records_dropped delta.
   Beside it, where the ticks' lateness comes from: the deltas of
   /proc/pfprof/stats ``timer_late_ns_sum`` (the timer fired late) and
   ``queue_delay_ns_sum`` (the work waited in the workqueue), per tick and as
   shares of their sum, and of ``timer_late_ticks_over_jiffy`` /
   ``queue_delay_ticks_over_jiffy``; over the runs whose stats have them ("n/a"
   when none has: a module older than the split).
5. Testbed overhead, per machine: work time = sum of the case2 runs'
   ``wall_s``; sweep wall = case2/params.json ``ended - started``; their
   ratio, and the rest split into settling (sum of ``settle.settle_s``), the
   runner's own time outside the work (over the runs that have
   ``runner_started``: from the runner's start, or from the end of its
   previous run when one runner process ran the whole sweep, to each run's
   ``ended``, less ``wall_s`` and ``settle_s``) and the remainder (starting
   the runner and the sweep: Ansible, ssh, interpreter start-up; and ending
   it).  Overall:
   testbed.json's ``sweep`` step against the work time of the machine with
   the most RAM, and every step's time.
6. Targets: pfprof's mean ratio <= 1.002 and below perf's and the poller's
   (per machine and N; met only when the 95% interval is, else "not shown");
   pfprof's CPU while the work ran <= 0.3% of the work's wall time and below
   the others'; handler time at the largest N < 0.1% of interval_ms and
   linear in N; fidelity >= 99.9% idle and >= 99% at N*; no record dropped;
   sweep wall <= 1.10 x work time per machine.  Each met or missed, and by how
   much.
7. Discussion: sentences generated from the numbers (an order of the
   profilers by wall time is claimed only when pfprof's interval excludes
   the others' means; the order by CPU beside it).
8. Notes: ``--notes FILE`` (default ``docs/benchmarks-notes.md`` when it
   exists), hand-written Markdown included verbatim in the doc.

Bad input: a run in which no machine has a bench/ directory is an error
(run the benchmark, ./bench.sh); so is a missing or corrupt
bench/params.json, overhead round file, idle run.json or profile.csv,
testbed.json or case2/params.json (``analysis: error: FILE: what``, exit
2).  A cell with ``ok`` false is left out (warning).  A machine without
bench/ is left out of the benchmark tables (warning); without case2/, or a
run without testbed.json, those sections say "not measured in this run".
A case2 profile.csv or pfprof-stats file that is missing or corrupt only
leaves that repeat out of the fidelity figures (warning for a corrupt one).

Modules
-------
This package's modules, in the order the data flows:

- :mod:`~analysis.bench.readers`: small readers (ISO times, pfprof stats copies, the monitor's log);
- :mod:`~analysis.bench.fidelity`: tick intervals within one jiffy, ticks merged, records dropped;
- :mod:`~analysis.bench.bench_dir`: ``bench/``: params.json, the overhead rounds' cells, the idle run;
- :mod:`~analysis.bench.sweep`: the case2 sweep's timing and its fidelity at N*;
- :mod:`~analysis.bench.stats`: overhead ratios with 95% intervals, handler time and its fitted line;
- :mod:`~analysis.bench.measurements`: all of the above for every machine of the run, read once;
- :mod:`~analysis.bench.targets`: the targets, met or missed; :mod:`~analysis.bench.discussion`: the prose;
- :mod:`~analysis.bench.format`: how numbers are written; :mod:`~analysis.bench.report`: the sections;
- :mod:`~analysis.bench.render`: text and Markdown; :func:`main` here: the command.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from analysis.bench.render import render_markdown, render_text, write_atomic
from analysis.bench.report import Report


def default_doc() -> Path:
    from thrashlab.lab import REPO_ROOT
    return REPO_ROOT / "docs" / "benchmarks.md"


def default_notes() -> Path:
    from thrashlab.lab import REPO_ROOT
    return REPO_ROOT / "docs" / "benchmarks-notes.md"


def main(args) -> int:
    from analysis import cli_common
    run = cli_common.open_run(args)
    notes = Path(args.notes) if args.notes else (default_notes() if default_notes().is_file() else None)
    doc = None if args.no_doc else Path(args.doc) if args.doc else default_doc()
    rep = Report(run, notes)
    rep.build()
    rep.data["doc"] = None if doc is None else str(doc)
    if doc is not None:
        write_atomic(doc, render_markdown(rep.blocks, rep.data["run_id"]))
    if args.json:
        sys.stdout.write(json.dumps(rep.data, indent=2, default=str) + "\n")
        if doc is not None:
            print(f"written: {doc}", file=sys.stderr)
    else:
        sys.stdout.write(render_text(rep.blocks))
        if doc is not None:
            sys.stdout.write(f"\nwritten: {doc}\n")
    sys.stdout.flush()
    return 0
