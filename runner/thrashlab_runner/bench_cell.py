"""One cell of a benchmark round: N work processes under one condition."""
from __future__ import annotations

import json
import os
import subprocess
import time

from .barrier import barrier_count, release_barrier
from .files import atomic_write, read_text, tail
from .processes import exit_code, has_open, reset_oom_score, runtime_ns, stop_processes, wait_for, wait_reaping
from .profilers import PERF_EVENTS, has_data_line, perf_totals, poller_totals, profile_totals
from .steps import BenchCtx
from .work_output import parse_work_output


def start_monitor(ctx: BenchCtx, out: str) -> tuple:
    mlog = open(os.path.join(out, "monitor.log"), "wb")
    mon = subprocess.Popen([ctx.monitor_bin, "-o", os.path.join(out, "profile.csv"), "--until-idle"],
                           stdin=subprocess.DEVNULL, stdout=mlog, stderr=subprocess.STDOUT)
    # Records written before the monitor has the ring open could be missed.
    wait_for(lambda: has_open(mon.pid, ctx.machine.device), 10, "the monitor opening %s" % ctx.machine.device, mon)
    return mon, mlog


def finish_monitor(mon, mlog, out: str, grace: float) -> dict:
    """The monitor exits by itself once the registered processes are gone and the
    ring is drained (--until-idle); its CPU time and last words are returned."""
    cpu = wait_reaping(mon, grace)
    mlog.close()
    log_tail = tail(os.path.join(out, "monitor.log"), 400).strip()
    return {"exit_code": exit_code(mon.returncode), "cpu_s": cpu, "log_tail": log_tail,
            "stopped": cpu is None}


def start_cell_works(ctx: BenchCtx, params: dict, n: int, condition: str, barrier: str, out: str,
                     works: list, files: list) -> list[str]:
    """Start the cell's N work processes (registered with pfprof only under its
    condition): they fill their memory and wait at ``barrier``. Each process
    and its output file go to ``works`` and ``files`` as soon as they exist;
    returns the output files' names."""
    w = params["work"]
    iterations = w["iterations"][str(n)]
    outs = []
    for k in range(1, n + 1):
        argv = [ctx.work_bin, "--sleep-ms", "0", "--seed", str(params["seed"] * 100 + k),
                "--barrier", barrier, str(n + 1)]
        if condition != "pfprof":
            argv.append("--no-register")
        argv += [str(w["mb"]), w["mode"], str(w["accesses_per_iteration"]), str(iterations)]
        fo = open(os.path.join(out, ".work-%d.out" % k), "wb")
        files.append(fo)
        outs.append(fo.name)
        works.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo,
                                      stderr=subprocess.STDOUT, preexec_fn=reset_oom_score))
    return outs


def run_bench_cell(ctx: BenchCtx, params: dict, n: int, condition: str, out: str, position: int) -> dict:
    """One cell: N work processes under one condition. Returns its summary."""
    interval = int(params["interval_ms"])
    os.makedirs(ctx.machine.run_dir, exist_ok=True)
    barrier = os.path.join(ctx.machine.run_dir, "bench-barrier-%s" % ctx.args.run_id)
    if os.path.lexists(barrier):
        os.unlink(barrier)
    cell = {"n": n, "condition": condition, "position": position, "ok": False, "profiler": None}
    phases, t_phase = {}, [time.monotonic()]

    def phase(name):  # where a cell's time goes, beside the measured work
        now = time.monotonic()
        phases[name] = round(now - t_phase[0], 3)
        t_phase[0] = now
    works, files = [], []
    monitor = mlog = profiler = None
    try:
        if condition == "pfprof":
            monitor, mlog = start_monitor(ctx, out)
        outs = start_cell_works(ctx, params, n, condition, barrier, out, works, files)
        # Everyone filled its memory and waits: attach the profiler now.
        wait_for(lambda: barrier_count(barrier) >= n, 120, "%d work processes reaching the barrier" % n)
        phase("start_s")
        pids = [str(p.pid) for p in works]
        if condition == "perf":
            argv = [params["perf"], "stat", "-I", str(interval), "-x", ",", "-e", PERF_EVENTS,
                    "-p", ",".join(pids), "-o", os.path.join(out, "perf.csv")]
            profiler = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(out, "perf.log"), "wb"))
            wait_for(lambda: has_data_line(os.path.join(out, "perf.csv")), 60, "perf's first interval", profiler)
        elif condition == "poller":
            argv = [ctx.procpoll_bin, "-i", str(interval), "-o", os.path.join(out, "poll.csv")] + pids
            profiler = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(out, "procpoll.log"), "wb"))
            wait_for(lambda: has_data_line(os.path.join(out, "poll.csv")), 60, "procpoll's first sample", profiler)
        before = ctx.stats() if condition == "pfprof" else None
        watcher = profiler or monitor
        # The profiler's CPU while the work runs (its start-up, before, is not
        # on the clock of the measured wall time).
        cpu_at_release = runtime_ns(watcher.pid) if watcher is not None else None
        phase("attach_s")
        release_barrier(barrier, n + 1)
        for p in works:
            p.wait()
        cpu_at_end = runtime_ns(watcher.pid) if watcher is not None else None
        after = ctx.stats() if condition == "pfprof" else None
        phase("run_s")

        def cpu_during(total_s):
            # perf and procpoll may have exited already: then their total from wait4
            end = cpu_at_end if cpu_at_end is not None else (total_s * 1e9 if total_s is not None else None)
            return round((end - cpu_at_release) / 1e9, 6) if end is not None and cpu_at_release is not None \
                else None
        if profiler is not None:
            # perf stat -p and procpoll end once their processes are gone.
            cpu = wait_reaping(profiler, 30)
            cell["profiler"] = {"argv": " ".join(argv), "cpu_s": cpu, "cpu_during_s": cpu_during(cpu),
                                "exit_code": exit_code(profiler.returncode)}
        if monitor is not None:
            m = finish_monitor(monitor, mlog, out, ctx.args.monitor_grace)
            cell["profiler"] = {"argv": "%s -o profile.csv --until-idle" % ctx.monitor_bin, "cpu_s": m["cpu_s"],
                                "cpu_during_s": cpu_during(m["cpu_s"]), "exit_code": m["exit_code"],
                                "log_tail": m["log_tail"]}
            monitor = None
    finally:
        alive = [p for p in works + [x for x in (profiler, monitor) if x is not None] if p.poll() is None]
        if alive:
            stop_processes(alive, grace=2)
        for f in files:
            f.close()
        if mlog is not None:
            mlog.close()
        try:
            os.unlink(barrier)
        except OSError:
            pass
    results = read_cell_results(outs, out)
    phase("finish_s")
    cell["phases"] = phases
    cell["exit_codes"] = [exit_code(p.returncode) for p in works]
    if any(r is None for r in results) or any(c != 0 for c in cell["exit_codes"]):
        cell["error"] = "work processes failed (exit codes %s; see work-K.log)" % cell["exit_codes"]
        return cell
    atomic_write(os.path.join(out, "works.json"), json.dumps(results) + "\n")
    add_work_totals(cell, results)
    add_profiler_counts(cell, condition, out, pids, before, after)
    cell["ok"] = True
    return cell


def read_cell_results(outs: list[str], out: str) -> list:
    """Each work's JSON line (None where missing: its output kept as work-K.log)."""
    results = []
    for k, path in enumerate(outs, start=1):
        text = read_text(path, "") or ""
        os.unlink(path)
        parsed = parse_work_output(text)
        if parsed is None:
            atomic_write(os.path.join(out, "work-%d.log" % k), text)
        results.append(parsed)
    return results


def add_work_totals(cell: dict, results: list[dict]) -> None:
    """What the work processes measured: the timed phases' span, accesses, faults, CPU."""
    cell["wall_s"] = round((max(r["end_mono_ns"] for r in results) - min(r["start_mono_ns"] for r in results)) / 1e9,
                           6)
    cell["accesses"] = sum(r["accesses"] for r in results)
    cell["work_minflt"] = sum(r["minflt"] for r in results)
    cell["work_majflt"] = sum(r["majflt"] for r in results)
    cell["work_cpu_s"] = round(sum(r["utime_s"] + r["stime_s"] for r in results), 6)


def add_profiler_counts(cell: dict, condition: str, out: str, pids: list[str], before, after) -> None:
    """What the cell's profiler saw of the same processes: samples and fault counts
    (pfprof: also its own counters' change over the cell)."""
    prof = cell["profiler"]
    if condition == "perf":
        t = perf_totals(os.path.join(out, "perf.csv"))
        prof.update({"samples": sum(1 for line in (read_text(os.path.join(out, "perf.csv"), "") or "").splitlines()
                                    if line.strip()[:1].isdigit() and "minor-faults" in line),
                     "minflt": t.get("minor-faults"), "majflt": t.get("major-faults")})
    elif condition == "poller":
        samples, minflt, majflt = poller_totals(os.path.join(out, "poll.csv"))
        prof.update({"samples": samples, "minflt": minflt, "majflt": majflt})
    elif condition == "pfprof":
        ticks, minflt, majflt = profile_totals(os.path.join(out, "profile.csv"), set(pids))
        prof.update({"samples": ticks, "minflt": minflt, "majflt": majflt})
        cell["pfprof"] = {k: after.get(k, 0) - before.get(k, 0)
                          for k in ("ticks", "work_ns_sum", "records_dropped", "ticks_merged", "ticks_resync")}
