"""Small readers of the benchmark's files: ISO times, copies of /proc/pfprof/stats, the monitor's log."""
from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Optional, Sequence

from analysis.errors import AnalysisError
from analysis.load import read_text

_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
_DROPPED = re.compile(r"\bdropped (\d+)")
_INT = re.compile(r"^[+-]?\d+$")


def iso_seconds(value, path: Path, key: str) -> float:
    """An ISO 8601 time (``2026-11-25T23:40:00.12Z``; no zone: UTC) as POSIX seconds."""
    m = _ISO.match(value.strip()) if isinstance(value, str) else None
    bad = AnalysisError(path, None, f"key '{key}': expected an ISO time like 2026-11-25T23:40:00Z, "
                                    f"found {json.dumps(value)}")
    if not m:
        raise bad
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    offset = 0
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    try:
        t = datetime.datetime(y, mo, d, h, mi, s, tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        raise bad from None
    return t + (float(frac) if frac else 0.0) - offset


def optional_time(obj: dict, key: str, path: Path) -> Optional[float]:
    return None if obj.get(key) is None else iso_seconds(obj[key], path, key)


def read_stats(path: Path) -> dict[str, int]:
    """A copy of /proc/pfprof/stats: ``key value`` lines; the integer values."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise AnalysisError(path, lineno, f"expected 'key value', found {line.strip()!r}")
        if _INT.match(parts[1]):
            out[parts[0]] = int(parts[1])
    return out


def stats_dict(obj: dict, key: str, path: Path) -> Optional[dict[str, int]]:
    """A parsed stats object inside a JSON file (its integer values), None when absent."""
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise AnalysisError(path, None, f"key '{key}': expected an object of counters")
    return {k: x for k, x in v.items() if isinstance(x, int) and not isinstance(x, bool)}


def stats_delta(before: Optional[dict], after: Optional[dict], key: str) -> Optional[int]:
    if before is None or after is None or key not in before or key not in after:
        return None
    return after[key] - before[key]


def monitor_dropped(monitor) -> Optional[int]:
    """The monitor's count of dropped records: the last "dropped X" of its log tail."""
    tail = monitor.get("log_tail") if isinstance(monitor, dict) else None
    found = _DROPPED.findall(tail) if isinstance(tail, str) else []
    return int(found[-1]) if found else None


def sum_known(values: Sequence[Optional[float]]):
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def in_element(path: Path, what: str, e: AnalysisError) -> AnalysisError:
    """Re-raise a key error of one element of a list with the element named."""
    return AnalysisError(path, e.line, f"{what}: {e.what}")
