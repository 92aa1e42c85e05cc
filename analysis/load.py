"""Reading a run directory (docs/results-format.md) strictly, with errors that name the file.

Every reader here raises :class:`~analysis.errors.AnalysisError` with the
file and, for CSV and JSON, the line; the callers decide whether that stops
the analysis or only drops one repeat (see the package docstring).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from analysis.errors import AnalysisError, Diagnostics

PAGE_SIZE = 4096
MIB = 1024 * 1024
# One colour per machine, assigned in the lab's order (matplotlib's tab10).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

_INT_RE = re.compile(r"^[+-]?\d+$")


# --------------------------------------------------------------------------- files

def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnalysisError(path, None, "no such file") from None
    except IsADirectoryError:
        raise AnalysisError(path, None, "is a directory, expected a file") from None
    except OSError as e:
        raise AnalysisError(path, None, f"cannot read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise AnalysisError(path, line, "not UTF-8 text") from None


def read_json(path: Path) -> dict:
    """One JSON object; errors carry the line of the syntax error."""
    text = read_text(path)
    if not text.strip():
        raise AnalysisError(path, 1, "empty file")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnalysisError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise AnalysisError(path, 1, "invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise AnalysisError(path, 1, f"expected a JSON object, found {type(obj).__name__}")
    return obj


def number(obj: dict, key: str, path: Path, *, required: bool = True,
           minimum: Optional[float] = None, integer: bool = False) -> Optional[float]:
    """A finite number under ``key`` of a JSON object (bools are not numbers)."""
    if key not in obj or obj[key] is None:
        if required:
            raise AnalysisError(path, None, f"missing key '{key}'")
        return None
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise AnalysisError(path, None, f"key '{key}': expected a number, found {json.dumps(v)}")
    if integer and not float(v).is_integer():
        raise AnalysisError(path, None, f"key '{key}': expected an integer, found {json.dumps(v)}")
    if minimum is not None and v < minimum:
        raise AnalysisError(path, None, f"key '{key}': {v} is below {minimum:g}")
    return int(v) if integer else v


def read_csv(path: Path, columns: dict[str, type], nonnegative: tuple = ()) -> dict[str, list]:
    """A CSV file with a header row; ``columns`` maps the needed names to int or float,
    ``nonnegative`` names columns that must not be negative.

    Returns one list per needed column.  Errors name the line: a missing
    column (line 1), a row with the wrong number of fields (a truncated last
    line says so), a value that is not a number.
    """
    text = read_text(path)
    if not text.strip():
        raise AnalysisError(path, 1, "empty file (no header row)")
    ends_with_newline = text.endswith("\n")
    lines = text.split("\n")
    if ends_with_newline:
        lines.pop()
    header = [h.strip() for h in lines[0].rstrip("\r").split(",")]
    missing = [c for c in columns if c not in header]
    if missing:
        raise AnalysisError(path, 1, f"missing column(s) {', '.join(missing)} "
                                     f"(header: {','.join(header)})")
    index = {c: header.index(c) for c in columns}
    out: dict[str, list] = {c: [] for c in columns}
    last = len(lines)
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        fields = line.split(",") if line else []
        if len(fields) != len(header):
            hint = ""
            if lineno == last and not ends_with_newline:
                hint = " (file truncated?)"
            raise AnalysisError(path, lineno, f"expected {len(header)} fields, found {len(fields)}{hint}")
        for c, typ in columns.items():
            raw = fields[index[c]].strip()
            v = _parse_field(path, lineno, c, raw, typ)
            if c in nonnegative and v < 0:
                raise AnalysisError(path, lineno, f"column '{c}': negative value {raw}")
            out[c].append(v)
    return out


def _parse_field(path: Path, lineno: int, column: str, raw: str, typ: type):
    if typ is int:
        if not _INT_RE.match(raw):
            raise AnalysisError(path, lineno, f"column '{column}': not an integer: {raw!r}")
        return int(raw)
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise AnalysisError(path, lineno, f"column '{column}': not a number: {raw!r}")
    return v


def read_psi(path: Path) -> dict[str, int]:
    """A copy of /proc/pressure/memory: ``{"some": total_us, "full": total_us}``."""
    text = read_text(path)
    totals: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        kind = parts[0]
        if kind not in ("some", "full"):
            raise AnalysisError(path, lineno, f"expected a 'some' or 'full' line, found {line.strip()!r}")
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        raw = fields.get("total")
        if raw is None or not raw.isdigit():
            raise AnalysisError(path, lineno, f"no total=<microseconds> on the '{kind}' line")
        totals[kind] = int(raw)
    if "some" not in totals:
        raise AnalysisError(path, None, "no 'some' line")
    return totals


# --------------------------------------------------------------------------- the run

@dataclass
class Machine:
    name: str
    dir: Path
    facts: dict
    memory_mb: float
    colour: str
    parameters: dict = field(default_factory=dict)

    @property
    def mem_available_mb(self) -> Optional[float]:
        kb = self.facts.get("mem_available_kb")
        if isinstance(kb, bool) or not isinstance(kb, (int, float)) or not math.isfinite(kb) or kb <= 0:
            return None
        return kb / 1024

    @property
    def page_size(self) -> int:
        ps = self.facts.get("page_size")
        return ps if isinstance(ps, int) and not isinstance(ps, bool) and ps > 0 else PAGE_SIZE


class Run:
    """A run directory: its manifest, the machines to analyse (status ok) in lab order."""

    def __init__(self, path: Path | str, diag: Optional[Diagnostics] = None):
        self.path = Path(path)
        self.diag = diag if diag is not None else Diagnostics()
        self.manifest_path = self.path / "manifest.json"
        if not self.path.exists():
            raise AnalysisError(self.path, None, "no such run directory")
        self.manifest = read_json(self.manifest_path)
        machines = self.manifest.get("machines")
        if not isinstance(machines, dict) or not machines:
            raise AnalysisError(self.manifest_path, None,
                                "key 'machines' must be a non-empty object (machine name: status)")
        lab = self.manifest.get("lab") if isinstance(self.manifest.get("lab"), dict) else {}
        lab_machines = [m for m in (lab.get("machines") or []) if isinstance(m, dict) and "name" in m]
        self.lab_memory = {m["name"]: m.get("memory_mb") for m in lab_machines}
        order = [m["name"] for m in lab_machines]
        order += [name for name in machines if name not in order]
        # Colours follow the lab's order, skipped machines included, so that a
        # machine keeps its colour whichever others failed.
        self.colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(order)}
        self.machines: list[Machine] = []
        self.skipped: dict[str, str] = {}
        params = self.manifest.get("parameters") if isinstance(self.manifest.get("parameters"), dict) else {}
        for name in order:
            if name not in machines:
                continue
            entry = machines[name]
            status = entry.get("status") if isinstance(entry, dict) else None
            if status != "ok":
                reason = f"status {status!r}" if status is not None else "no status"
                if isinstance(entry, dict) and entry.get("error"):
                    reason += f": {entry['error']}"
                self.skipped[name] = reason
                self.diag.warn(self.manifest_path, f"machine '{name}' skipped ({reason})")
                continue
            self.machines.append(self._machine(name, params.get(name) or {}))
        if not self.machines:
            raise AnalysisError(self.manifest_path, None, "no machine with status 'ok'")

    def _machine(self, name: str, parameters: dict) -> Machine:
        mdir = self.path / name
        facts_path = mdir / "facts.json"
        facts = read_json(facts_path)
        memory = number(facts, "memory_mb", facts_path, required=False, minimum=1)
        if memory is None:
            memory = self.lab_memory.get(name)
            if not isinstance(memory, (int, float)) or isinstance(memory, bool):
                raise AnalysisError(facts_path, None, "missing key 'memory_mb' (and the lab does not give it)")
        return Machine(name=name, dir=mdir, facts=facts, memory_mb=memory,
                       colour=self.colours[name], parameters=parameters if isinstance(parameters, dict) else {})

    def meta(self, key: str, default: Any = None) -> Any:
        return self.manifest.get(key, default)
