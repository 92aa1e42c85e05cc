"""facts.json: what the machine is, read from it (never from the lab file)."""
from __future__ import annotations

import os
import platform
import re
import socket

from .common import RUNNER_VERSION, utc_now
from .files import read_text
from .machine import Machine


def read_facts(machine: Machine, args) -> dict:
    mem = machine.meminfo()
    uname = platform.uname()
    facts = {
        "machine": args.machine,
        "kernel": uname.release,
        "memory_mb": args.memory_mb,
        "mem_total_kb": mem.get("MemTotal"),
        "mem_available_kb": mem.get("MemAvailable"),
        "mem_free_kb": mem.get("MemFree"),
        "swap_total_kb": mem.get("SwapTotal"),
        "swap_free_kb": mem.get("SwapFree"),
        "swap_mb": args.swap_mb,
        "cpus": args.cpus if args.cpus is not None else os.cpu_count(),
        "online_cpus": os.cpu_count(),
        "accelerator": args.accelerator,
        "hostname": socket.gethostname(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "arch": uname.machine,
        "kernel_version": uname.version,
        "python": platform.python_version(),
        "read_at": utc_now(),
        "pfprof_params": machine.module_params(),
        "runner_version": RUNNER_VERSION,
    }
    for key, rel in (("swappiness", ("sys", "vm", "swappiness")),
                     ("min_free_kbytes", ("sys", "vm", "min_free_kbytes")),
                     ("overcommit_memory", ("sys", "vm", "overcommit_memory"))):
        v = (read_text(machine.p(*rel), "") or "").strip()
        if v.lstrip("-").isdigit():
            facts[key] = int(v)
    thp = read_text(os.path.join(machine.sys, "kernel", "mm", "transparent_hugepage", "enabled"))
    if thp:
        m = re.search(r"\[(\w+)\]", thp)
        facts["transparent_hugepage"] = m.group(1) if m else thp.strip()
    if args.backend:
        facts["backend"] = args.backend
    facts.update(read_memory_setup(machine))
    return facts


def read_memory_setup(machine: Machine, etc: str = "/etc") -> dict:
    """What the machine's memory set-up is, read from it (never from the lab
    file): Debian suite, swap areas, zswap, MGLRU and every vm.* sysctl."""
    swaps = []
    for line in (read_text(machine.p("swaps"), "") or "").splitlines()[1:]:
        f = line.split()
        if len(f) >= 5 and f[2].isdigit():
            swaps.append({"name": f[0].replace("\\040", " "), "type": f[1], "size_kb": int(f[2]),
                          "priority": int(f[4]) if f[4].lstrip("-").isdigit() else None})
    zswap = (read_text(os.path.join(machine.sys, "module", "zswap", "parameters", "enabled")) or "").strip()
    compressor = (read_text(os.path.join(machine.sys, "module", "zswap", "parameters", "compressor")) or "").strip()
    lru_gen = (read_text(os.path.join(machine.sys, "kernel", "mm", "lru_gen", "enabled")) or "").strip()
    if any(a["name"].startswith("/dev/zram") for a in swaps):
        swap_type = "zram"
    elif not swaps:
        swap_type = None
    else:
        swap_type = "zswap" if zswap == "Y" else "file"
    try:
        mglru = ("on" if int(lru_gen, 16) else "off") if lru_gen else None
    except ValueError:
        mglru = None
    vm = {}
    vm_dir = machine.p("sys", "vm")
    for name in sorted(os.listdir(vm_dir)) if os.path.isdir(vm_dir) else []:
        value = read_text(os.path.join(vm_dir, name))
        if value is not None and "\n" not in value.strip():
            vm["vm." + name] = " ".join(value.split())
    debian_version = (read_text(os.path.join(etc, "debian_version")) or "").strip()
    suite = "sid" if debian_version.endswith("/sid") else None
    for line in (read_text(os.path.join(etc, "os-release")) or "").splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and suite is None:
            suite = value.strip().strip('"') or None
    return {"suite": suite, "debian_version": debian_version or None, "swaps": swaps,
            "swap_type": swap_type, "zswap_enabled": zswap or None, "zswap_compressor": compressor or None,
            "lru_gen": lru_gen or None, "mglru": mglru, "vm_sysctl": vm}
