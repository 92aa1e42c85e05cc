"""What each machine of a run was, beyond its RAM, and which of it differs.

Every attribute is read back from the machine (its facts.json, written by the
guest runner from /proc, /sys and /etc), never copied from the lab file:

- ``kernel``: the kernel release; ``suite``: the Debian suite;
- ``swap_type``: ``file``, ``zram`` or ``zswap`` (a swap file with zswap on),
  null without swap; ``zswap_compressor`` where zswap is on;
- ``mglru``: ``on`` or ``off`` (``/sys/kernel/mm/lru_gen/enabled``), null
  where the kernel lacks it;
- ``cpus``: the CPUs online in the machine;
- ``sysctl``: the ``vm.*`` settings the lab file asked for (its manifest
  copy names which), each with the value read from the machine.

Runs collected before these facts existed give null (or, for ``cpus``, the
lab's value recorded in facts.json).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

ATTRIBUTES = ("kernel", "suite", "swap_type", "mglru", "cpus", "sysctl")
# Shown as text columns, when they differ between the run's machines.
HEADERS = {"kernel": "kernel", "suite": "suite", "swap_type": "swap_type", "mglru": "mglru",
           "cpus": "cpus", "sysctl": "sysctl"}


def _lab_entry(manifest: dict, name: str) -> dict:
    lab = manifest.get("lab") if isinstance(manifest.get("lab"), dict) else {}
    for m in lab.get("machines") or []:
        if isinstance(m, dict) and m.get("name") == name:
            return m
    return {}


def attributes(manifest: dict, name: str, facts: dict) -> dict[str, Any]:
    """The machine's attributes (module docstring), from its facts."""
    def text(key: str) -> Optional[str]:
        v = facts.get(key)
        return v if isinstance(v, str) and v else None

    cpus = facts.get("online_cpus", facts.get("cpus"))
    cpus = cpus if isinstance(cpus, int) and not isinstance(cpus, bool) else None
    asked = _lab_entry(manifest, name).get("sysctl")
    read = facts.get("vm_sysctl") if isinstance(facts.get("vm_sysctl"), dict) else {}
    sysctl = ({k: read.get(k) for k in sorted(asked)} if isinstance(asked, dict) else {})
    swap_type = text("swap_type")
    return {
        "kernel": text("kernel"),
        "suite": text("suite"),
        "swap_type": swap_type,
        "zswap_compressor": text("zswap_compressor") if swap_type == "zswap" else None,
        "mglru": text("mglru"),
        "cpus": cpus,
        "sysctl": sysctl,
    }


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k.removeprefix('vm.')}={v}" for k, v in sorted(value.items())) or "-"
    return "-" if value is None else str(value)


def differing(rows: Sequence[dict]) -> list[str]:
    """The attributes whose values are not the same on every row's machine."""
    if len(rows) < 2:
        return []
    return [a for a in ATTRIBUTES if len({describe(r.get(a)) for r in rows}) > 1]


def label(row: dict, differ: Sequence[str]) -> str:
    """A figure legend's name for a machine: its name, RAM and what differs."""
    parts = [f"{row['memory_mb']:g} MiB"] + [
        f"{a} {describe(row.get(a))}" for a in differ if a != "kernel" or "suite" not in differ]
    return f"{row['machine']} ({', '.join(parts)})"
