"""The command line: arguments, signals, and the RESULT and SUMMARY lines
the playbooks read."""
from __future__ import annotations

import argparse
import errno
import os
import signal
import time

from . import __doc__ as RUNNER_DOC
from . import common
from .case1 import case1_pair, cmd_case1_pair, cmd_case1_start
from .case2 import case2_point, cmd_case2_point, cmd_case2_start, cmd_plan_case2
from .common import Interrupted, RunnerError, log, result_text, utc_now
from .processes import protect_self
from .steps import BenchCtx, Ctx, cmd_case_finish, cmd_facts, finish_case, record_failure
from .sweep import cmd_case_follow, cmd_case_sweep

DEFAULT_RESULTS_DIR = "/var/lib/thrashlab/results"
DEFAULT_REMOTE_DIR = "/opt/thrashlab"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="thrashlab_runner.py", description=RUNNER_DOC.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common_machine(p):
        p.add_argument("--machine", required=True, help="the machine's name in the lab")
        p.add_argument("--memory-mb", type=int, help="the machine's RAM in the lab file")
        p.add_argument("--swap-mb", type=int, help="the machine's swap in the lab file")
        p.add_argument("--cpus", type=int)
        p.add_argument("--accelerator", default="unknown", help="kvm, tcg, ... (from the testbed)")
        p.add_argument("--backend", help="localvm, vagrant, static")

    def common(p, machine=False):
        p.add_argument("--run-id", required=True)
        p.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR)
        p.add_argument("--remote-dir", default=DEFAULT_REMOTE_DIR,
                       help="where setup built the workloads (<dir>/workloads/{work,monitor})")
        p.add_argument("--work-bin")
        p.add_argument("--monitor-bin")
        p.add_argument("--settle-timeout", type=float, default=30.0,
                       help="bound of the wait between runs (s)")
        p.add_argument("--psi-interval", type=float, default=0.5, help="PSI sampling period (s)")
        p.add_argument("--monitor-grace", type=float, default=15.0,
                       help="how long the monitor may take to drain and exit after the last work (s)")
        p.add_argument("--swap-window", type=float, default=0.25,
                       help="swap is quiet when it moved at most 64 pages a second over this window (s)")
        # For tests on a host: where the kernel's files are.
        p.add_argument("--proc-root", default="/proc", help=argparse.SUPPRESS)
        p.add_argument("--sys-root", default="/sys", help=argparse.SUPPRESS)
        p.add_argument("--pfprof-device", default="/dev/pfprof", help=argparse.SUPPRESS)
        p.add_argument("--run-dir", default="/run/thrashlab", help=argparse.SUPPRESS)
        if machine:
            common_machine(p)

    def detach_opt(p):
        p.add_argument("--detach-with", choices=("auto", "systemd", "setsid"), default="auto",
                       help="auto: a transient systemd unit where systemd runs, else setsid")

    def sweep_opts(p):
        p.add_argument("--sweep", action="store_true",
                       help="then start the case's sweep, detached (case-sweep --detach), in the same call")
        detach_opt(p)

    p = sub.add_parser("facts", help="write facts.json of the run and print it")
    common(p, machine=True)

    def plan_opts(p):
        p.add_argument("--work-mb", default="auto", help="MiB per process, or auto")
        p.add_argument("--lab-min-memory-mb", type=int, help="RAM of the lab's smallest machine (for auto)")
        p.add_argument("--points", type=int, default=6, help="number of N values when auto")
        p.add_argument("--max-factor", type=float, default=1.5, help="largest N / predicted N, when auto")
        p.add_argument("--swap-fraction", type=float, default=0.8,
                       help="share of swap the largest N may use, when auto")

    p = sub.add_parser("plan-case2", help="print the automatic Case Study 2 plan (writes nothing)")
    plan_opts(p)
    p.add_argument("--mem-available-mb", type=float, required=True)
    p.add_argument("--swap-mb", type=float, required=True)

    p = sub.add_parser("case2-start", help="settle, facts, plan; write case2/params.json")
    common(p, machine=True)
    plan_opts(p)
    p.add_argument("--n-values", default="auto", help="comma-separated N values, or auto")
    p.add_argument("--repeats", default="1")
    p.add_argument("--seconds", default="8")
    p.add_argument("--accesses", default="10000")
    p.add_argument("--mode", default="R")
    p.add_argument("--fill", default="random", help="what the fill writes: random, zero or text")
    p.add_argument("--timeout", default="120", help="bound of one run (s)")
    p.add_argument("--resume", action="store_true",
                   help="keep the points of an earlier start of this case (same arguments) and run the rest")
    sweep_opts(p)

    p = sub.add_parser("case2-point", help="one run of N processes (parameters from case2/params.json)")
    common(p)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--repeat", type=int, required=True)

    p = sub.add_parser("case1-start", help="settle, facts, sizes; write case1/params.json")
    common(p, machine=True)
    p.add_argument("--work-mb", default="auto", help="MiB per process for specs of size 'auto'")
    p.add_argument("--pair", action="append", metavar="NAME=SPEC,SPEC",
                   help="a pair: NAME=MB MODE ACCESSES[ ITERATIONS],... (MB may be auto)")
    p.add_argument("--iterations", help="iterations of each work (default: work's own)")
    p.add_argument("--accesses-many", default="auto",
                   help="accesses per iteration for specs saying 'many' (auto: 50000 x MB / 1024)")
    p.add_argument("--accesses-few", default="auto",
                   help="accesses per iteration for specs saying 'few' (auto: 10000 x MB / 1024)")
    p.add_argument("--fill", default="false",
                   help="false (the course's behaviour: first touches show in the profile), or let work "
                        "first-touch its region before the iterations with random (also: true), zero or text data")
    p.add_argument("--work-arg", action="append", help="extra argument for every work process")
    p.add_argument("--timeout", default="180", help="bound of one pair (s)")
    p.add_argument("--resume", action="store_true",
                   help="keep the pairs of an earlier start of this case (same arguments) and run the rest")
    sweep_opts(p)

    p = sub.add_parser("case1-pair", help="run one pair (parameters from case1/params.json)")
    common(p)
    p.add_argument("--pair", dest="pair_name", required=True)

    p = sub.add_parser("case-sweep", help="run every point of the case's plan not yet committed, then finish it")
    common(p)
    p.add_argument("--case", choices=("case1", "case2"), required=True)
    p.add_argument("--detach", action="store_true",
                   help="start the sweep in the background, outliving this session, and return once it is up")
    detach_opt(p)

    p = sub.add_parser("case-follow", help="wait for a point (or the end) of the running sweep and print it")
    common(p)
    p.add_argument("--case", choices=("case1", "case2"), required=True)
    p.add_argument("--attempt", type=int, required=True, help="the attempt (from the case's start step)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=int, help="the point's place in the plan (from 0)")
    where.add_argument("--end", action="store_true", help="wait for the case to end (DONE written)")
    p.add_argument("--wait", type=float, default=600.0, help="give up after this long without the line (s)")

    p = sub.add_parser("case-finish", help="check the case is complete and write its DONE marker")
    common(p)
    p.add_argument("--case", choices=("case1", "case2", "bench"), required=True)

    def bench_common(p):
        common(p)
        p.add_argument("--procpoll-bin")
        p.add_argument("--perf", default="perf", help="the perf program (default: perf from PATH)")

    p = sub.add_parser("bench-start", help="check the tools, settle, facts; write bench/params.json (the plan)")
    bench_common(p)
    common_machine(p)
    p.add_argument("--rounds", default="5", help="rounds of interleaved cells")
    p.add_argument("--processes", default="1,8,32", help="comma-separated numbers of processes")
    p.add_argument("--work-mb", default="2", help="MiB per work process (must stay in memory)")
    p.add_argument("--accesses-total", default="50000000", help="accesses of a cell, split over its processes")
    p.add_argument("--accesses-per-iteration", default="10000")
    p.add_argument("--idle-seconds", default="60", help="length of the idle fidelity run (s)")
    p.add_argument("--seed", type=int, default=1, help="seeds the order of the cells and the work processes")

    p = sub.add_parser("bench-idle", help="idle fidelity: one registered sleeping process, streamed")
    bench_common(p)

    p = sub.add_parser("bench-round", help="one round: every (N, condition) cell once, in the planned order")
    bench_common(p)
    p.add_argument("--round", type=int, required=True)
    return ap


# The case whose FAILED marker a failing step writes (the steps after it then stop at once).
STEP_CASE = {"case-sweep": None, "case2-point": "case2", "case1-pair": "case1", "bench-idle": "bench",
             "bench-round": "bench"}


def run_point(ctx, case: str, item: dict) -> dict:
    """One point of a sweep (case-sweep): a Case Study 2 run or a Case Study 1 pair."""
    return case2_point(ctx, item["n"], item["repeat"]) if case == "case2" else case1_pair(ctx, item["pair"])


def _on_signal(signum, frame):
    raise Interrupted("interrupted by signal %d" % signum)


def main(argv=None) -> int:
    common.RUNNER_STARTED = utc_now()
    t_start = time.monotonic()
    args = build_parser().parse_args(argv)
    os.umask(0o022)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, _on_signal)
    ctx = None
    handlers = {"facts": cmd_facts, "case2-start": cmd_case2_start, "case2-point": cmd_case2_point,
                "case1-start": cmd_case1_start, "case1-pair": cmd_case1_pair, "case-finish": cmd_case_finish,
                "case-sweep": lambda c: cmd_case_sweep(c, run_point, finish_case), "case-follow": cmd_case_follow}
    if args.cmd.startswith("bench-"):
        # Only the benchmark's steps load its modules: every start of the
        # runner pays for what it imports (a third of a second here under
        # emulation, beside the work of a sweep).
        from .bench import cmd_bench_idle, cmd_bench_round, cmd_bench_start
        handlers.update({"bench-start": cmd_bench_start, "bench-idle": cmd_bench_idle,
                         "bench-round": cmd_bench_round})
    try:
        if args.cmd == "plan-case2":
            result = cmd_plan_case2(args)
            result["summary"] = "N = %s (predicted %.1f)" % (result["n_values"], result["predicted_n"])
        else:
            protect_self()
            ctx = BenchCtx(args) if args.cmd.startswith("bench-") else Ctx(args)
            result = handlers[args.cmd](ctx)
    except (RunnerError, Interrupted, OSError) as e:
        if isinstance(e, OSError):
            msg = "%s: %s" % (getattr(e, "filename", None) or "I/O error", e.strerror or e)
            if e.errno == errno.ENOSPC:
                msg += " (the disk is full)"
        else:
            msg = str(e)
        log("error: %s" % msg)
        if ctx is not None and args.cmd in STEP_CASE and not msg.startswith("an earlier step") \
                and not getattr(args, "detach", False):
            record_failure(ctx, STEP_CASE[args.cmd] or args.case, args.cmd, msg)
        print(result_text({"error": msg}), end="", flush=True)
        return 1
    result["runner_s"] = round(time.monotonic() - t_start, 2)
    if result.get("summary"):
        log(result["summary"])
    print(result_text(result), end="", flush=True)
    return 0
