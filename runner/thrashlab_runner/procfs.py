"""Parsers of the kernel's text files (/proc/meminfo, /proc/vmstat,
/proc/pressure/memory, /proc/pfprof/stats): pure, text in, dict out."""
from __future__ import annotations

PSI_HEADER = "t_s,some_avg10,full_avg10,some_total_us,full_total_us"


def parse_meminfo(text: str) -> dict:
    """``/proc/meminfo`` -> {key: value in kB (or a plain count)}."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key.strip()] = int(fields[0])
    return out


def parse_vmstat(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("-").isdigit():
            out[fields[0]] = int(fields[1])
    return out


def parse_psi(text: str) -> dict:
    """``/proc/pressure/memory`` -> {"some": {"avg10": f, "avg60": f, "avg300": f, "total": int}, "full": {...}}."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] not in ("some", "full"):
            continue
        entry = {}
        for kv in fields[1:]:
            k, _, v = kv.partition("=")
            try:
                entry[k] = int(v) if k == "total" else float(v)
            except ValueError:
                continue
        out[fields[0]] = entry
    return out


def psi_row(t_s: float, psi: dict) -> str:
    some, full = psi.get("some", {}), psi.get("full", {})

    def f(d, k, fmt):
        return fmt % d[k] if k in d else ""
    return ",".join([
        "%.3f" % t_s, f(some, "avg10", "%.2f"), f(full, "avg10", "%.2f"),
        f(some, "total", "%d"), f(full, "total", "%d")])


def vmstat_delta(before: dict, after: dict, key: str) -> int | None:
    if key in before and key in after:
        return after[key] - before[key]
    return None


def parse_stats(text: str) -> dict:
    """/proc/pfprof/stats: "key value" lines, as /proc/vmstat's."""
    return parse_vmstat(text)
