"""Case Study 1: the fault profiles of pairs of processes. case1-start sizes
the pairs (case1/params.json), case1-pair runs one pair."""
from __future__ import annotations

import os
import re

from .common import RUNNER_VERSION, RunnerError, log, utc_now
from .files import atomic_json, fresh_tmp_dir
from .planning import case1_accesses, parse_fill, parse_work_spec, plan_case1_mb, work_fill_args
from .run import RunSpec, execute_run, finish_run
from .steps import Ctx, earlier_failure
from .sweep import begin_case, current_attempt, new_attempt, start_result
from .values import human, positive_float, positive_int

PAIR_RE = re.compile(r"^[A-Za-z0-9]{1,8}$")


def _parse_pair_option(values: list[str]) -> dict:
    pairs = {}
    for v in values or []:
        name, sep, specs = v.partition("=")
        name = name.strip()
        if not sep or not PAIR_RE.match(name):
            raise RunnerError("--pair %r: expected NAME=SPEC,SPEC (NAME letters/digits, e.g. A)" % v)
        if name in pairs:
            raise RunnerError("--pair %s given twice" % name)
        pairs[name] = [s.strip() for s in specs.split(",") if s.strip()]
        if not pairs[name]:
            raise RunnerError("--pair %s: no work spec" % name)
    if not pairs:
        raise RunnerError("case1-start needs at least one --pair NAME=SPEC,SPEC")
    return pairs


def start_arguments(a) -> dict:
    """The arguments of case1-start as given: a resumed case must have the same."""
    return {"work_mb": a.work_mb, "pair": a.pair, "iterations": a.iterations, "accesses_many": a.accesses_many,
            "accesses_few": a.accesses_few, "fill": a.fill, "work_arg": a.work_arg, "timeout": a.timeout}


def cmd_case1_start(ctx: Ctx) -> dict:
    a = ctx.args
    ctx.check_tools()
    raw_pairs = _parse_pair_option(a.pair)
    arguments = start_arguments(a)
    how, params = begin_case(ctx, "case1", arguments)
    if params is not None:
        return start_result(ctx, "case1", plan_result(params, how))
    ctx.start_case_dir("case1")
    settle_info = ctx.settle()
    facts = ctx.write_facts("case1")
    avail_mb = facts["mem_available_kb"] / 1024.0
    work_mb = plan_case1_mb(avail_mb) if a.work_mb == "auto" else positive_int(a.work_mb, "case1_work_mb")
    fill, fill_data = parse_fill(a.fill, "case1_fill", allow_phase=True)
    iterations = positive_int(a.iterations, "case1_iterations") if a.iterations not in (None, "", "default") else None
    pairs = {}
    warnings = []
    for name, specs in raw_pairs.items():
        named = {"many": lambda mb: case1_accesses(a.accesses_many, "many", mb),
                 "few": lambda mb: case1_accesses(a.accesses_few, "few", mb)}
        procs = [parse_work_spec(s, work_mb, iterations, named) for s in specs]
        total = sum(p["mb"] for p in procs)
        if total > 0.9 * avail_mb:
            warnings.append("pair %s needs %d MiB of %.0f MiB available: it will not fit in memory "
                            "(major faults expected)" % (name, total, avail_mb))
        pairs["pair-%s" % name] = procs
    timeout = positive_float(a.timeout, "case1_timeout")
    extra = a.work_arg or []
    params = {
        "case": 1, "run_id": a.run_id, "machine": a.machine, "work_mb": work_mb,
        "pairs": {name: ["%s %d %d" % (p["mode"], p["mb"], p["accesses_per_iteration"]) for p in procs]
                  for name, procs in pairs.items()},
        "processes": pairs, "iterations": iterations, "fill": fill, "fill_data": fill_data,
        "extra_work_args": extra,
        "timeout_s": timeout,
        "mem_available_kb": facts["mem_available_kb"],
        "variables": {"case1_work_mb": work_mb, "case1_iterations": iterations, "case1_timeout": timeout,
                      "case1_accesses_many": case1_accesses(a.accesses_many, "many", work_mb),
                      "case1_accesses_few": case1_accesses(a.accesses_few, "few", work_mb),
                      "case1_fill": fill_data if fill else False,
                      "case1_pairs": {name: specs for name, specs in raw_pairs.items()},
                      "case1_extra_work_args": extra},
        "work_bin": ctx.work_bin, "monitor_bin": ctx.monitor_bin, "psi_interval_s": a.psi_interval,
        "started": utc_now(), "settle": settle_info, "warnings": warnings, "runner_version": RUNNER_VERSION,
        "arguments": arguments, "attempts": [new_attempt(1)],
    }
    atomic_json(os.path.join(ctx.case_dir("case1"), "params.json"), params)
    for w in warnings:
        log("warning: " + w)
    return start_result(ctx, "case1", plan_result(params, how))


def plan_result(params: dict, how: str) -> dict:
    """What case1-start returns (from params.json: the same for a fresh, a resumed
    and a re-attached case)."""
    pairs = params["processes"]
    summary = "case1 on %s: %s" % (params["machine"], "; ".join(
        "%s = %s" % (name, " + ".join("%d %s %d" % (p["mb"], p["mode"], p["accesses_per_iteration"]) for p in procs))
        for name, procs in pairs.items()))
    if how != "fresh":
        summary += " (%s, attempt %d)" % (how, current_attempt(params))
    return {"summary": summary, "work_mb": params["work_mb"], "pairs": sorted(n[len("pair-"):] for n in pairs),
            "warnings": params["warnings"], "mem_available_kb": params["mem_available_kb"],
            "variables": params["variables"], "attempt": current_attempt(params), "start": how}


def cmd_case1_pair(ctx: Ctx) -> dict:
    return case1_pair(ctx, ctx.args.pair_name)


def case1_pair(ctx: Ctx, pair_name: str) -> dict:
    """One pair, side by side (parameters from case1/params.json)."""
    a = ctx.args
    params = ctx.read_params("case1")
    earlier_failure(ctx, "case1")
    name = "pair-%s" % pair_name
    procs = params["processes"].get(name)
    if procs is None:
        raise RunnerError("no %s in %s/params.json (pairs: %s)"
                          % (name, ctx.case_dir("case1"), ", ".join(sorted(params["processes"]))))
    ctx.check_tools()
    final = os.path.join(ctx.case_dir("case1"), name)
    settle_info = ctx.settle()
    tmp = fresh_tmp_dir(final)
    works = []
    for p in procs:
        argv = [ctx.work_bin, str(p["mb"]), p["mode"], str(p["accesses_per_iteration"])]
        if p.get("iterations"):
            argv.append(str(p["iterations"]))
        argv += work_fill_args(params.get("fill", False), params.get("fill_data"))
        works.append(argv + list(params.get("extra_work_args") or []))
    spec = RunSpec(works, timeout=float(params["timeout_s"]),
                   psi_interval=float(params.get("psi_interval_s", a.psi_interval)),
                   monitor_argv_head=[ctx.monitor_bin], monitor_grace=a.monitor_grace)
    info, wjson = execute_run(ctx.machine, spec, tmp)
    finish_run({"case": 1, "pair": name, "processes": procs}, info, wjson, settle_info, tmp, final)
    minf = [w.get("minflt") for w in wjson if isinstance(w, dict)]
    majf = [w.get("majflt") for w in wjson if isinstance(w, dict)]
    notes = []
    if info["timed_out"]:
        notes.append("TIMEOUT (killed %s)" % info["killed"])
    if info["oom_killed"]:
        notes.append("OOM kills %d" % info["oom_killed"])
    summary = "%s: minor faults %s, major faults %s, wall %.1fs%s" % (
        name, "+".join(human(m) for m in minf) or "n/a", "+".join(human(m) for m in majf) or "n/a",
        info["wall_s"], (", " + ", ".join(notes)) if notes else "")
    return {"summary": summary, "pair": name, "dir": final, "wall_s": info["wall_s"], "minflt": minf,
            "majflt": majf, "oom_killed": info["oom_killed"], "timed_out": info["timed_out"],
            "exit_codes": info["exit_codes"]}
