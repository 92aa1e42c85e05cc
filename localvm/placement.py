"""Which host core runs which vCPU.

When the lab's vCPUs fit the host's cores, each vCPU thread of every VM is
pinned to a core of its own, so that no two vCPUs of the lab ever wait for
the same core (the host's scheduler would otherwise move them about, and a
vCPU descheduled for a few milliseconds is a late tick in the guest). When
they do not fit, nothing is pinned and the reason is recorded. QEMU's other
threads (main loop, I/O) are left to the host's scheduler.

Set THRASHLAB_PIN_VCPUS=0 to never pin (e.g. to compare).
"""
from __future__ import annotations

import os
from pathlib import Path

from thrashlab import host

from .qmp import QMPError, vcpu_threads

PIN_ENV = "THRASHLAB_PIN_VCPUS"


def host_cores() -> list[int]:
    return host.cores()


def plan(vcpus: dict[str, int], cores: list[int]) -> tuple[dict[str, list[int]] | None, str]:
    """A core for each vCPU of each machine, in the lab's order, or None and why not."""
    if os.environ.get(PIN_ENV, "1").strip() in ("0", "no", "false", "off"):
        return None, f"not pinned: {PIN_ENV}={os.environ[PIN_ENV]}"
    total = sum(vcpus.values())
    if total > len(cores):
        return None, (f"not pinned: the lab's {total} vCPUs outnumber the host's {len(cores)} cores "
                      f"(the VMs share cores)")
    free = iter(cores)
    assignment = {name: [next(free) for _ in range(n)] for name, n in vcpus.items()}
    return assignment, f"pinned: each of the lab's {total} vCPUs on a core of its own ({len(cores)} cores)"


def pin(qmp_sock: Path, cores: list[int]) -> list[dict]:
    """Pin the VM's vCPU threads (by index) to ``cores``; what was done, read back from the host."""
    threads = vcpu_threads(qmp_sock)
    if len(threads) != len(cores):
        raise QMPError(f"{qmp_sock}: {len(threads)} vCPU threads, {len(cores)} cores planned")
    placed = []
    for index, (tid, core) in enumerate(zip(threads, cores)):
        os.sched_setaffinity(tid, {core})
        placed.append({"vcpu": index, "thread": tid, "cores": sorted(os.sched_getaffinity(tid))})
    return placed
