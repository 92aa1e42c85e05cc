"""How numbers, machines and paths are written in the report's cells and sentences."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from analysis.load import Machine

NOT_MEASURED = "not measured in this run"
PROFILER_NAMES = {"poller": "the poller"}


def f_ratio(v: Optional[float]) -> Optional[str]:
    return None if v is None else f"{v:.4f}"


def f_pct(v: Optional[float], digits: int = 2, sign: bool = False) -> Optional[str]:
    if v is None:
        return None
    return f"{v:+.{digits}f}%" if sign else f"{v:.{digits}f}%"


def f_over(ratio: Optional[float]) -> Optional[str]:
    """A ratio as the overhead it means: 1.0012 -> +0.12%."""
    return None if ratio is None else f_pct(100.0 * (ratio - 1), sign=True)


def f_s(v: Optional[float]) -> Optional[str]:
    return None if v is None else f"{v:.1f}"


def f_ci(row: dict) -> Optional[str]:
    if row["ci_low"] is None:
        return None
    return f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]"


def f_range(lo: Optional[float], hi: Optional[float]) -> Optional[str]:
    return None if lo is None else f"{lo:.4f}-{hi:.4f}"


def f_int(v) -> Optional[str]:
    return None if v is None else str(int(v))


def f_share(part: Optional[float], whole: Optional[float]) -> Optional[str]:
    """Seconds with their share of ``whole``: 16.0 (28%)."""
    if part is None:
        return None
    if not whole:
        return f_s(part)
    return f"{part:.1f} ({100.0 * part / whole:.0f}%)"


def f_mib(v) -> Optional[str]:
    return f"{v:g} MiB" if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def profiler_name(p: str) -> str:
    return PROFILER_NAMES.get(p, p)


def machine_label(m: Machine, accelerator: Optional[str]) -> str:
    acc = m.facts.get("accelerator") or accelerator
    parts = [f"{m.memory_mb:g} MiB"] + ([str(acc).upper()] if acc else [])
    return f"{m.name} ({', '.join(parts)})"


def display_path(p: Path) -> str:
    from thrashlab.lab import REPO_ROOT
    p = Path(os.path.abspath(p))
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)
