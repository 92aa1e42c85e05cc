"""Rendering rows (lists of dicts) as an aligned text table, CSV, Markdown or JSON.

A :class:`Column` says how one key is shown: text and Markdown are for
people (throughput as ``6.20M``, missing values as ``-``), CSV and JSON for
programs (plain numbers rounded to ``digits`` decimals, missing values empty
or ``null``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Optional, Sequence

FORMATS = ("text", "csv", "markdown")


@dataclass(frozen=True)
class Column:
    key: str
    header: Optional[str] = None
    kind: str = "str"          # str | int | float | si (a count or rate shown with k/M/G) | ranges
    #                            | g (a number shown without trailing zeros: 2, 1.5)
    #                            | num (a number already formatted as text, e.g. with its interval:
    #                              shown as given, right-aligned)
    digits: int = 1            # decimals of float columns (text and machine formats)
    human: bool = True         # shown in text and Markdown (machine formats show every column)

    @property
    def title(self) -> str:
        return self.header or self.key


def si(v: float) -> str:
    """3 significant digits with k/M/G: 6200000 -> 6.20M, 9012 -> 9.01k, 512 -> 512."""
    a = abs(v)
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= scale * 0.9995:
            return _three_digits(v / scale) + unit
    if float(v).is_integer():
        return str(int(v))
    return _three_digits(v)


def _three_digits(x: float) -> str:
    a = abs(x)
    if a >= 99.95:
        return f"{x:.0f}"
    if a >= 9.995:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def human(col: Column, v: Any) -> str:
    if _missing(v):
        return "-"
    if col.kind == "si":
        return si(float(v))
    if col.kind == "int":
        return str(int(v))
    if col.kind == "float":
        return f"{float(v):.{col.digits}f}"
    if col.kind == "g":
        return f"{round(float(v), col.digits):g}"
    if col.kind == "ranges":
        return ranges(v)
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def ranges(values) -> str:
    """Integers as runs: [1, 2, 3, 5, 7, 8, 9] -> "1-3,5,7-9"."""
    out: list[str] = []
    vals = sorted(int(x) for x in values)
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if j == i else f"{vals[i]}-{vals[j]}" if j > i + 1 else f"{vals[i]},{vals[j]}")
        i = j + 1
    return ",".join(out)


def machine(col: Column, v: Any) -> Any:
    """The value for CSV/JSON: rounded numbers, None for missing."""
    if _missing(v):
        return None
    if col.kind == "int":
        return int(v)
    if col.kind in ("float", "si", "g"):
        r = round(float(v), col.digits)
        return int(r) if col.digits == 0 or (col.kind == "g" and r.is_integer()) else r
    return v


def _is_numeric(col: Column) -> bool:
    return col.kind in ("int", "float", "si", "g", "num")


def render_text(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    cols = [c for c in columns if c.human]
    cells = [[human(c, r.get(c.key)) for c in cols] for r in rows]
    widths = [max([len(c.title)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if _is_numeric(c) else v.ljust(w) for v, w, c in zip(values, widths, cols)]
        return "  ".join(parts).rstrip()

    out = [line([c.title for c in cols]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out) + "\n"


def render_markdown(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    cols = [c for c in columns if c.human]
    out = ["| " + " | ".join(c.title for c in cols) + " |",
           "|" + "|".join("---:" if _is_numeric(c) else "---" for c in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(human(c, r.get(c.key)).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(out) + "\n"


def render_csv(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.key for c in columns])
    for r in rows:
        vals = []
        for c in columns:
            v = machine(c, r.get(c.key))
            if v is None:
                v = ""
            elif isinstance(v, (list, tuple)):
                v = ",".join(str(x) for x in v)
            vals.append(v)
        w.writerow(vals)
    return buf.getvalue()


def json_rows(rows: Sequence[dict], columns: Sequence[Column], extra: Sequence[str] = ()) -> list[dict]:
    out = []
    for r in rows:
        obj = {c.key: machine(c, r.get(c.key)) for c in columns}
        for k in extra:
            if k in r:
                obj[k] = r[k]
        out.append(obj)
    return out


def render_json(rows: Sequence[dict], columns: Sequence[Column], extra: Sequence[str] = ()) -> str:
    return json.dumps(json_rows(rows, columns, extra), indent=2) + "\n"


def render(rows: Sequence[dict], columns: Sequence[Column], fmt: str = "text",
           notes: Sequence[str] = (), extra_json: Sequence[str] = ()) -> str:
    """The whole table in one format; ``notes`` follow text and Markdown tables."""
    if fmt == "json":
        return render_json(rows, columns, extra_json)
    if fmt == "csv":
        return render_csv(rows, columns)
    if fmt == "markdown":
        body = render_markdown(rows, columns)
        if notes:
            body += "\n" + "".join(f"- {n}\n" for n in notes)
        return body
    if fmt == "text":
        body = render_text(rows, columns)
        if notes:
            body += "\n" + "".join(textwrap.fill(n, width=100, subsequent_indent="  ",
                                                 break_on_hyphens=False) + "\n" for n in notes)
        return body
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)}, json)")
