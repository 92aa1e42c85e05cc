"""``python -m analysis runs``: the runs of a results directory, newest first.

One row per run directory under the results root (``--results DIR``, else
``$THRASHLAB_RESULTS_DIR``, else ``results/`` of the repository). Left out:
``latest`` (the symlink), ``logs``, hidden entries (the collector's
``.partial-*`` staging directories, locks), files, and directories that hold
neither a manifest.json nor a machine directory (one with facts.json or a
case1/, case2/ or bench/ directory).

Columns (and keys of ``--json``):

- ``run``: the run id, the directory's name (what ``compare RUN`` takes,
  under the results root); JSON also ``path`` (the directory) and
  ``run_id`` (the manifest's, null without one);
- ``lab``: the lab's name (manifest ``lab.name``);
- ``machines``: the machines' names, in the lab's order (manifest
  ``machines``; without a manifest, the machine directories);
- ``cases``: which of case1, case2 and bench some machine's directory holds;
- ``started``, ``ended``: the run's start and end (manifest, UTC; text
  shows them to the second);
- ``complete``: every machine of the manifest was collected (status ok);
  a directory without a manifest, or with one that cannot be read, is
  incomplete, and ``reason`` (in text: a note under the table) says why;
- ``git``: the revision that ran, 12 hex digits, ``+dirty`` when the
  checkout had changes (JSON: ``git_revision`` in full, ``git_dirty``);
- ``latest``: the run ``latest`` points at (text: ``*``).

Newest first: by ``started`` (else ``ended``, the collection's start, or the
directory's modification time), then by name.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Optional

from analysis.errors import AnalysisError
from analysis.load import read_json
from analysis.tables import Column, render

CASES = ("case1", "case2", "bench")
SKIPPED = ("latest", "logs")

COLUMNS = [
    Column("run"),
    Column("lab"),
    Column("machines"),
    Column("cases"),
    Column("started"),
    Column("ended"),
    Column("complete"),
    Column("git"),
    Column("latest"),
]
JSON_KEYS = ("run", "run_id", "path", "lab", "machines", "cases", "started", "ended", "complete", "reason",
             "git_revision", "git_dirty", "latest")


def _is_machine_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "facts.json").is_file() or any((path / c).is_dir() for c in CASES))


def _is_run(path: Path) -> bool:
    if path.name in SKIPPED or path.name.startswith(".") or path.is_symlink() or not path.is_dir():
        return False
    if (path / "manifest.json").exists():
        return True
    try:
        return any(_is_machine_dir(p) for p in path.iterdir())
    except OSError:
        return False


def _text(v: Any) -> Optional[str]:
    return v if isinstance(v, str) and v else None


def _mtime(path: Path) -> Optional[str]:
    try:
        t = path.stat().st_mtime
    except OSError:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_info(path: Path, latest: Optional[Path] = None) -> dict:
    """One row: what the run directory ``path`` holds (never raises on bad input)."""
    row: dict[str, Any] = {"run": path.name, "run_id": None, "path": str(path), "lab": None, "machines": [],
                           "cases": [], "started": None, "ended": None, "complete": False, "reason": None,
                           "git_revision": None, "git_dirty": None,
                           "latest": latest is not None and path.resolve() == latest}
    manifest: dict = {}
    mpath = path / "manifest.json"
    if not mpath.exists():
        row["reason"] = "no manifest.json"
    else:
        try:
            manifest = read_json(mpath)
        except AnalysisError as e:
            row["reason"] = str(AnalysisError("manifest.json", e.line, e.what))
    machines = manifest.get("machines") if isinstance(manifest.get("machines"), dict) else {}
    lab = manifest.get("lab") if isinstance(manifest.get("lab"), dict) else {}
    order = [m["name"] for m in (lab.get("machines") or []) if isinstance(m, dict) and isinstance(m.get("name"), str)]
    names = [n for n in order if n in machines] + [n for n in machines if n not in order]
    if not manifest:
        try:
            names = sorted(p.name for p in path.iterdir() if not p.name.startswith(".") and _is_machine_dir(p))
        except OSError:
            names = []
    row["machines"] = names
    row["cases"] = [c for c in CASES if any((path / n / c).is_dir() for n in names)]
    if manifest:
        row["run_id"] = _text(manifest.get("run_id"))
        row["lab"] = _text(lab.get("name"))
        row["started"] = _text(manifest.get("started"))
        row["ended"] = _text(manifest.get("ended"))
        row["git_revision"] = _text(manifest.get("git_revision"))
        dirty = manifest.get("git_dirty")
        row["git_dirty"] = dirty if isinstance(dirty, bool) else None
        if not machines:
            row["reason"] = "manifest.json: no machines"
        else:
            bad = []
            for n in names:
                entry = machines[n]
                status = entry.get("status") if isinstance(entry, dict) else None
                if status != "ok":
                    why = f"{n} {status or 'without status'}"
                    if isinstance(entry, dict) and _text(entry.get("error")):
                        why += f" ({entry['error']})"
                    bad.append(why)
            if bad:
                row["reason"] = "; ".join(bad)
            else:
                row["complete"] = True
    collected = manifest.get("collected") if isinstance(manifest.get("collected"), dict) else {}
    row["_when"] = row["started"] or row["ended"] or _text(collected.get("started")) or _mtime(path) or ""
    return row


def list_runs(root: Path) -> list[dict]:
    """Every run under ``root``, newest first (module docstring)."""
    if not root.is_dir():
        raise AnalysisError(root, None, "no such results directory (give --results DIR, or set "
                                        "THRASHLAB_RESULTS_DIR)")
    link = root / "latest"
    latest = link.resolve() if link.is_symlink() or link.exists() else None
    rows = [run_info(p, latest) for p in sorted(root.iterdir()) if _is_run(p)]
    rows.sort(key=lambda r: (r["_when"], r["run"]), reverse=True)
    return rows


def _when(v: Optional[str]) -> Optional[str]:
    """An ISO time to the second, as text: 2026-11-25T23:40:00.123Z -> 2026-11-25 23:40:00."""
    if not v:
        return None
    return v.replace("T", " ").rstrip("Z").split(".")[0]


def shown(row: dict) -> dict:
    git = row["git_revision"][:12] if row["git_revision"] else None
    if git and row["git_dirty"]:
        git += "+dirty"
    return {**row, "machines": ",".join(row["machines"]), "cases": ",".join(row["cases"]),
            "started": _when(row["started"]), "ended": _when(row["ended"]),
            "complete": "yes" if row["complete"] else "no", "git": git, "latest": "*" if row["latest"] else ""}


def render_runs(rows: list[dict], fmt: str, root: Path) -> str:
    if fmt == "json":
        import json
        return json.dumps([{k: r[k] for k in JSON_KEYS} for r in rows], indent=2) + "\n"
    notes = [f"{r['run']}: incomplete: {r['reason']}" for r in rows if r["reason"]]
    if not rows:
        notes.append(f"no run in {root}")
    else:
        notes.append("complete: every machine collected (manifest statuses ok); latest (*): the run "
                     f"{root / 'latest'} points at; compare runs with python -m analysis compare RUN RUN ...")
    columns = COLUMNS if fmt != "csv" else [Column(k) for k in JSON_KEYS]
    data = [shown(r) for r in rows] if fmt != "csv" else \
        [{**r, "machines": ",".join(r["machines"]), "cases": ",".join(r["cases"])} for r in rows]
    return render(data, columns, fmt, notes=notes if fmt != "csv" else ())


def main(args) -> int:
    import sys
    from analysis import cli_common
    from thrashlab.paths import results_root
    root = Path(args.results).absolute() if args.results else results_root()
    rows = list_runs(root)
    sys.stdout.write(render_runs(rows, cli_common.fmt(args), root))
    sys.stdout.flush()
    return 0
