"""thrashlab's analysis: where each machine starts to thrash.

``python -m analysis {case1,case2,compare,report,bench,export} [RUN]`` reads a run
directory laid out as in docs/results-format.md (default: ``latest`` in the
results directory ``thrashlab.paths.results_root()``, i.e.
``$THRASHLAB_RESULTS_DIR``, else ``results/`` of the repository, whatever the
current directory) and prints tables (``--format text|csv|markdown``,
``--json``), writes figures (PNG and SVG, one colour per machine in the lab's
order) to ``RUN/analysis/``, and, for ``report``, one self-contained HTML file.

Modules: :mod:`analysis.case1`, :mod:`analysis.case2` (the command; its
files in ``case2_load``, the profile's window and cross-check in
``case2_profile``, the table in ``case2_table``, the figure in
``case2_figure``), :mod:`analysis.compare` (the headline; Python API
``compare_rows(run_dir)`` and ``render_table(rows, fmt)``), :mod:`analysis.knee`
(the thrashing-point rule), :mod:`analysis.report`, :mod:`analysis.bench` (a
package: the benchmark's report: pfprof against perf and a /proc poller, tick
fidelity, the testbed's overhead; docs/benchmarks.md; its modules are listed in
its docstring), :mod:`analysis.export` (the run as one tidy table, a row per
process).

What happens to bad input, file by file (never a traceback):

=============================  ==============================================
file                           when missing, truncated or corrupt
=============================  ==============================================
manifest.json                  error (exit 2)
<machine>/facts.json           error
case1/params.json, profile.csv error: one run per pair, nothing to fall back on
case1 work-K.json              error
case2/params.json              error (compare and report read it)
case2 run.json, work-K.json    warning; that repeat is dropped (also when
                               run.json shows a failed process or OOM kill;
                               not for processes stopped at the timeout)
case2 profile.csv              warning; that run falls back to getrusage
                               (also when it disagrees with getrusage)
case2 psi-*.txt, psi-samples   warning; that repeat's PSI values stay empty
a machine, status not "ok"     warning; the machine is skipped
=============================  ==============================================

Errors print one line, ``analysis: error: FILE:LINE: what`` (the line for
CSV and JSON syntax; ``FILE: what`` otherwise), and exit with status 2.
Warnings print ``analysis: warning: FILE[:LINE]: what; consequence``.
An N all of whose repeats were dropped is left out (warning); a machine
with no usable repeat at all is an error.
"""
