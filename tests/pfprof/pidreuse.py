#!/usr/bin/env python3
"""PID reuse: a registered process exits and a new process gets its number.

Runs as root inside the VM (writes /proc/sys/kernel/ns_last_pid). The
reuse is forced, not hoped for: right after a tick (seen as the "ticks"
counter of the stats file moving), the old process is killed and reaped and
ns_last_pid makes the next fork get its number (bounded attempts; exit 1 if
never). With a long interval_ms the new process exists and has faulted
*before* the tick that notices the exit, while the old registration is still
listed (the ticks counter tells whether that held): its numbers must stay
the old process's, and the new process must never be sampled under it.
Prints one JSON line; the test reads the monitor's records as well.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

STATUS = "/proc/pfprof/status"
NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"
TOUCH_PAGES = 8192


def status() -> dict[int, tuple[int, int, int]]:
    with open(STATUS) as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    return {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def command(text: str) -> int:
    fd = os.open(STATUS, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def ticks() -> int:
    with open("/proc/pfprof/stats") as f:
        return int(next(line.split()[1] for line in f if line.startswith("ticks ")))


def next_tick(deadline_s: float) -> int:
    """Wait until the ticks counter moves; its new value."""
    t0 = ticks()
    deadline = time.monotonic() + deadline_s
    while (t := ticks()) == t0:
        if time.monotonic() > deadline:
            raise SystemExit("pfprof does not tick")
        time.sleep(0.002)
    return t


def quiet() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)


def sleeper() -> int:
    pid = os.fork()
    if pid == 0:
        quiet()
        signal.pause()
        os._exit(0)
    return pid


def toucher(ready_w: int) -> None:
    """The new process: fault on TOUCH_PAGES pages, say so, wait."""
    import mmap
    quiet()
    area = mmap.mmap(-1, TOUCH_PAGES * mmap.PAGESIZE)
    chunk = b"\1" * (256 * mmap.PAGESIZE)  # every page, in a few C loops: fast under TCG
    for _ in range(TOUCH_PAGES // 256):
        area.write(chunk)
    os.write(ready_w, b"x")
    signal.pause()
    os._exit(0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval-ms", type=int, required=True)
    args = ap.parse_args()
    tick = args.interval_ms / 1000

    old = sleeper()
    assert command(f"R {old}") == 0
    next_tick(10 * tick + 30)
    tick_seen = next_tick(10 * tick + 30)  # two records of the old process; a whole period ahead
    os.kill(old, signal.SIGKILL)
    os.waitpid(old, 0)
    t_exit = time.monotonic()

    ready_r, ready_w = os.pipe()
    new = None
    for attempt in range(500):
        with open(NS_LAST_PID, "w") as f:
            f.write(str(old - 1))
        pid = os.fork()
        if pid == 0:
            if os.getpid() == old:
                toucher(ready_w)
            os._exit(0)
        if pid == old:
            new = pid
            break
        os.waitpid(pid, 0)
    if new is None:
        print(json.dumps({"reused": False, "attempts": attempt + 1}))
        return 1
    os.read(ready_r, 1)  # the new process has touched its pages
    reuse_s = time.monotonic() - t_exit
    before_tick = status().get(old)  # the old registration, not yet removed
    ticks_between = ticks() - tick_seen  # 0: no tick between the exit and the look above

    next_tick(10 * tick + 30)  # notices the exit: EXIT record, removed
    after_tick = status().get(old)
    reregister = command(f"R {new}")  # the new process is not registered: works
    time.sleep(0.1)
    listed_new = status().get(new)
    unregister = command(f"U {new}")
    os.kill(new, signal.SIGKILL)
    os.waitpid(new, 0)
    print(json.dumps({"reused": True, "pid": old, "attempts": attempt + 1, "reuse_s": reuse_s,
                      "touched_pages": TOUCH_PAGES, "before_tick": before_tick,
                      "ticks_between": ticks_between,
                      "after_tick": after_tick, "reregister_errno": reregister,
                      "listed_new": listed_new, "unregister_errno": unregister}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
