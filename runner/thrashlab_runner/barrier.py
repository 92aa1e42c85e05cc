"""The work processes' start barrier (work.c): a counter in a shared file
that they wait on with a futex; the benchmark's runner is the last to arrive."""
from __future__ import annotations

import os
import platform


def barrier_count(path: str) -> int:
    try:
        with open(path, "rb") as f:
            data = f.read(4)
    except OSError:
        return 0
    return int.from_bytes(data, "little") if len(data) == 4 else 0


# futex(2)'s number where the runner knows it (the workloads' waits time out
# after 100 ms anyway, so another architecture only starts a little later).
FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98, "riscv64": 98, "i686": 240}
FUTEX_WAKE = 1


def release_barrier(path: str, value: int) -> None:
    """Raise the barrier's counter to ``value`` and wake its waiters: every work
    process has arrived and sleeps on a futex at the counter (work.c)."""
    import ctypes
    import mmap
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 64)
    finally:
        os.close(fd)
    try:
        m[0:4] = value.to_bytes(4, "little")
        nr = FUTEX_SYSCALL.get(platform.machine())
        if nr is not None:
            word = ctypes.c_uint32.from_buffer(m)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall(ctypes.c_long(nr), ctypes.byref(word), ctypes.c_int(FUTEX_WAKE),
                         ctypes.c_int(2 ** 31 - 1), None, None, ctypes.c_int(0))
            del word  # no exported pointer may be left when the mapping closes
    finally:
        m.close()
