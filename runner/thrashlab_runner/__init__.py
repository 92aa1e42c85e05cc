"""thrashlab runner: Case Study 1 and 2, and the benchmarks, on one lab machine.

Copied to every machine by playbooks/roles/case_runner (as one zipapp,
unpacked there with its bytecode into /opt/thrashlab/runner/current: RUNNER
below) and run there as root (`python3 RUNNER STEP ...`). Python 3
standard library only (the machines have python3 and no pip). A case's
sweep runs as one detached process (sweep: `case-sweep --detach`), which
Ansible follows point by point (`case-follow`).

    RUNNER case2-start  --run-id ID --machine NAME [plan options] [--resume]
    RUNNER case-sweep   --run-id ID --case case1|case2 [--detach]
    RUNNER case-follow  --run-id ID --case case1|case2 --attempt K (--index I | --end)
    RUNNER case2-point  --run-id ID --n N --repeat R
    RUNNER case1-start  --run-id ID --machine NAME [--work-mb auto|MB] --pair A=SPEC,SPEC ...
                        (SPEC: "MB MODE ACCESSES [ITERATIONS]", MB may be auto,
                         ACCESSES many or few: --accesses-many/--accesses-few)
    RUNNER case1-pair   --run-id ID --pair A
    RUNNER bench-start  --run-id ID --machine NAME [--rounds R --processes 1,8,32 ...]
    RUNNER bench-idle   --run-id ID
    RUNNER bench-round  --run-id ID --round K
    RUNNER case-finish  --run-id ID --case case1|case2|bench
    RUNNER facts        --run-id ID --machine NAME
    RUNNER plan-case2   --mem-available-mb A --swap-mb S [plan options]   (prints, writes nothing)

Results follow docs/results-format.md under <results dir>/<run id>/ (default
/var/lib/thrashlab/results). A case's start reads the machine's facts after
letting it settle, resolves the parameters that are `auto` and writes
<case>/params.json; every later step reads its parameters from there, so the
file always says what really ran.

One run (a Case Study 2 point, or a Case Study 1 pair):
  1. settle: wait until earlier work/monitor processes are gone (kill them after
     a bound), `sync`, drop the page cache, wait until swap-in/out is quiet;
  2. copy /proc/vmstat, /proc/pressure/memory, /proc/meminfo (and pfprof's stats);
  3. start `monitor -o profile.csv --until-idle` and wait until it has
     /dev/pfprof open, then start the work processes (Case Study 2: with
     `--barrier`, so that all of them fill their memory first and start their
     timed phase together);
  4. sample PSI memory every --psi-interval s into psi-samples.csv while they
     run; everything is bounded by --timeout: leftovers are killed and the
     run says so (timed_out, killed);
  5. each work's JSON line -> work-K.json; the copies after; run.json.
A run is built in a hidden directory (.r-1.partial) and renamed into place
after its run.json is written; each file is written to a temporary name and
renamed. So an interrupted run never leaves anything that looks complete.
A case is complete when <case>/DONE exists (case-finish writes it last).

Output: progress on stderr; the last line on stdout is
`THRASHLAB-RESULT <one JSON object>` (what the playbooks read), preceded by
`THRASHLAB-SUMMARY <one line for humans>`. Exit status 0 when the step was
done and recorded (a run with an OOM kill or a timeout is recorded, not an
error), 1 on an error (message on stderr and in the RESULT line), 2 on bad
arguments.

Where things are: cli (arguments, the RESULT line), steps (the context every
step shares, facts, case-finish), case1, case2, bench and bench_cell (the
steps of each), sweep (a case's points in one detached process, followed,
re-attached, resumed), run (one run: monitor, work processes, PSI, run.json),
machine (the kernel's files, the settle between runs), facts, planning (what
`auto` resolves to), procfs, work_output, profilers and barrier (pure
parsers), processes, files (atomic writes), values, common.
"""
