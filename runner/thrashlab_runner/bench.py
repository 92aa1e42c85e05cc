"""The benchmarks' steps: bench-start (the plan), bench-idle, bench-round.

What does profiling cost, and how faithful are pfprof's ticks? One fixed,
in-memory work load (N processes of a few MiB, the same seeds every time)
runs under four conditions, interleaved in a shuffled order in every round:
  none    work --no-register, nothing watching
  pfprof  work registered, monitor streaming the ring to a file
  perf    perf stat -I <interval> -e minor-faults,major-faults -p <pids>
  poller  procpoll -i <interval> <pids> (/proc/<pid>/stat at the same rate)
Each profiler is attached while the processes wait at their barrier, and the
runner releases them once it is watching (bench_cell.py): wall_s covers only
the timed phases (max end - min start), all of them under observation. Idle
fidelity: one registered sleeping process, the monitor streaming, for
--idle-seconds.
"""
from __future__ import annotations

import os
import subprocess
import time

from . import common
from .bench_cell import finish_monitor, run_bench_cell, start_monitor
from .common import RUNNER_VERSION, RunnerError, log, utc_now
from .files import atomic_json, commit_dir, fresh_tmp_dir
from .processes import processes_of, stop_processes, wait_for
from .profilers import PERF_EVENTS, perf_version, profile_totals
from .steps import BenchCtx, earlier_failure
from .values import human, positive_float, positive_int

BENCH_CONDITIONS = ("none", "pfprof", "perf", "poller")


def parse_int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise RunnerError("%s: %r is not a comma-separated list of integers" % (name, text))
    if not values or any(v < 1 for v in values):
        raise RunnerError("%s: %r needs positive integers" % (name, text))
    return sorted(set(values))


def bench_order(processes: list[int], rounds: int, seed: int) -> list[list[list]]:
    """Per round, every (N, condition) cell once, in a shuffled order: drifts of
    the machine (caches, the host's load) spread over all conditions alike."""
    import random
    plan = []
    for r in range(1, rounds + 1):
        cells = [[n, c] for n in processes for c in BENCH_CONDITIONS]
        random.Random(seed * 1000 + r).shuffle(cells)
        plan.append(cells)
    return plan


def cmd_bench_start(ctx: BenchCtx) -> dict:
    a = ctx.args
    ctx.check_bench_tools(a.perf)
    ctx.start_case_dir("bench")
    settle_info = ctx.settle()
    facts = ctx.write_facts("bench")
    stats = ctx.stats()
    processes = parse_int_list(a.processes, "bench_processes")
    rounds = positive_int(a.rounds, "bench_rounds")
    work_mb = positive_int(a.work_mb, "bench_work_mb")
    total = positive_int(a.accesses_total, "bench_accesses_total")
    per_iteration = positive_int(a.accesses_per_iteration, "bench_accesses_per_iteration")
    idle_seconds = positive_float(a.idle_seconds, "bench_idle_seconds")
    need_mb = max(processes) * work_mb
    avail_mb = facts["mem_available_kb"] / 1024.0
    if need_mb > 0.6 * avail_mb:
        raise RunnerError("bench: %d processes x %d MiB = %d MiB is more than 60%% of the %.0f MiB available: "
                          "the overhead runs must not page (lower bench_work_mb)" % (max(processes), work_mb,
                                                                                      need_mb, avail_mb))
    params = {
        "case": "bench", "run_id": a.run_id, "machine": a.machine, "rounds": rounds, "processes": processes,
        "conditions": list(BENCH_CONDITIONS),
        "work": {"mb": work_mb, "mode": "R", "accesses_total": total, "accesses_per_iteration": per_iteration,
                 "iterations": {str(n): max(1, total // (n * per_iteration)) for n in processes}},
        "interval_ms": stats.get("interval_ms"), "hz": stats.get("hz"), "idle_seconds": idle_seconds,
        "perf": a.perf, "perf_version": perf_version(a.perf), "perf_events": PERF_EVENTS,
        "seed": a.seed, "order": bench_order(processes, rounds, a.seed),
        "work_bin": ctx.work_bin, "monitor_bin": ctx.monitor_bin, "procpoll_bin": ctx.procpoll_bin,
        "started": utc_now(), "settle": settle_info, "runner_version": RUNNER_VERSION,
    }
    atomic_json(os.path.join(ctx.case_dir("bench"), "params.json"), params)
    summary = "bench on %s: %d round(s) of N = %s x %s, %d MiB per process, %s accesses per cell; idle %gs" % (
        a.machine, rounds, ",".join(map(str, processes)), "/".join(BENCH_CONDITIONS), work_mb, human(total),
        idle_seconds)
    return {"summary": summary, "rounds": list(range(1, rounds + 1)), "accelerator": facts.get("accelerator"),
            "perf_version": params["perf_version"]}


def cmd_bench_idle(ctx: BenchCtx) -> dict:
    """One registered process that sleeps: the ticks of an idle machine."""
    params = ctx.read_params("bench")
    earlier_failure(ctx, "bench")
    ctx.check_tools()
    settle_info = ctx.settle()
    final = os.path.join(ctx.case_dir("bench"), "idle")
    tmp = fresh_tmp_dir(final)
    seconds = float(params["idle_seconds"])
    before = ctx.stats()
    started = utc_now()
    mon, mlog = start_monitor(ctx, tmp)
    sleeper = subprocess.Popen(["sleep", str(int(seconds) + 60)], stdin=subprocess.DEVNULL)
    try:
        with open(ctx.machine.pfprof_status_path(), "w") as f:
            f.write("R %d\n" % sleeper.pid)
        time.sleep(seconds)
    finally:
        stop_processes([sleeper], grace=2)
    monitor = finish_monitor(mon, mlog, tmp, ctx.args.monitor_grace)
    after = ctx.stats()
    ticks, _, _ = profile_totals(os.path.join(tmp, "profile.csv"), {str(sleeper.pid)})
    run = {"seconds": seconds, "started": started, "ended": utc_now(), "pid": sleeper.pid, "monitor": monitor,
           "pfprof_stats_before": before, "pfprof_stats_after": after, "settle": settle_info,
           "runner_started": common.RUNNER_STARTED, "runner_version": RUNNER_VERSION}
    atomic_json(os.path.join(tmp, "run.json"), run)
    commit_dir(tmp, final)
    dropped = after.get("records_dropped", 0) - before.get("records_dropped", 0)
    return {"summary": "idle: %d ticks in %gs, %d records dropped" % (ticks, seconds, dropped),
            "ticks": ticks, "dropped": dropped}


def cmd_bench_round(ctx: BenchCtx) -> dict:
    params = ctx.read_params("bench")
    earlier_failure(ctx, "bench")
    ctx.check_tools()
    r = ctx.args.round
    if not 1 <= r <= params["rounds"]:
        raise RunnerError("--round %d: the plan has rounds 1-%d" % (r, params["rounds"]))
    settle_info = ctx.settle()
    final = os.path.join(ctx.case_dir("bench"), "overhead", "r-%02d" % r)
    tmp = fresh_tmp_dir(final)
    started = utc_now()
    cells = []
    for position, (n, condition) in enumerate(params["order"][r - 1], start=1):
        cdir = os.path.join(tmp, "n-%02d-%s" % (n, condition))
        os.makedirs(cdir)
        # Only the processes of the cell before: no cache drop or swap wait
        # inside a round (nothing pages here).
        wait_for(lambda: not processes_of(ctx.programs()), 30,
                 "the previous cell's processes exiting")
        cell = run_bench_cell(ctx, params, n, condition, cdir, position)
        log("round %d %d/%d: N=%d %s %s" % (r, position, len(params["order"][r - 1]), n, condition,
                                             ("%.3fs" % cell["wall_s"]) if cell["ok"] else cell.get("error")))
        cells.append(cell)
    doc = {"round": r, "started": started, "ended": utc_now(), "settle": settle_info, "cells": cells,
           "runner_started": common.RUNNER_STARTED, "runner_version": RUNNER_VERSION}
    atomic_json(os.path.join(tmp, "round.json"), doc)
    commit_dir(tmp, final)
    atomic_json(final + ".json", doc)
    failed = [c for c in cells if not c["ok"]]
    if len(failed) == len(cells):
        raise RunnerError("every cell of round %d failed: %s" % (r, failed[0].get("error")))
    walls = {(c["n"], c["condition"]): c.get("wall_s") for c in cells}
    parts = []
    for n in params["processes"]:
        base = walls.get((n, "none"))
        ratios = ["%s %s" % (c, ("%.3f" % (walls[(n, c)] / base)) if base and walls.get((n, c)) else "n/a")
                  for c in BENCH_CONDITIONS[1:]]
        parts.append("N=%d: %s" % (n, ", ".join(ratios)))
    return {"summary": "round %d: %s%s" % (r, "; ".join(parts),
                                           (" (%d cell(s) failed)" % len(failed)) if failed else ""),
            "round": r, "failed": len(failed)}
