#!/usr/bin/env python3
"""Checks of /dev/pfprof, run as root inside the VM; one JSON line each.

    ringcheck.py unload --ko PATH   single reader; rmmod refused while mapped
    ringcheck.py bounds             mmap size, offset, private and exec mappings
    ringcheck.py reset              a reader's scribbles on the header are gone at the next open
    ringcheck.py full               a ring nobody reads: drops, never overwrites

Header offsets follow kmod/pfprof.h (x86-64 stores are not torn: a plain
8-byte store publishes data_tail).
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import time

DEVICE = "/dev/pfprof"
STATUS = "/proc/pfprof/status"
HEADER = struct.Struct("<IIIIQQII")  # magic version header_size record_size capacity mapping_size interval_ms hz
RECORD = struct.Struct("<QQIIQQQ")   # ts_ns jiffies pid flags minflt majflt cpu_ns
OFF_HEAD, OFF_TAIL, OFF_DROPPED = 64, 128, 192
MAGIC = 0x46525046


def header(m) -> dict:
    keys = ["magic", "version", "header_size", "record_size", "capacity", "mapping_size",
            "interval_ms", "hz"]
    return dict(zip(keys, HEADER.unpack_from(m, 0)))


def u64(m, off: int) -> int:
    return struct.unpack_from("<Q", m, off)[0]


def mapping_size() -> int:
    fd = os.open(DEVICE, os.O_RDWR)
    try:
        with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED) as m:
            return header(m)["mapping_size"]
    finally:
        os.close(fd)


def try_errno(fn) -> int:
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno


def sleepers(n: int) -> list[int]:
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            signal.pause()
            os._exit(0)
        pids.append(pid)
    return pids


def command(text: str) -> None:
    fd = os.open(STATUS, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def rmmod() -> int:
    return subprocess.run(["rmmod", "pfprof"], capture_output=True).returncode


def loaded() -> bool:
    return os.path.isdir("/sys/module/pfprof")


def check_unload(ko: str) -> dict:
    size = mapping_size()
    fd = os.open(DEVICE, os.O_RDWR)
    second = try_errno(lambda: os.close(os.open(DEVICE, os.O_RDWR)))
    m = mmap.mmap(fd, size, mmap.MAP_SHARED)
    os.close(fd)  # the mapping alone holds the device open
    refused_open = try_errno(lambda: os.close(os.open(DEVICE, os.O_RDWR)))
    rc_mapped = rmmod()
    still_loaded = loaded()
    magic_ok = header(m)["magic"] == MAGIC
    m.close()
    reopen = try_errno(lambda: os.close(os.open(DEVICE, os.O_RDWR)))
    rc_unmapped = rmmod()
    unloaded = not loaded()
    rc_insmod = subprocess.run(["insmod", ko], capture_output=True).returncode
    return {"second_open_errno": second, "open_while_mapped_errno": refused_open,
            "rmmod_while_mapped_rc": rc_mapped, "loaded_while_mapped": still_loaded,
            "magic_ok": magic_ok, "reopen_after_munmap_errno": reopen,
            "rmmod_after_munmap_rc": rc_unmapped, "unloaded": unloaded,
            "insmod_rc": rc_insmod}


def check_bounds() -> dict:
    size = mapping_size()
    fd = os.open(DEVICE, os.O_RDWR)
    out = {"mapping_size": size}
    try:
        out["too_large"] = try_errno(lambda: mmap.mmap(fd, size + mmap.PAGESIZE, mmap.MAP_SHARED))
        out["offset"] = try_errno(lambda: mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED,
                                                     offset=mmap.PAGESIZE))
        out["private"] = try_errno(lambda: mmap.mmap(fd, size, mmap.MAP_PRIVATE))
        out["exact"] = try_errno(lambda: mmap.mmap(fd, size, mmap.MAP_SHARED).close())
        out["header_only"] = try_errno(lambda: mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED).close())
        out["exec"] = try_errno(lambda: mmap.mmap(fd, size, mmap.MAP_SHARED,
                                                  mmap.PROT_READ | mmap.PROT_EXEC))
        out["mprotect_exec"] = mprotect_exec_errno(fd, size)
        with mmap.mmap(fd, size, mmap.MAP_SHARED) as m:
            h = header(m)
        out["header"] = h
        out["layout_ok"] = (h["magic"] == MAGIC and h["version"] == 1 and h["record_size"] == 48
                            and h["header_size"] == mmap.PAGESIZE
                            and h["capacity"] == (size - mmap.PAGESIZE) // 48)
    finally:
        os.close(fd)
    return out


def mprotect_exec_errno(fd: int, size: int) -> int:
    """errno of mprotect(PROT_READ|PROT_EXEC) on a read-write mapping of the ring."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    m = mmap.mmap(fd, size, mmap.MAP_SHARED)
    buf = ctypes.c_char.from_buffer(m)
    try:
        rc = libc.mprotect(ctypes.addressof(buf), size, mmap.PROT_READ | mmap.PROT_EXEC)
        return 0 if rc == 0 else ctypes.get_errno()
    finally:
        del buf
        m.close()


def check_reset() -> dict:
    """Scribble over the whole header page as a buggy reader could, close,
    reopen: the header must be the kernel's again, every reserved byte 0."""
    size = mapping_size()
    fd = os.open(DEVICE, os.O_RDWR)
    with mmap.mmap(fd, size, mmap.MAP_SHARED) as m:
        clean = header(m)
        m[0:mmap.PAGESIZE] = b"\xa5" * mmap.PAGESIZE
    os.close(fd)
    fd = os.open(DEVICE, os.O_RDWR)
    try:
        with mmap.mmap(fd, size, mmap.MAP_SHARED) as m:
            again = header(m)
            page = bytes(m[0:mmap.PAGESIZE])
    finally:
        os.close(fd)
    # Everything after hz (offset 40) is 0 at open: head, tail, watermark, dropped, reserved.
    return {"header_restored": again == clean, "rest_zero": page[HEADER.size:] == bytes(mmap.PAGESIZE - HEADER.size),
            "header": again}


def check_full() -> dict:
    """Needs a small ring and a short interval (the test loads the module so)."""
    size = mapping_size()
    fd = os.open(DEVICE, os.O_RDWR)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED)
    h = header(m)
    cap = h["capacity"]
    kids = sleepers(8)
    try:
        for pid in kids:
            command(f"R {pid}")
        deadline = time.monotonic() + 60
        while u64(m, OFF_DROPPED) < 3 * len(kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        head, tail, dropped = u64(m, OFF_HEAD), u64(m, OFF_TAIL), u64(m, OFF_DROPPED)
        recs = [RECORD.unpack_from(m, h["header_size"] + i * 48) for i in range(cap)]
        ts = [r[0] for r in recs]
        # Each process's first record, and only that one, has the FIRST flag.
        firsts = {pid: [r[3] & 2 for r in recs if r[2] == pid] for pid in kids}
        first_ok = all(f and f[0] == 2 and not any(f[1:]) for f in firsts.values())
        # Consume everything: the kernel writes again, after the old records.
        struct.pack_into("<Q", m, OFF_TAIL, head)
        deadline = time.monotonic() + 30
        while u64(m, OFF_HEAD) < head + len(kids) and time.monotonic() < deadline:
            time.sleep(0.01)
        head2 = u64(m, OFF_HEAD)
        resumed_pids = sorted({RECORD.unpack_from(m, h["header_size"] + (i % cap) * 48)[2]
                               for i in range(head, head2)})
        # A bogus tail (ahead of head) must not make the kernel overwrite: it drops.
        struct.pack_into("<Q", m, OFF_TAIL, head2 + 10 * cap)
        d0, h0 = u64(m, OFF_DROPPED), u64(m, OFF_HEAD)
        time.sleep(0.2)
        bogus = {"head_moved": u64(m, OFF_HEAD) - h0, "dropped_more": u64(m, OFF_DROPPED) - d0}
    finally:
        for pid in kids:
            try:
                command(f"U {pid}")
            except OSError:
                pass
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        m.close()
        os.close(fd)
    return {"capacity": cap, "head": head, "tail": tail, "dropped": dropped,
            "ts_sorted": ts == sorted(ts), "first_flag_ok": first_ok,
            "head_after_consume": head2, "resumed_pids_ok": resumed_pids == sorted(kids),
            "bogus_tail": bogus}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("check", choices=["unload", "bounds", "full", "reset"])
    ap.add_argument("--ko")
    args = ap.parse_args()
    if args.check == "unload":
        out = check_unload(args.ko)
    elif args.check == "bounds":
        out = check_bounds()
    elif args.check == "reset":
        out = check_reset()
    else:
        out = check_full()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
