"""``report``: one self-contained HTML file with every table, every figure and the run's metadata.

The thrashing point table comes first.  The figures are the SVG files inlined
in the page (their text drawn as paths), and hovering a data point shows its
values (each point's ``<title>``, see analysis.plots); the file loads no
external resource (no script, stylesheet, font or image from elsewhere, nor
the figure files), so it can be mailed or archived alone.  It is written to
``RUN/analysis/report.html`` (atomically) beside the PNG and SVG files, and
its path is printed.
"""
from __future__ import annotations

import html
import itertools
import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from analysis import case1 as c1
from analysis import case2 as c2
from analysis import compare as cmp
from analysis import knee
from analysis import report_series
from analysis.errors import AnalysisError, Diagnostics
from analysis.load import Run
from analysis.tables import Column, human

CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 78em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.5em 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.88em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle; margin-right: 0.3em; }
.warn { color: #8a4b00; }
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def html_table(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    cols = [c for c in columns if c.human]
    out = ["<table>", "<tr>" + "".join(f"<th>{_e(c.title)}</th>" for c in cols) + "</tr>"]
    for r in rows:
        cells = []
        for c in cols:
            cls = ' class="num"' if c.kind in ("int", "float", "si", "g") else ""
            cells.append(f"<td{cls}>{_e(human(c, r.get(c.key)))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def kv_table(pairs: Sequence[tuple[str, object]]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e('-' if v is None else v)}</td></tr>" for k, v in pairs)
    return f"<table>{rows}</table>"


def inline_svg(path: Path, alt: str, prefix: str) -> str:
    """The figure's SVG as an element of the page; its ids (marker shapes, clip paths) get
    ``prefix`` so that they stay unique among the page's figures."""
    svg = path.read_text(encoding="utf-8")
    svg = svg[svg.index("<svg"):].rstrip()
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    # HTML implies the SVG namespaces; dropping them leaves no URL at all in the page.
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    svg = re.sub(r'\b(id="|href="#|url\(#)', lambda m: m[1] + prefix, svg)
    svg = svg.replace("<svg", f'<svg role="img" aria-label="{_e(alt)}"', 1)
    return f"<figure>{svg}</figure>"


def notes_html(notes: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes else ""


def _has(run: Run, case: str) -> bool:
    return any((m.dir / case).is_dir() for m in run.machines)


def build(run: Run, out_dir: Path) -> str:
    if not _has(run, "case1") and not _has(run, "case2"):
        raise AnalysisError(run.path, None, "no case1 or case2 directory for any machine")
    m = run.manifest
    parts: list[str] = []
    title = f"thrashlab run {m.get('run_id', run.path.name)}"
    parts.append(f"<h1>{_e(title)}</h1>")
    figure_ids = (f"f{k}-" for k in itertools.count(1))

    def figures(paths: list[Path], alt_of) -> list[str]:
        return [inline_svg(p, alt_of(p), next(figure_ids)) for p in paths if p.suffix == ".svg"]

    # ---- read everything first, so that bad input stops the report before any figure is drawn
    cases = c2.load(run) if _has(run, "case2") else None
    rows = cmp.rows_for(run, cases) if cases is not None else None
    pairs = c1.load(run) if _has(run, "case1") else None
    pair_rows = c1.rows(run, pairs) if pairs is not None else None

    # ---- the headline first: where each machine thrashes
    if cases is not None:
        parts.append("<h2>Thrashing point per machine (compare)</h2>")
        parts.append(html_table(rows, cmp.COLUMNS))
        parts.append(notes_html(cmp.notes_of(rows)))
        parts += figures(cmp.plot(run, rows, out_dir),
                         lambda p: "throughput (sum and slowest process) and utilization vs N, knees marked")
        parts.append("<details><summary>The rule for N*</summary><pre>" + _e(knee.RULE) + "</pre></details>")

    # ---- metadata
    lab = m.get("lab") if isinstance(m.get("lab"), dict) else {}
    revision = m.get("git_revision")
    if revision and m.get("git_dirty"):
        revision = f"{revision} (uncommitted changes)"
    parts.append("<h2>Run</h2>")
    parts.append(kv_table([("run id", m.get("run_id")), ("case", m.get("case")),
                           ("git revision", revision), ("started", m.get("started")),
                           ("ended", m.get("ended")), ("lab", lab.get("name")),
                           ("lab description", lab.get("description")), ("directory", run.path)]))
    parts.append("<h2>Machines</h2>")
    machines = m.get("machines") if isinstance(m.get("machines"), dict) else {}
    mrows = []
    analysed = {mm.name: mm for mm in run.machines}
    for name, colour in run.colours.items():
        if name not in machines:
            continue
        entry = machines[name] if isinstance(machines[name], dict) else {}
        facts = analysed[name].facts if name in analysed else (entry.get("facts") or {})
        def kb(key):
            v = facts.get(key)
            return None if not isinstance(v, (int, float)) or isinstance(v, bool) else f"{v / 1024:.0f}"
        status = entry.get("status")
        if entry.get("error"):
            status = f"{status}: {entry['error']}"
        mrows.append((colour, [name, status, facts.get("kernel"), facts.get("memory_mb"), kb("mem_total_kb"),
                               kb("mem_available_kb"), facts.get("swap_mb", kb("swap_total_kb")),
                               facts.get("cpus"), facts.get("accelerator"), facts.get("swappiness"),
                               facts.get("transparent_hugepage"), facts.get("hostname")]))
    heads = ["machine", "status", "kernel", "RAM (MiB)", "MemTotal (MiB)", "MemAvailable (MiB)",
             "swap (MiB)", "vCPUs", "accelerator", "swappiness", "THP", "hostname"]
    t = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>"]
    for colour, vals in mrows:
        cells = [f'<td><span class="swatch" style="background:{colour}"></span>{_e(vals[0])}</td>']
        cells += [f"<td>{_e('-' if v is None else v)}</td>" for v in vals[1:]]
        t.append("<tr>" + "".join(cells) + "</tr>")
    t.append("</table>")
    parts.append("\n".join(t))
    params = m.get("parameters") if isinstance(m.get("parameters"), dict) else {}
    if params:
        parts.append("<h3>Parameters</h3>")
        for name, p in params.items():
            parts.append(f"<p><b>{_e(name)}</b></p><pre>{_e(json.dumps(p, indent=2, sort_keys=True))}</pre>")

    # ---- case 2
    if cases is not None:
        parts.append("<h2>Case Study 2</h2>")
        parts.append(html_table(c2.rows(cases), c2.columns()))
        parts.append(notes_html(c2.NOTES))
        parts += figures(c2.plot(run, cases, out_dir), lambda p: "Case Study 2 metrics vs N")
        parts.append("<h3>Over time, around each knee</h3>")
        parts.append("<p>" + _e(" ".join(report_series.__doc__.split("\n\n")[1].split())) + "</p>"
                     if report_series.__doc__ else "")
        series_figures = figures(report_series.plot(run, cases, out_dir),
                                 lambda p: f"fault rate and CPU over time per process: {p.stem}")
        parts += series_figures
        if not series_figures:
            parts.append("<p>No run with a profile around the knees (see the warnings).</p>")

    # ---- case 1
    if pairs is not None:
        parts.append("<h2>Case Study 1</h2>")
        parts.append(html_table(pair_rows, c1.COLUMNS))
        parts.append(notes_html(c1.NOTES))
        parts += figures(c1.plot(run, pairs, out_dir), lambda p: f"Case Study 1 faults: {p.stem}")

    parts.append("<h2>Warnings</h2>")
    if run.diag.warnings:
        parts.append('<ul class="warn">' + "".join(f"<li>{_e(w)}</li>" for w in run.diag.warnings) + "</ul>")
    else:
        parts.append("<p>None: every input file was read.</p>")

    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")


def main(args) -> int:
    diag = Diagnostics()
    run = Run(args.run, diag)
    out_dir = Path(args.out) if args.out else run.path / "analysis"
    text = build(run, out_dir)
    target = Path(args.output) if args.output else out_dir / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    print(target)
    sys.stdout.flush()
    return 0
