"""The host these tools run on: one answer for every part that asks (the lab
check before booting, the vCPU placement, the collector's manifest, the
benchmark's testbed.json)."""
from __future__ import annotations

import os
import platform
import socket


def cores() -> list[int]:
    """The cores this process may run on (a container or taskset may give fewer than os.cpu_count())."""
    return sorted(os.sched_getaffinity(0))


def load_averages() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe() -> dict:
    return {"hostname": socket.gethostname(), "kernel": platform.release(), "cores": len(cores()),
            "loadavg": load_averages()}
