"""One run (a Case Study 2 point, or a Case Study 1 pair): snapshots, the
monitor, the work processes, PSI sampling, the work JSONs, run.json."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from . import common
from .common import RUNNER_VERSION, RunnerError, log, utc_now
from .files import atomic_json, atomic_write, commit_dir, read_text, tail
from .machine import Machine
from .processes import exit_code, has_open, reset_oom_score, stop_processes
from .procfs import PSI_HEADER, parse_psi, psi_row, vmstat_delta
from .work_output import overlap_s, parse_work_output, work_totals

TIMEOUT_EXIT = 124           # exit code recorded for a process stopped at the run's timeout
# A work process stopped at the timeout gets this long after SIGTERM to print its JSON
# (partial counts, "interrupted": true) before SIGKILL: a thrashing process may first
# have to fault its code and stack back in.
WORK_STOP_GRACE = 10.0
# The kernel's files copied before and after a run (<name>-before.txt, <name>-after.txt).
SNAPSHOTS = (("vmstat", ("vmstat",)), ("psi", ("pressure", "memory")), ("meminfo", ("meminfo",)))
VMSTAT_DELTA_KEYS = ("pgmajfault", "pgfault", "pswpin", "pswpout", "oom_kill",
                     "pgscan_direct", "pgsteal_direct", "allocstall_normal", "allocstall_movable")


class RunSpec:
    def __init__(self, works: list[list[str]], timeout: float, psi_interval: float,
                 monitor_argv_head: list[str], monitor_grace: float = 15.0, work_env=None):
        self.works = works
        self.timeout = timeout
        self.psi_interval = psi_interval
        self.monitor_argv_head = monitor_argv_head
        self.monitor_grace = monitor_grace
        self.work_env = work_env


class RunProcesses:
    """What a run started (the monitor, the work processes, their log files),
    so that whatever happens none of it is left behind."""

    def __init__(self):
        self.monitor = None
        self.works: list = []
        self.logs: list = []

    def open_log(self, path: str):
        f = open(path, "wb")
        self.logs.append(f)
        return f

    def stop_all(self) -> None:
        alive = [p for p in self.works + ([self.monitor] if self.monitor else []) if p.poll() is None]
        if alive:
            stop_processes(alive, grace=2)
        for f in self.logs:
            try:
                f.close()
            except OSError:
                pass


def snapshot(machine: Machine, out: str, when: str) -> None:
    for name, rel in SNAPSHOTS:
        text = read_text(machine.p(*rel))
        if text is not None:
            atomic_write(os.path.join(out, "%s-%s.txt" % (name, when)), text)
    stats = read_text(machine.p("pfprof", "stats"))
    if stats is not None:
        atomic_write(os.path.join(out, "pfprof-stats-%s.txt" % when), stats)


def start_monitor(machine: Machine, procs: RunProcesses, monitor_argv: list[str], monitor_log: str) -> bool:
    """Start the monitor and wait until it has the ring open (records written
    before that could be missed); False if it has not after 10 s."""
    mlog = procs.open_log(monitor_log)
    monitor = procs.monitor = subprocess.Popen(monitor_argv, stdin=subprocess.DEVNULL, stdout=mlog,
                                               stderr=subprocess.STDOUT)
    ready_deadline = time.monotonic() + 10
    while time.monotonic() < ready_deadline:
        if monitor.poll() is not None:
            raise RunnerError("the monitor exited at start with status %s: %s"
                              % (exit_code(monitor.returncode), tail(monitor_log, 600).strip()))
        if has_open(monitor.pid, machine.device):
            return True
        time.sleep(0.02)
    log("the monitor has not opened %s after 10 s; starting the work processes anyway" % machine.device)
    return False


def start_works(spec: RunSpec, procs: RunProcesses, out: str) -> list[tuple[str, str]]:
    """Start the work processes, each one's stdout and stderr to a hidden file
    of ``out``; returns those files' names."""
    outs = []
    for k, argv in enumerate(spec.works, start=1):
        fo = procs.open_log(os.path.join(out, ".work-%d.out" % k))
        fe = procs.open_log(os.path.join(out, ".work-%d.err" % k))
        outs.append((fo.name, fe.name))
        procs.works.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                            preexec_fn=reset_oom_score, env=spec.work_env))
    return outs


def watch_works(machine: Machine, spec: RunSpec, works: list, t0: float) -> tuple[list, list[str], bool]:
    """Sample PSI until every work process has exited or the run's timeout;
    returns (each one's end time or None, the PSI rows, timed out?)."""
    ends: list = [None] * len(works)
    samples = [PSI_HEADER]
    deadline = t0 + spec.timeout
    next_sample = t0
    timed_out = False
    # Sleep until the next PSI sample or a child's exit (SIGCHLD, blocked and
    # waited for), not in a polling loop: on one emulated vCPU a busy runner
    # would take CPU time from the processes it measures.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        while True:
            now = time.monotonic()
            if now >= next_sample:
                text = machine.psi_text()
                if text is not None:
                    samples.append(psi_row(now - t0, parse_psi(text)))
                next_sample += spec.psi_interval
                if next_sample < now:
                    next_sample = now + spec.psi_interval
            for i, p in enumerate(works):
                if ends[i] is None and p.poll() is not None:
                    ends[i] = time.monotonic()
            if all(e is not None for e in ends):
                break
            if now > deadline:
                timed_out = True
                break
            wait = min(next_sample, deadline + 0.01) - time.monotonic()
            if wait > 0:
                signal.sigtimedwait({signal.SIGCHLD}, wait)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    return ends, samples, timed_out


def stop_at_timeout(spec: RunSpec, works: list, ends: list) -> list[int]:
    """Stop the work processes still running at the timeout; returns their
    numbers (1-based) and sets their end times."""
    log("timeout after %.0f s: stopping %d work process(es)"
        % (spec.timeout, sum(1 for p in works if p.poll() is None)))
    killed = [i + 1 for i in stop_processes(works, grace=WORK_STOP_GRACE)]
    for i, p in enumerate(works):
        if ends[i] is None:
            ends[i] = time.monotonic()
    return killed


def wait_monitor(monitor, grace: float) -> bool:
    """The monitor exits by itself once the last registered process is gone and
    the ring is drained (--until-idle); it is stopped after ``grace``. Returns
    whether it had to be stopped."""
    mon_deadline = time.monotonic() + grace
    while monitor.poll() is None and time.monotonic() < mon_deadline:
        time.sleep(0.05)
    if monitor.poll() is None:
        monitor.send_signal(signal.SIGINT)
        try:
            monitor.wait(timeout=5)
        except subprocess.TimeoutExpired:
            stop_processes([monitor], grace=2)
        return True
    return False


def monitor_record(monitor, monitor_argv: list[str], stopped: bool, monitor_log: str, profile_tmp: str,
                   out: str) -> dict:
    """The monitor's part of run.json; puts its profile.csv in place and drops
    an empty monitor.log."""
    record = {"argv": monitor_argv[:-3] + ["-o", "profile.csv", "--until-idle"],
              "exit_code": exit_code(monitor.returncode), "stopped": stopped}
    mtail = tail(monitor_log, 800).strip()
    if mtail:
        record["log_tail"] = mtail
    else:
        os.unlink(monitor_log)
    if os.path.exists(profile_tmp):
        os.replace(profile_tmp, os.path.join(out, "profile.csv"))
    else:
        record["no_profile"] = True
    return record


def collect_work_outputs(outs: list[tuple[str, str]], out: str) -> tuple[list, list[int]]:
    """Each work's JSON line -> work-K.json, its stderr -> work-K.log (if any);
    returns (the JSONs, None where missing; the numbers of the missing ones)."""
    works, missing = [], []
    for k, (o, e) in enumerate(outs, start=1):
        w = parse_work_output(read_text(o, "") or "")
        err = read_text(e, "") or ""
        os.unlink(o)
        if err.strip():
            atomic_write(os.path.join(out, "work-%d.log" % k), err)
        os.unlink(e)
        if w is None:
            missing.append(k)
        else:
            atomic_write(os.path.join(out, "work-%d.json" % k), json.dumps(w) + "\n")
        works.append(w)
    return works, missing


def execute_run(machine: Machine, spec: RunSpec, out: str) -> tuple[dict, list]:
    """Snapshots, monitor, work processes, PSI sampling, work JSONs, snapshots.
    Writes into ``out`` (the run's hidden directory); returns the facts of the run
    for run.json and the work processes' JSONs."""
    info: dict = {}
    registered_before = machine.registered()
    if registered_before:
        info["pfprof_registered_before"] = registered_before
    vm_before = machine.vmstat()
    snapshot(machine, out, "before")

    started = utc_now()
    profile_tmp = os.path.join(out, ".profile.csv.partial")
    monitor_log = os.path.join(out, "monitor.log")
    monitor_argv = spec.monitor_argv_head + ["-o", profile_tmp, "--until-idle"]
    procs = RunProcesses()
    try:
        info["monitor_ready"] = start_monitor(machine, procs, monitor_argv, monitor_log)
        t0 = time.monotonic()
        t0_ns = time.monotonic_ns()
        outs = start_works(spec, procs, out)
        ends, samples, timed_out = watch_works(machine, spec, procs.works, t0)
        killed = stop_at_timeout(spec, procs.works, ends) if timed_out else []
        t_end = max(ends) if ends else time.monotonic()
        text = machine.psi_text()
        if text is not None:
            samples.append(psi_row(time.monotonic() - t0, parse_psi(text)))
        atomic_write(os.path.join(out, "psi-samples.csv"), "\n".join(samples) + "\n")
        monitor_stopped = wait_monitor(procs.monitor, spec.monitor_grace)
        ended = utc_now()
    finally:
        procs.stop_all()

    info["monitor"] = monitor_record(procs.monitor, monitor_argv, monitor_stopped, monitor_log, profile_tmp, out)
    works, missing = collect_work_outputs(outs, out)
    vm_after = machine.vmstat()
    snapshot(machine, out, "after")
    raw_codes = [exit_code(p.returncode) for p in procs.works]
    # A process the runner had to stop at the timeout did not finish its run, whatever
    # it exited with (work exits 0 after SIGTERM, with "interrupted": true): 124, as
    # timeout(1) says; the real codes are in exit_codes_raw.
    codes = [TIMEOUT_EXIT if (i + 1) in killed else c for i, c in enumerate(raw_codes)]
    info.update({
        "started": started, "ended": ended,
        "wall_s": round(t_end - t0, 3),
        "overlap_s": overlap_s(works),
        "exit_codes": codes, "exit_codes_raw": raw_codes,
        "oom_killed": max(0, vmstat_delta(vm_before, vm_after, "oom_kill") or 0),
        "timed_out": timed_out, "killed": killed, "missing_json": missing,
        "timeout_s": spec.timeout,
        "t0_mono_ns": t0_ns,
        "commands": {"monitor": " ".join(info["monitor"]["argv"]), "work": [" ".join(a) for a in spec.works]},
        "vmstat_delta": {k: vmstat_delta(vm_before, vm_after, k) for k in VMSTAT_DELTA_KEYS
                         if k in vm_before and k in vm_after},
    })
    info.update(work_totals(works, missing))
    return info, works


def check_every_work_failed(info: dict, works: list, out_hint: str) -> None:
    """A run where no work process produced its JSON, with neither a timeout nor an
    OOM kill to explain it, is a broken setup (bad binary, bad arguments): an error."""
    if works and all(w is None for w in works) and not info["timed_out"] and not info["oom_killed"]:
        raise RunnerError("every work process failed without its JSON line (exit codes %s); "
                          "see the work-K.log files of %s" % (info["exit_codes"], out_hint))


def finish_run(run: dict, info: dict, works: list, settle_info: dict, tmp: str, final: str) -> None:
    """Both cases end a run alike: run.json (the case's own keys first, then
    what execute_run measured) written last, the directory committed, and a
    run whose every work process failed reported as an error."""
    run.update({k: info[k] for k in ("wall_s", "overlap_s", "started", "ended", "exit_codes", "oom_killed")})
    run.update({k: v for k, v in info.items() if k not in run})
    run["settle"] = settle_info
    run["runner_started"] = common.RUNNER_STARTED
    run["runner_version"] = RUNNER_VERSION
    atomic_json(os.path.join(tmp, "run.json"), run)
    commit_dir(tmp, final)
    check_every_work_failed(info, works, final)
