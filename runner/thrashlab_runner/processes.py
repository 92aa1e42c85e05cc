"""Processes: finding, watching, stopping and reaping them (through the
real /proc), and their exit codes as a shell shows them."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from .common import RunnerError
from .files import read_text


def exit_code(returncode: int | None) -> int | None:
    """Popen's return code as a shell would show it: a death by signal S is 128+S."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def processes_of(executables: list[str]) -> list[int]:
    """PIDs (from the real /proc) of live processes running one of ``executables``
    (matched on /proc/PID/exe, or on argv[0]/argv[1] for scripts)."""
    want = {os.path.realpath(e) for e in executables if e}
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            stat = read_text("/proc/%d/stat" % pid, "") or ""
            if stat.rpartition(")")[2].split()[:1] == ["Z"]:
                continue
            try:
                exe = os.readlink("/proc/%d/exe" % pid)
            except OSError:
                exe = ""
            if exe.endswith(" (deleted)"):
                exe = exe[:-10]
            argv = (read_text("/proc/%d/cmdline" % pid, "") or "").split("\0")[:2]
        except OSError:
            continue
        cands = {exe} | {os.path.realpath(a) for a in argv if a.startswith("/")}
        if cands & want:
            found.append(pid)
    return found


def has_open(pid: int, path: str) -> bool:
    target = os.path.realpath(path)
    d = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(d)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.path.realpath(os.readlink(os.path.join(d, fd))) == target:
                return True
        except OSError:
            continue
    return False


def reset_oom_score():
    # The runner protects itself from the OOM killer; the work processes must not
    # inherit that (they are the processes under test).
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("0\n")
    except OSError:
        pass


def stop_processes(procs: list, grace: float = 3.0) -> list[int]:
    """SIGTERM the live ones, then SIGKILL what is left after ``grace``; returns the
    indexes of those that had to be stopped."""
    stopped = [i for i, p in enumerate(procs) if p.poll() is None]
    for i in stopped:
        try:
            procs[i].send_signal(signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(procs[i].poll() is None for i in stopped):
        time.sleep(0.05)
    for i in stopped:
        if procs[i].poll() is None:
            try:
                procs[i].kill()
            except OSError:
                pass
    for i in stopped:
        try:
            procs[i].wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    return stopped


def wait_for(predicate, timeout: float, what: str, proc=None, interval: float = 0.01) -> None:
    """Poll until predicate() is true; a RunnerError after ``timeout`` or when
    ``proc`` (the process that should make it true) has exited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise RunnerError("%s: the process exited with status %s first" % (what, exit_code(proc.returncode)))
        if time.monotonic() > deadline:
            raise RunnerError("%s: not after %.0f s" % (what, timeout))
        time.sleep(interval)


def wait_reaping(proc, timeout: float) -> float | None:
    """Wait for ``proc`` and return its user+system CPU seconds (from wait4),
    or None if it had to be killed after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.02)
    stop_processes([proc], grace=2)
    return None


def runtime_ns(pid: int) -> int | None:
    """CPU time of every thread of ``pid`` so far, in ns (the scheduler's own
    sum, /proc/PID/task/*/schedstat: finer than utime/stime's clock ticks)."""
    total, found = 0, False
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        text = read_text("/proc/%d/task/%s/schedstat" % (pid, tid))
        if text and text.split()[0].isdigit():
            total += int(text.split()[0])
            found = True
    return total if found else None


def protect_self() -> None:
    """Keep the runner out of the OOM killer's way (it records the run); root only."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000\n")
    except OSError:
        pass
