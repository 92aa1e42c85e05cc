#!/usr/bin/env python3
"""Throw generated writes at /proc/pfprof/status and check every errno.

Runs inside the VM, as root or as an unprivileged user. Each write is
predicted by a model of the module's grammar and rules:

    [blanks] ('R'|'U') [ \\t]+ digits [blanks]   at most 32 bytes, no NUL,
    blanks: space, tab, newline; 1 <= pid <= INT_MAX

EINVAL malformed, ESRCH no such process (or a thread id, or a zombie for R),
EPERM another user's process (unprivileged callers), EEXIST already
registered, ENOENT not registered, EFAULT bad buffer. Every few hundred writes
the registered list is compared with the model: bad writes change nothing.

Prints one JSON line (counts per errno); exit status 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import random
import signal
import sys
import threading
import time

STATUS = "/proc/pfprof/status"
INT_MAX = 2**31 - 1
BLANKS = b" \t\n"


def model_parse(data: bytes):
    """(cmd, pid) or None for EINVAL, exactly like pfprof_parse()."""
    if not 0 < len(data) <= 32 or b"\0" in data:
        return None
    s = data.strip(BLANKS)
    if not s or s[:1] not in (b"R", b"U"):
        return None
    cmd, rest = s[:1], s[1:]
    if rest[:1] not in (b" ", b"\t"):
        return None
    digits = rest.lstrip(b" \t")
    if not digits or any(c < 0x30 or c > 0x39 for c in digits):
        return None
    pid = int(digits)
    if pid <= 0 or pid > INT_MAX:
        return None
    return cmd.decode(), pid


def registered_pids() -> set[int]:
    with open(STATUS) as f:
        lines = f.read().splitlines()
    assert lines[0].split() == ["pid", "minflt", "majflt", "cpu_ns"], lines[0]
    return {int(line.split()[0]) for line in lines[1:]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--foreign", type=int, action="append", default=[],
                    help="pid of another user's process (EPERM unless root)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = os.geteuid() == 0
    pid_max = int(open("/proc/sys/kernel/pid_max").read())

    # Targets: our own sleeping children, a zombie, a thread id, other users'.
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            quiet_child()
            signal.pause()
            os._exit(0)
        children.append(pid)
    zombie = os.fork()
    if zombie == 0:
        os._exit(0)
    try:
        return run(args, rng, root, pid_max, children, zombie)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.waitpid(zombie, 0)


def quiet_child() -> None:
    """A child must not hold the caller's stdout (an ssh session waits for it)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)


def run(args, rng, root, pid_max, children, zombie) -> int:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    tid = thread.native_id
    time.sleep(0.2)  # the zombie is a zombie now

    own = children + [os.getpid()]
    foreign = [1] + args.foreign
    baseline = registered_pids()
    if baseline & set(own + foreign):
        print(json.dumps({"error": f"targets already registered: {sorted(baseline)}"}))
        return 1

    registered: set[int] = set()

    def predict(data: bytes) -> int:
        """Expected errno (0: success) and update of the model."""
        parsed = model_parse(data)
        if parsed is None:
            return errno.EINVAL
        cmd, pid = parsed
        if pid == tid or pid >= pid_max:
            return errno.ESRCH
        if pid == zombie:  # our own child: U passes the permission check
            return errno.ESRCH if cmd == "R" else errno.ENOENT
        if pid in foreign and not root:
            return errno.EPERM
        if pid in own or pid in foreign:  # root may register anyone
            if cmd == "R":
                if pid in registered:
                    return errno.EEXIST
                registered.add(pid)
                return 0
            if pid not in registered:
                return errno.ENOENT
            registered.discard(pid)
            return 0
        return other_pid(cmd, pid)

    def other_pid(cmd: str, pid: int):
        """A pid we did not plan (e.g. a prefix of a partial command), from /proc."""
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except FileNotFoundError:
            return errno.ESRCH
        if int(fields["Tgid"]) != pid:
            return errno.ESRCH
        uids = [int(u) for u in fields["Uid"].split()]  # real effective saved fs
        mine = os.getuid() in (uids[0], uids[2]) or os.geteuid() in (uids[0], uids[2])
        if fields["State"].split()[0] in ("Z", "X"):
            return errno.ESRCH if cmd == "R" else (errno.ENOENT if mine or root else errno.EPERM)
        if not (mine or root):
            return errno.EPERM
        return None  # would really register a stranger: not sent

    def rand_pid() -> bytes:
        kind = rng.randrange(12)
        if kind < 4:
            return str(rng.choice(own)).encode()
        if kind == 4:
            return str(rng.choice(foreign)).encode()
        if kind == 5:
            return str(tid).encode()
        if kind == 6:
            return str(zombie).encode()
        if kind == 7:
            return str(rng.randrange(pid_max, INT_MAX + 1)).encode()
        if kind == 8:
            return rng.choice([b"0", b"00", b"-1", b"-" + str(rng.choice(own)).encode(),
                               b"+" + str(rng.choice(own)).encode(), str(INT_MAX + 1).encode(),
                               str(2**32 + own[0]).encode(), b"99999999999999999999",
                               b"0x10", b"1e3", b"12a", b"", b"\xff"])
        if kind == 9:
            return b"0" * rng.randrange(1, 8) + str(rng.choice(own)).encode()  # leading zeros
        if kind == 10:
            return str(rng.choice(own)).encode() + rng.choice([b" 1", b"x", b"\t\t5", b"\n1"])
        return str(rng.choice(own)).encode()

    def blank(maxn=3) -> bytes:
        return bytes(rng.choice(b" \t\n") for _ in range(rng.randrange(maxn + 1)))

    def generate() -> bytes:
        kind = rng.randrange(10)
        if kind < 4:  # well formed, with blanks around
            cmd = rng.choice([b"R", b"U"])
            sep = bytes(rng.choice(b" \t") for _ in range(rng.randrange(1, 3)))
            return blank() + cmd + sep + rand_pid() + blank()
        if kind == 4:  # wrong command letters and separators
            return (rng.choice([b"r", b"u", b"X", b"RR", b"R", b"U", b"", b"RU", b"\x00R"]) +
                    rng.choice([b" ", b"", b"\n", b"\v", b"\r", b"  ", b"\x00"]) + rand_pid() + blank())
        if kind == 5:  # overlong
            cmd = rng.choice([b"R ", b"U "])
            return cmd + b" " * rng.randrange(30, 60) + str(rng.choice(own)).encode()
        if kind == 6:  # binary
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        if kind == 7:  # partial commands
            full = rng.choice([b"R ", b"U "]) + str(rng.choice(own)).encode() + b"\n"
            return full[: rng.randrange(1, len(full))]
        if kind == 8:  # embedded NUL
            full = bytearray(rng.choice([b"R ", b"U "]) + str(rng.choice(own)).encode())
            full.insert(rng.randrange(len(full) + 1), 0)
            return bytes(full)
        # exactly 32 and 33 bytes of a valid command padded with blanks
        body = rng.choice([b"R ", b"U "]) + str(rng.choice(own)).encode()
        return body + b" " * (rng.choice([32, 33]) - len(body))

    counts: dict[str, int] = {}
    mismatches = []
    fd = os.open(STATUS, os.O_WRONLY)
    done = 0
    while done < args.count:
        data = generate()
        if not data:
            continue
        want = predict(data)
        if want is None:
            continue
        try:
            n = os.write(fd, data)
            got = 0 if n == len(data) else -2
        except OSError as e:
            got = e.errno
        name = errno.errorcode.get(got, "OK" if got == 0 else str(got))
        counts[name] = counts.get(name, 0) + 1
        if got != want:
            mismatches.append({"data": data.hex(), "want": errno.errorcode.get(want, want),
                               "got": name})
            # resynchronise the model with the module
            registered.clear()
            registered.update(registered_pids() - baseline)
        done += 1
        if done % 250 == 0:
            listed = registered_pids() - baseline
            if listed != registered:
                mismatches.append({"after": done, "listed": sorted(listed),
                                   "model": sorted(registered)})
                registered.clear()
                registered.update(listed)

    # Bad buffers: EFAULT, nothing registered.
    libc = ctypes.CDLL(None, use_errno=True)
    area = mmap.mmap(-1, 2 * mmap.PAGESIZE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(area))
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    libc.mprotect(base + mmap.PAGESIZE, mmap.PAGESIZE, 0)
    cmd = b"R %d" % children[0]
    for i in range(50):
        split = rng.randrange(1, len(cmd))  # the command runs into the PROT_NONE page
        area[mmap.PAGESIZE - split: mmap.PAGESIZE] = cmd[:split]
        for addr in (base + mmap.PAGESIZE - split, 0):
            ret = libc.write(fd, addr, len(cmd))
            err = ctypes.get_errno()
            got = "OK" if ret >= 0 else errno.errorcode.get(err, str(err))
            counts[got] = counts.get(got, 0) + 1
            done += 1
            if got != "EFAULT":
                mismatches.append({"efault_case": i, "got": got})
    listed = registered_pids() - baseline
    if listed != registered:
        mismatches.append({"after": "efault", "listed": sorted(listed), "model": sorted(registered)})

    # Clean up: unregister what is left, end the children, reap the zombie.
    for pid in sorted(registered):
        os.write(fd, b"U %d" % pid)
    os.close(fd)
    stop.set()
    thread.join()
    final = registered_pids()
    if final != baseline:
        mismatches.append({"final": sorted(final), "baseline": sorted(baseline)})

    print(json.dumps({"writes": done, "root": root, "counts": counts,
                      "mismatches": mismatches[:20], "mismatch_count": len(mismatches)}))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
