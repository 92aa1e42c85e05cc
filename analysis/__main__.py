"""``python -m analysis {case1,case2,compare,report,bench,export} [RUN]``, ``runs``: the command line.

Each subcommand imports its module only when it runs, so ``--help`` and
table-only runs do not pay for matplotlib.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from analysis import knee

PROG = "python -m analysis"


def default_run() -> Path:
    """The default RUN: ``latest`` in the results directory, the collector's newest
    complete run (``$THRASHLAB_RESULTS_DIR``, else ``results/`` of the repository;
    whatever the current directory)."""
    from thrashlab.paths import results_root
    return results_root() / "latest"


class _Runs(argparse.Action):
    """RUN [RUN ...]: a list, or None when none is given (main() fills in the default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, list(values) or None)


def _run_arg(p: argparse.ArgumentParser, many: bool = False) -> None:
    p.add_argument("run", metavar="RUN", nargs="*" if many else "?", default=None,
                   **({"action": _Runs} if many else {}),
                   help=(f"run directory (default: {default_run()}, the collector's newest complete run: "
                         f"'latest' in $THRASHLAB_RESULTS_DIR, else in the repository's results/, whatever "
                         f"the current directory)")
                   + ("; several: their machines side by side, rows named RUN/MACHINE (RUN: the run "
                      "directory's name, as python -m analysis runs lists it)" if many else ""))


def _table_args(p: argparse.ArgumentParser, figures: bool = True, many: bool = False) -> None:
    _run_arg(p, many)
    p.add_argument("--format", choices=("text", "csv", "markdown"), default="text",
                   help="table format (default: text, an aligned table)")
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list instead")
    if figures:
        p.add_argument("--out", metavar="DIR", help="where figures go (default: RUN/analysis)")
        p.add_argument("--no-plots", action="store_true", help="print the table only, draw no figure")


def _dispatch(module: str):
    def run(args) -> int:
        import importlib
        return importlib.import_module(f"analysis.{module}").main(args)
    return run


EPILOG = """\
Input problems: a missing or corrupt manifest.json, facts.json, case1 file or
case2/params.json is an error (exit status 2, one line: analysis: error:
FILE:LINE: what). A broken case2 repeat (run.json or a work JSON missing or
corrupt, a failed process) is dropped with a warning naming the file (a run
stopped at its timeout is kept, marked interrupted); a missing or corrupt case2
profile.csv, or one that disagrees with getrusage, makes that run fall back to
the work JSONs (getrusage), warning with the file and line; bad PSI files only
blank that repeat's PSI values. Machines whose manifest status is
not ok are skipped with a warning. Figures (PNG and SVG) go to RUN/analysis/.
bench reads RUN/<machine>/bench/ (docs/results-format.md, "bench/"): a run
without it is an error (run the benchmark, ./bench.sh); a run without case2/
or testbed.json still reports, those sections saying "not measured".
"""

BENCH_DESCRIPTION = """\
The benchmark of the testbed itself, from RUN/<machine>/bench/ (./bench.sh),
the run's case2/ sweep and RUN/testbed.json: what pfprof costs against
`perf stat -I 50` and a 20 Hz /proc/<pid>/stat poller (paired wall-time
ratios per round: mean, 95% CI by Student t, min-max; the profiler's CPU),
the work handler's time per tick against N (least-squares line, R^2), the
share of 50 ms ticks within one jiffy (idle and at the thrashing point N*),
records dropped, and how much of a Case Study 2 sweep is the testbed's own
overhead (settling, the runner, Ansible and ssh); then the targets, met or
missed, and a short discussion. Prints the report as text and writes the
same content as Markdown to docs/benchmarks.md of the repository (atomically;
--doc FILE elsewhere, --no-doc nowhere). Every figure names its machine, RAM
and accelerator. What each figure is: pydoc analysis.bench.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Where each machine of a thrashlab run starts to thrash: tables, figures, report; "
                    "and the benchmark of the testbed itself (bench).",
        epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("case1", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="Case Study 1: accumulated faults per process, totals vs the arithmetic",
                       description=textwrap.fill(
                           "Case Study 1 per machine and pair: a figure of accumulated minor and major "
                           "faults vs time per process, and a table of totals beside P(1-exp(-A/P)) "
                           "(see pydoc analysis.case1 for what the expectation means with the fill).", 78),
                       epilog=EPILOG)
    _table_args(p)
    p.set_defaults(func=_dispatch("case1"))

    p = sub.add_parser("case2", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="Case Study 2: throughput, utilization, major faults, PSI per machine and N",
                       description=textwrap.fill(
                           "Case Study 2 per machine and N, repeats aggregated (mean, min, max, sd; "
                           "text shows a selection, csv and json every statistic): throughput, CPU "
                           "utilization, major-fault rate, PSI, overlap (see pydoc analysis.case2).", 78),
                       epilog=EPILOG)
    _table_args(p)
    p.add_argument("--series", action="store_true",
                   help="instead of the table: fault rate and CPU over time per process for the points "
                        "around each machine's knee (N*-1, N*, N*+1), from the profiles (text: half-second "
                        "bins of the per-tick sums; --json: every tick; figures case2-series-MACHINE)")
    p.set_defaults(func=_dispatch("case2"))

    p = sub.add_parser("compare", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="the headline: thrashing point N* per machine beside the prediction",
                       description=textwrap.fill(
                           "One row per machine: RAM, the thrashing point N*, the working-set prediction "
                           "(mem_available / work_mb), peak throughput, and at N* the throughput, major-fault "
                           "rate, starved processes and the slowest process's accesses/s; and a figure of "
                           "throughput (summed, and of the slowest process) and utilization vs N with the "
                           "knees marked.", 78)
                       + "\n\n" + textwrap.fill(
                           "Several runs (compare RUN RUN ...): the machines of every run side by side, each "
                           "row named RUN/MACHINE (RUN: the run directory's name), a column for every "
                           "machine attribute that differs across all the rows (kernel, swap, MGLRU, ...), "
                           "one series per RUN/MACHINE in the figure (compare-runs.png and .svg, in the first "
                           "RUN's analysis/ unless --out); --json and csv rows gain a 'run' key, 'machine' "
                           "staying the machine's own name.", 78)
                       + "\n\nThe thrashing point N*\n\n" + knee.RULE,
                       epilog=EPILOG)
    _table_args(p, many=True)
    p.set_defaults(func=_dispatch("compare"))

    p = sub.add_parser("report", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="one self-contained HTML file with every table, figure and the metadata",
                       description="Write RUN/analysis/report.html (figures embedded, no external "
                                   "resource) and print its path.", epilog=EPILOG)
    _run_arg(p)
    p.add_argument("--out", metavar="DIR", help="where figures and the report go (default: RUN/analysis)")
    p.add_argument("-o", "--output", metavar="FILE", help="the report's path (default: OUT/report.html)")
    p.set_defaults(func=_dispatch("report"))

    p = sub.add_parser("bench", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="the benchmark: pfprof's cost against perf and a /proc poller, tick fidelity, "
                            "testbed overhead; writes docs/benchmarks.md",
                       description=BENCH_DESCRIPTION, epilog=EPILOG)
    _run_arg(p)
    doc = p.add_mutually_exclusive_group()
    doc.add_argument("--doc", metavar="FILE",
                     help="where the Markdown goes (default: docs/benchmarks.md of the repository)")
    doc.add_argument("--no-doc", action="store_true", help="write no Markdown file, print only")
    p.add_argument("--notes", metavar="FILE",
                   help="hand-written Markdown included verbatim in the doc under 'Notes' (default: "
                        "docs/benchmarks-notes.md of the repository, when it exists)")
    p.add_argument("--json", action="store_true",
                   help="print the computed figures as one JSON object instead of the tables (the doc "
                        "is still written unless --no-doc)")
    p.set_defaults(func=_dispatch("bench"))

    p = sub.add_parser("export", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="the run as one tidy table, one row per machine x case x N x repeat x process "
                            "(CSV, or Parquet with pyarrow)",
                       description=textwrap.fill(
                           "One row per process of every Case Study 2 run (machine x N x repeat x process) "
                           "and Case Study 1 pair (machine x pair x process): the machine's attributes, the "
                           "process's getrusage at exit, pfprof's totals since registration, and its counts "
                           "in the run's timed window with their source. Writes RUN/analysis/tidy.csv (or "
                           "tidy.parquet) and prints its path. The columns: pydoc analysis.export, "
                           "docs/results-format.md.", 78),
                       epilog=EPILOG)
    _run_arg(p)
    p.add_argument("--out", metavar="FILE",
                   help="where the table goes (default: RUN/analysis/tidy.csv or .parquet; '-': CSV on stdout)")
    p.add_argument("--format", choices=("csv", "parquet"), default=None,
                   help="csv, or parquet (needs pyarrow) (default: parquet when --out ends in .parquet, else csv)")
    p.set_defaults(func=_dispatch("export"))

    p = sub.add_parser("runs", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="the runs of the results directory, newest first: lab, machines, cases, date, "
                            "complete or not, git revision",
                       description=textwrap.fill(
                           "One row per run directory under the results directory, newest first: run id, "
                           "lab, machines, cases present (case1, case2, bench), started and ended, complete "
                           "(every machine collected ok, per the manifest; a run without a readable "
                           "manifest is incomplete, the reason under the table), git revision (+dirty), and "
                           "which run 'latest' points at. The columns: pydoc analysis.runs.", 78))
    p.add_argument("--results", metavar="DIR",
                   help="the results directory (default: $THRASHLAB_RESULTS_DIR, else results/ of the "
                        "repository)")
    p.add_argument("--format", choices=("text", "csv", "markdown"), default="text",
                   help="table format (default: text, an aligned table)")
    p.add_argument("--json", action="store_true", help="print the runs as a JSON list instead")
    p.set_defaults(func=_dispatch("runs"), run="")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from analysis.errors import AnalysisError
    try:
        if isinstance(args.run, list) and len(args.run) == 1:  # compare RUN: as before several were possible
            args.run = args.run[0]
        if args.run is None:
            args.run = str(default_run())
            if not os.path.exists(args.run):
                raise AnalysisError(args.run, None, "no such run directory (the default RUN: the newest "
                                                    "complete run the collector pulled; give RUN, or set "
                                                    "THRASHLAB_RESULTS_DIR)")
        return args.func(args)
    except AnalysisError as e:
        print(f"analysis: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # e.g. piped into head: not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except OSError as e:  # writing figures or the report
        where = f"{e.filename}: " if e.filename else ""
        print(f"analysis: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("analysis: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: one line unless asked for the traceback
        if os.environ.get("ANALYSIS_DEBUG"):
            raise
        print(f"analysis: internal error: {type(e).__name__}: {e} "
              f"(set ANALYSIS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
