#!/usr/bin/env python3
"""Exit without unregistering: a registered multi-threaded process exits.

Runs as root inside the VM. The child registers itself, runs threads that
fault and exit (their counts move to the signal struct), faults some more
and exits without "U". The parent reaps it at once (--reap now: the module
reads the final counts of a process already gone) or, once it is a zombie
(state Z in /proc/<pid>/stat), leaves it so for a few ticks (--reap late:
the module must see the zombie's exit, write EXIT and drop it before the
reap). With --wait-file PATH the child, its work done, creates PATH.ready
and waits for PATH before it exits (the test opens the reader in between).
Prints one JSON line with the child's baseline (getrusage around the
registration), its final rusage from wait4() and the CLOCK_MONOTONIC time of
the reap; the test compares them with the monitor's records.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import sys
import threading
import time

STATUS = "/proc/pfprof/status"


def touch(pages: int) -> None:
    area = mmap.mmap(-1, pages * mmap.PAGESIZE)
    for i in range(pages):
        area[i * mmap.PAGESIZE] = 1
    area.close()


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def listed(pid: int) -> bool:
    with open(STATUS) as f:
        return pid in [int(line.split()[0]) for line in f.read().splitlines()[1:]]


def child(w: int, wait_file: str | None) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    fd = os.open(STATUS, os.O_WRONLY)
    data = b"R %d" % os.getpid()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    os.write(fd, data)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    os.write(w, json.dumps([r0.ru_minflt, r0.ru_majflt, r1.ru_minflt, r1.ru_majflt,
                            r0.ru_utime + r0.ru_stime]).encode())
    threads = [threading.Thread(target=touch, args=(512,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    touch(1024)
    x = 0
    for i in range(300000):  # some CPU time
        x += i
    if wait_file:
        open(wait_file + ".ready", "w").close()
        while not os.path.exists(wait_file):
            time.sleep(0.02)
    os._exit(0)  # no "U <pid>"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reap", choices=["now", "late"], default="now")
    ap.add_argument("--interval-ms", type=int, default=50)
    ap.add_argument("--wait-file")
    args = ap.parse_args()
    tick = args.interval_ms / 1000
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        child(w, args.wait_file)
    os.close(w)
    base = json.loads(os.read(r, 4096))
    zombie_ns = zombie_listed = None
    if args.reap == "late":
        deadline = time.monotonic() + 120
        while state(pid) != "Z":
            if time.monotonic() > deadline:
                raise SystemExit(f"child {pid} never became a zombie")
            time.sleep(0.01)
        zombie_ns = time.monotonic_ns()
        time.sleep(max(10 * tick, 0.5))  # a zombie for several ticks
        zombie_listed = listed(pid)
    reaped_ns = time.monotonic_ns()
    _, status, ru = os.wait4(pid, 0)
    time.sleep(3 * tick)
    listed_after = listed(pid)
    print(json.dumps({"pid": pid, "exit_status": status,
                      "minflt_before": base[0], "majflt_before": base[1],
                      "minflt_after": base[2], "majflt_after": base[3], "cpu_before_s": base[4],
                      "minflt": ru.ru_minflt, "majflt": ru.ru_majflt,
                      "cpu_s": ru.ru_utime + ru.ru_stime,
                      "zombie_ns": zombie_ns, "reaped_ns": reaped_ns,
                      "listed_as_zombie": zombie_listed, "listed_after": listed_after}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
