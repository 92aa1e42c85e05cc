#!/usr/bin/env python3
"""Registrations whose records are dropped: do they still sum to getrusage?

Runs as root inside the VM, while a reader stalls on a small ring (the test
stops the monitor). Forks --procs children; each registers itself (its
getrusage read just before and just after the "R"), faults on fresh pages and
burns CPU for --seconds, then ends: even children exit without "U" (their
final counts come from the parent's wait4), odd ones write "U <pid>" first
(getrusage read around it) and then exit. Prints one JSON line once every
child is reaped: per child, the bounds the sum of its records must lie in.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import sys
import time

STATUS = "/proc/pfprof/status"


def usage() -> list:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return [r.ru_minflt, r.ru_majflt, r.ru_utime + r.ru_stime]


def command(fd: int, text: str) -> None:
    os.write(fd, text.encode())


def child(w: int, seconds: float, unregister: bool) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    fd = os.open(STATUS, os.O_WRONLY)
    me = os.getpid()
    before = usage()
    command(fd, f"R {me}")
    after = usage()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        area = mmap.mmap(-1, 64 * mmap.PAGESIZE)
        for i in range(64):
            area[i * mmap.PAGESIZE] = 1
        area.close()
    report = {"pid": me, "before_r": before, "after_r": after, "unregistered": unregister}
    if unregister:
        report["before_u"] = usage()
        command(fd, f"U {me}")
        report["after_u"] = usage()
    os.write(w, (json.dumps(report) + "\n").encode())
    os._exit(0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    r, w = os.pipe()
    pids = []
    for i in range(args.procs):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            child(w, args.seconds, unregister=bool(i % 2))
        pids.append(pid)
    os.close(w)
    finals = {}
    for pid in pids:
        _, status, ru = os.wait4(pid, 0)
        finals[pid] = {"exit_status": status,
                       "final": [ru.ru_minflt, ru.ru_majflt, ru.ru_utime + ru.ru_stime]}
    with os.fdopen(r) as f:
        reports = [json.loads(line) for line in f.read().splitlines()]
    for rep in reports:
        rep.update(finals[rep["pid"]])
    print(json.dumps({"children": reports, "reaped_ns": time.monotonic_ns()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
