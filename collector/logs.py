"""The controller's logs kept with a run's results, in results/<run>/logs/.

While a playbook (the thrashlab_log callback) or the main job runs, its log
is written to results/.logs/<run id>/, where a controller killed half way
leaves it too. Landing a run, the collector copies those logs and the logs/
of an earlier collection of the same run into the new copy (so nothing
collected before is lost) and lists them in the manifest (`logs`: path ->
sha256 and size). A log completed after the collection (the playbook's own,
which ends after its collect play) is attached with :func:`attach`, which
updates the manifest's list.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .files import copy_atomic, write_json_atomic

PENDING = ".logs"
LOGS = "logs"


def pending_dir(root: Path, run_id: str) -> Path:
    """Where the logs of run ``run_id`` are written while it runs."""
    return Path(root) / PENDING / run_id


def gather(staging: Path, final: Path, root: Path, run_id: str) -> None:
    """Copy the run's logs (an earlier collection's, then the pending ones,
    which are newer) into ``staging``/logs/."""
    dest = staging / LOGS
    for source in (final / LOGS, pending_dir(root, run_id)):
        if not source.is_dir():
            continue
        for f in sorted(source.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                dest.mkdir(exist_ok=True)
                copy_atomic(f, dest / f.name)


def listing(run_dir: Path) -> dict:
    """``logs/NAME`` -> {"sha256", "bytes"} for every log of the run."""
    d = Path(run_dir) / LOGS
    out = {}
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                data = f.read_bytes()
                out[f"{LOGS}/{f.name}"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return out


def attach(run_dir: Path, files: list[Path]) -> None:
    """Copy ``files`` (complete now) into the collected run's logs/ and list
    them in its manifest. Nothing happens to a run that was not collected."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        return
    for f in files:
        if Path(f).is_file():
            (run_dir / LOGS).mkdir(exist_ok=True)
            copy_atomic(Path(f), run_dir / LOGS / Path(f).name)
    manifest = json.loads(manifest_path.read_text())
    manifest["logs"] = listing(run_dir)
    write_json_atomic(manifest_path, manifest)
