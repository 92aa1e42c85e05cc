"""Case Study 2: N processes until the machine thrashes. case2-start plans
the sweep (case2/params.json), case2-point runs one N once."""
from __future__ import annotations

import os

from .common import RUNNER_VERSION, RunnerError, log, utc_now
from .files import atomic_json, fresh_tmp_dir
from .planning import (case2_points, parse_fill, parse_n_values, plan_n_values, point_dir_name,
                   resolve_case2_work_mb, work_fill_args)
from .run import RunSpec, execute_run, finish_run
from .steps import Ctx, earlier_failure
from .sweep import begin_case, current_attempt, new_attempt, start_result
from .values import fmt_num, human, positive_float, positive_int


def cmd_plan_case2(args) -> dict:
    work_mb, sizing, warnings = resolve_case2_work_mb(args.work_mb, args.mem_available_mb,
                                                      args.lab_min_memory_mb)
    plan = plan_n_values(args.mem_available_mb, args.swap_mb, work_mb, args.points, args.max_factor,
                         args.swap_fraction)
    plan["work_mb"] = work_mb
    plan["sizing"] = sizing
    plan["warnings"] = warnings + plan["warnings"]
    return plan


def start_arguments(a) -> dict:
    """The arguments of case2-start as given: a resumed case must have the same."""
    return {"work_mb": a.work_mb, "lab_min_memory_mb": a.lab_min_memory_mb, "n_values": a.n_values,
            "points": a.points, "max_factor": a.max_factor, "swap_fraction": a.swap_fraction,
            "repeats": a.repeats, "seconds": a.seconds, "accesses": a.accesses, "mode": a.mode,
            "fill": a.fill, "timeout": a.timeout}


def cmd_case2_start(ctx: Ctx) -> dict:
    a = ctx.args
    ctx.check_tools()
    arguments = start_arguments(a)
    how, params = begin_case(ctx, "case2", arguments)
    if params is not None:
        return start_result(ctx, "case2", plan_result(params, how))
    ctx.start_case_dir("case2")
    settle_info = ctx.settle()
    facts = ctx.write_facts("case2")
    avail_mb = facts["mem_available_kb"] / 1024.0
    swap_mb = (facts.get("swap_total_kb") or 0) / 1024.0
    work_mb, sizing, size_warnings = resolve_case2_work_mb(a.work_mb, avail_mb, a.lab_min_memory_mb)
    plan = plan_n_values(avail_mb, swap_mb, work_mb, a.points, a.max_factor, a.swap_fraction)
    plan["warnings"] = size_warnings + plan["warnings"]
    if sizing is not None:
        plan["sizing"] = sizing
    if a.n_values == "auto":
        n_values = plan["n_values"]
    else:
        n_values = parse_n_values(a.n_values)
        limit = avail_mb + 0.95 * swap_mb
        over = [n for n in n_values if n * work_mb > limit]
        if over:
            plan["warnings"].append("N = %s need more than the available memory plus 95%% of swap "
                                    "(%.0f MiB): expect OOM kills" % (over, limit))
    repeats = positive_int(a.repeats, "case2_repeats")
    seconds = positive_float(a.seconds, "case2_seconds")
    accesses = positive_int(a.accesses, "case2_accesses")
    timeout = positive_float(a.timeout, "case2_timeout")
    if a.mode not in ("R", "L"):
        raise RunnerError("case2_mode must be R or L, not %r" % a.mode)
    fill_data = parse_fill(a.fill, "case2_fill", allow_phase=False)[1]
    points = case2_points(n_values, repeats)
    variables = {"case2_work_mb": work_mb, "case2_n_values": sorted(n_values), "case2_repeats": repeats,
                 "case2_seconds": seconds, "case2_accesses": accesses, "case2_mode": a.mode,
                 "case2_timeout": timeout, "case2_fill": fill_data}
    params = {
        "case": 2, "run_id": a.run_id, "machine": a.machine,
        "work_mb": work_mb, "mode": a.mode, "accesses": accesses, "seconds": seconds, "fill_data": fill_data,
        "n_values": sorted(n_values), "repeats": repeats, "timeout_s": timeout,
        "order": [[p["n"], p["repeat"]] for p in points],
        "mem_available_kb": facts["mem_available_kb"], "swap_total_kb": facts.get("swap_total_kb"),
        "predicted_n": round(avail_mb / work_mb, 3), "plan": plan,
        "requested": {"work_mb": a.work_mb, "n_values": a.n_values, "points": a.points,
                      "max_factor": a.max_factor, "swap_fraction": a.swap_fraction,
                      "lab_min_memory_mb": a.lab_min_memory_mb},
        "variables": variables, "work_bin": ctx.work_bin, "monitor_bin": ctx.monitor_bin,
        "psi_interval_s": a.psi_interval, "started": utc_now(), "settle": settle_info,
        "runner_version": RUNNER_VERSION, "arguments": arguments, "attempts": [new_attempt(1)],
    }
    atomic_json(os.path.join(ctx.case_dir("case2"), "params.json"), params)
    for w in plan["warnings"]:
        log("warning: " + w)
    return start_result(ctx, "case2", plan_result(params, how))


def plan_result(params: dict, how: str) -> dict:
    """What case2-start returns (from params.json: the same for a fresh, a resumed
    and a re-attached case): the plan, and the attempt the sweep's lines carry."""
    n_values = params["n_values"]
    summary = "case2 on %s: %d MiB per process, N = %s x %d repeat(s), %gs each; predicted knee N = %.1f" % (
        params["machine"], params["work_mb"], ",".join(map(str, n_values)), params["repeats"], params["seconds"],
        params["predicted_n"])
    if how != "fresh":
        summary += " (%s, attempt %d)" % (how, current_attempt(params))
    return {"summary": summary, "work_mb": params["work_mb"], "n_values": n_values, "repeats": params["repeats"],
            "points": [{"n": n, "repeat": r} for n, r in params["order"]], "predicted_n": params["predicted_n"],
            "mem_available_kb": params["mem_available_kb"], "warnings": params["plan"]["warnings"],
            "variables": params["variables"], "attempt": current_attempt(params), "start": how}


def cmd_case2_point(ctx: Ctx) -> dict:
    return case2_point(ctx, ctx.args.n, ctx.args.repeat)


def case2_point(ctx: Ctx, n: int, r: int) -> dict:
    """One run of N processes, repeat r (parameters from case2/params.json)."""
    a = ctx.args
    params = ctx.read_params("case2")
    earlier_failure(ctx, "case2")
    if n < 1 or r < 1:
        raise RunnerError("--n and --repeat must be at least 1")
    ctx.check_tools()
    work_mb = params["work_mb"]
    final = os.path.join(ctx.case_dir("case2"), point_dir_name(n, r))
    settle_info = ctx.settle()
    tmp = fresh_tmp_dir(final)
    os.makedirs(ctx.machine.run_dir, exist_ok=True)
    barrier = os.path.join(ctx.machine.run_dir, "barrier-%s-n%02d-r%d" % (a.run_id, n, r))
    if os.path.lexists(barrier):
        os.unlink(barrier)
    work_argv = [ctx.work_bin, str(work_mb), params["mode"], str(params["accesses"]),
                 "--seconds", fmt_num(params["seconds"]), "--barrier", barrier, str(n),
                 *work_fill_args(True, params.get("fill_data"))]
    spec = RunSpec([list(work_argv) for _ in range(n)], timeout=float(params["timeout_s"]),
                   psi_interval=float(params.get("psi_interval_s", a.psi_interval)),
                   monitor_argv_head=[ctx.monitor_bin], monitor_grace=a.monitor_grace)
    try:
        info, works = execute_run(ctx.machine, spec, tmp)
    finally:
        try:
            os.unlink(barrier)
        except OSError:
            pass
    finish_run({"case": 2, "n": n, "repeat": r, "work_mb": work_mb, "mode": params["mode"],
                "accesses": params["accesses"], "seconds": params["seconds"]},
               info, works, settle_info, tmp, final)
    thr = info.get("accesses_per_s_sum")
    maj = info.get("majflt_sum")
    notes = []
    if info["timed_out"]:
        notes.append("TIMEOUT (killed %s)" % info["killed"])
    if info["oom_killed"]:
        notes.append("OOM kills %d" % info["oom_killed"])
    if info["missing_json"]:
        notes.append("no JSON from work %s" % info["missing_json"])
    if info.get("starved"):
        notes.append("%d of %d starved (slowest %s/s)" % (info["starved"], n, human(info["accesses_per_s_min"])))
    summary = "N=%d r=%d: %s accesses/s, %s major faults, wall %.1fs, overlap %s%s" % (
        n, r, human(thr), human(maj), info["wall_s"],
        ("%.1fs" % info["overlap_s"]) if info["overlap_s"] is not None else "n/a",
        (", " + ", ".join(notes)) if notes else "")
    return {"summary": summary, "n": n, "repeat": r, "dir": final, "wall_s": info["wall_s"],
            "overlap_s": info["overlap_s"], "accesses_per_s": thr, "majflt": maj,
            "oom_killed": info["oom_killed"], "timed_out": info["timed_out"], "exit_codes": info["exit_codes"]}
