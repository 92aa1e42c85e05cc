"""What every step shares: its context (where the run's results go, the
machine, the programs), the FAILED marker that stops a failed case's later
steps, and the steps of no one case (facts, case-finish)."""
from __future__ import annotations

import json
import os
import re

from .common import RUNNER_VERSION, RunnerError, log, utc_now
from .facts import read_facts
from .files import atomic_json, fsync_dir, read_text, remove_tree
from .machine import Machine, settle
from .sweep import case_points, failure_text
from .procfs import parse_stats
from .profilers import perf_version

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Ctx:
    """A step's context: its arguments, the run's directory, the machine, the programs."""

    def __init__(self, args):
        self.args = args
        if not RUN_ID_RE.match(args.run_id or ""):
            raise RunnerError("bad run id %r (letters, digits, '.', '_', '-')" % args.run_id)
        self.run_root = os.path.join(args.results_dir, args.run_id)
        self.machine = Machine(args.proc_root, args.sys_root, args.pfprof_device, args.run_dir)
        self.work_bin = args.work_bin or os.path.join(args.remote_dir, "workloads", "work")
        self.monitor_bin = args.monitor_bin or os.path.join(args.remote_dir, "workloads", "monitor")

    def case_dir(self, case):
        return os.path.join(self.run_root, case)

    def check_tools(self):
        self.machine.check_pfprof()
        for name, path in (("work", self.work_bin), ("monitor", self.monitor_bin)):
            if not os.access(path, os.X_OK):
                raise RunnerError("%s is not an executable at %s: run `ansible-playbook playbooks/setup.yml`, "
                                  "which builds the workloads" % (name, path))

    def programs(self) -> list[str]:
        """The programs a run starts: a settle waits until none of them is left."""
        return [self.work_bin, self.monitor_bin]

    def settle(self):
        return settle(self.machine, self.programs(), timeout=self.args.settle_timeout,
                      window=self.args.swap_window)

    def read_params(self, case):
        path = os.path.join(self.case_dir(case), "params.json")
        text = read_text(path)
        if text is None:
            raise RunnerError("%s is missing: run %s-start first" % (path, case))
        try:
            return json.loads(text)
        except ValueError as e:
            raise RunnerError("%s: corrupt (%s)" % (path, e))

    def write_facts(self, case):
        facts = read_facts(self.machine, self.args)
        atomic_json(os.path.join(self.run_root, "facts.json"), facts)
        atomic_json(os.path.join(self.case_dir(case), "facts.json"), facts)
        return facts

    def start_case_dir(self, case):
        os.makedirs(self.run_root, exist_ok=True)
        d = self.case_dir(case)
        if os.path.lexists(d):
            log("replacing the earlier %s of run %s" % (case, self.args.run_id))
            remove_tree(d)
        os.makedirs(d)


def cmd_facts(ctx: Ctx) -> dict:
    os.makedirs(ctx.run_root, exist_ok=True)
    facts = read_facts(ctx.machine, ctx.args)
    atomic_json(os.path.join(ctx.run_root, "facts.json"), facts)
    return facts


def earlier_failure(ctx: Ctx, case: str) -> None:
    """A step of this case failed before: the case cannot complete, so the later
    steps stop at once (one quick error each) instead of running for nothing."""
    text = read_text(os.path.join(ctx.case_dir(case), "FAILED"))
    if text is not None:
        raise RunnerError("an earlier step of %s failed (%s); not running this one" % (case, failure_text(text)))


def record_failure(ctx: Ctx, case: str, step: str, error: str) -> None:
    d = ctx.case_dir(case)
    if os.path.isdir(d) and not os.path.exists(os.path.join(d, "FAILED")):
        try:
            atomic_json(os.path.join(d, "FAILED"), {"step": step, "error": error, "at": utc_now()})
        except OSError:
            pass


def cmd_case_finish(ctx: Ctx) -> dict:
    return finish_case(ctx, ctx.args.case)


def finish_case(ctx: Ctx, case: str) -> dict:
    """Check that every run of the case is there, then write its DONE marker."""
    params = ctx.read_params(case)
    earlier_failure(ctx, case)
    d = ctx.case_dir(case)
    if case == "bench":
        expected = ["idle"] + ["overhead/r-%02d" % r for r in range(1, params["rounds"] + 1)]
    else:
        expected = [key for key, _item in case_points(case, params)]
    # a run's record: run.json (a bench round: r-NN.json beside its directory)
    missing = [e for e in expected
               if not os.path.isfile(os.path.join(d, e + ".json") if e.startswith("overhead/")
                                     else os.path.join(d, e, "run.json"))]
    if missing:
        raise RunnerError("%s is incomplete: no %s" % (d, ", ".join(missing)))
    params["ended"] = utc_now()
    atomic_json(os.path.join(d, "params.json"), params)
    done = {"case": case, "run_id": ctx.args.run_id, "completed": params["ended"], "runs": expected,
            "runner_version": RUNNER_VERSION}
    atomic_json(os.path.join(d, "DONE"), done)
    fsync_dir(d)
    return {"summary": "%s complete: %d run(s) in %s" % (case, len(expected), d), "case": case,
            "runs": len(expected), "dir": d}


class BenchCtx(Ctx):
    """A benchmark step's context: also procpoll, perf and pfprof's counters."""

    def __init__(self, args):
        super().__init__(args)
        self.procpoll_bin = args.procpoll_bin or os.path.join(args.remote_dir, "workloads", "procpoll")

    def check_bench_tools(self, perf: str):
        self.check_tools()
        if not os.access(self.procpoll_bin, os.X_OK):
            raise RunnerError("procpoll is not an executable at %s: run `ansible-playbook playbooks/setup.yml`, "
                              "which builds the workloads" % self.procpoll_bin)
        if perf_version(perf) is None:
            raise RunnerError("`%s version` does not run: install perf (Debian: linux-perf; the bench "
                              "playbook installs it when missing)" % perf)

    def stats(self) -> dict:
        return parse_stats(self.machine.read("pfprof", "stats"))

    def programs(self) -> list[str]:
        return super().programs() + [self.procpoll_bin]
