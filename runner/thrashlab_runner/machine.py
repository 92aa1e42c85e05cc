"""The machine: where the runner reads the kernel's files, and the settle
between two runs."""
from __future__ import annotations

import os
import signal
import time

from .common import RunnerError, log
from .files import read_text
from .processes import processes_of
from .procfs import parse_meminfo, parse_vmstat


class Machine:
    """Where the runner reads and writes the kernel's files (tests point it elsewhere)."""

    def __init__(self, proc_root="/proc", sys_root="/sys", device="/dev/pfprof", run_dir="/run/thrashlab"):
        self.proc = proc_root
        self.sys = sys_root
        self.device = device
        self.run_dir = run_dir

    def p(self, *parts):
        return os.path.join(self.proc, *parts)

    def read(self, *parts) -> str:
        text = read_text(self.p(*parts))
        if text is None:
            raise RunnerError("cannot read %s" % self.p(*parts))
        return text

    def vmstat(self) -> dict:
        return parse_vmstat(self.read("vmstat"))

    def meminfo(self) -> dict:
        return parse_meminfo(self.read("meminfo"))

    def psi_text(self) -> str | None:
        return read_text(self.p("pressure", "memory"))

    def pfprof_status_path(self):
        return self.p("pfprof", "status")

    def check_pfprof(self) -> None:
        status = self.pfprof_status_path()
        if not os.path.exists(status):
            raise RunnerError("pfprof is not loaded on this machine (no %s): run "
                              "`ansible-playbook playbooks/setup.yml`, which builds and loads it" % status)
        if not os.path.exists(self.device):
            raise RunnerError("pfprof is loaded but %s is missing: reload the module "
                              "(ansible-playbook playbooks/setup.yml)" % self.device)

    def registered(self) -> list[str]:
        text = read_text(self.pfprof_status_path(), "") or ""
        # one line per registered process, its pid first (a header line may precede them)
        return [line for line in text.splitlines() if line.split()[:1] and line.split()[0].isdigit()]

    def drop_caches(self) -> None:
        os.sync()
        path = self.p("sys", "vm", "drop_caches")
        try:
            with open(path, "w") as f:
                f.write("3\n")
        except OSError as e:
            raise RunnerError("cannot drop caches (%s: %s): the runner must run as root" % (path, e.strerror))

    def swap_io(self) -> int:
        v = self.vmstat()
        return v.get("pswpin", 0) + v.get("pswpout", 0)

    def module_params(self) -> dict:
        d = os.path.join(self.sys, "module", "pfprof", "parameters")
        out = {}
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return out
        for name in names:
            v = (read_text(os.path.join(d, name), "") or "").strip()
            out[name] = int(v) if v.isdigit() else v
        return out


def settle(machine: Machine, executables: list[str], timeout: float = 30.0, quiet_pages: int | None = None,
           window: float = 0.25) -> dict:
    """Let the machine calm down between runs; returns what was done, for run.json."""
    t0 = time.monotonic()
    info = {"leftover_killed": [], "swap_quiet": False}
    # 1. earlier processes gone (they exit on their own; killed after half the bound)
    deadline = t0 + timeout / 2
    while True:
        left = processes_of(executables)
        if not left:
            break
        if time.monotonic() > deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                    info["leftover_killed"].append(pid)
                except OSError:
                    pass
            kill_deadline = time.monotonic() + 10
            while processes_of(executables) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            log("killed leftover processes %s" % info["leftover_killed"])
            break
        time.sleep(0.2)
    # 2. clean page cache
    machine.drop_caches()
    # 3. swap traffic quiet over one window: at most 64 pages a second (a short
    # window: every run pays for it, and a sweep's overhead is mostly such waits)
    if quiet_pages is None:
        quiet_pages = max(4, round(64 * window))
    deadline = t0 + timeout
    last = machine.swap_io()
    delta = None
    while True:
        time.sleep(window)
        now = machine.swap_io()
        delta = now - last
        last = now
        if delta <= quiet_pages:
            info["swap_quiet"] = True
            break
        if time.monotonic() > deadline:
            log("swap still busy after %.0f s (%d pages in the last %.1f s); going on" % (timeout, delta, window))
            break
    info["swap_pages_last_window"] = delta
    info["settle_s"] = round(time.monotonic() - t0, 3)
    return info
