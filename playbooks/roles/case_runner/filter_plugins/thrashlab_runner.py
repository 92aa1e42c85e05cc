# Filters for the case roles: build the guest runner's zipapp (what
# tasks/install.yml copies), and read what the runner printed.
#
# Every runner step ends its output with `THRASHLAB-RESULT <JSON>` (and, on
# success, a `THRASHLAB-SUMMARY <text>` line before it); the output may
# carry other lines too (the runner's progress on stderr, merged by `raw`'s
# terminal; a login banner).
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import time
import zipfile

RESULT_MARK = "THRASHLAB-RESULT "
SUMMARY_MARK = "THRASHLAB-SUMMARY "


def _lines(value):
    if isinstance(value, dict):
        value = value.get("stdout", "")
    if value is None:
        return []
    return str(value).replace("\r", "").splitlines()


def runner_result(value):
    """The runner's result object from a registered result (or its stdout); {} if none."""
    for line in reversed(_lines(value)):
        if line.startswith(RESULT_MARK):
            try:
                obj = json.loads(line[len(RESULT_MARK):])
            except ValueError:
                return {}
            return obj if isinstance(obj, dict) else {}
    return {}


def runner_summary(value, item=None, default=""):
    """The runner's one-line summary, or its error, or ``default``. With ``item``
    (in a loop label), only the summary of that item's own result: the result
    of an item that did not run (unreachable machine) may still be the last one's."""
    if item is not None and isinstance(value, dict) and "item" in value and value.get("item") != item:
        return default
    if isinstance(value, dict) and value.get("unreachable"):
        return "machine unreachable"
    for line in reversed(_lines(value)):
        if line.startswith(SUMMARY_MARK):
            return line[len(SUMMARY_MARK):].strip()
    err = runner_result(value).get("error")
    return ("error: %s" % err) if err else default


def point_text(item):
    """A sweep's point in words: 'N=4 repeat=1' (Case Study 2), 'pair A' (Case Study 1)."""
    if isinstance(item, dict) and "n" in item and "repeat" in item:
        return "N=%s repeat=%s" % (item["n"], item["repeat"])
    if isinstance(item, str):
        return "pair %s" % item
    return str(item)


def thrashlab_runner_error(result):
    """Why a (possibly looped) task failed, in one line: the runner's own error
    when it printed one, else Ansible's message (unreachable, killed...)."""
    if not isinstance(result, dict):
        return str(result)
    items = result.get("results")
    if isinstance(items, list) and items:
        bad = [r for r in items if isinstance(r, dict) and (r.get("failed") or r.get("unreachable"))]
        if bad:
            first = bad[0]
            return "at %s: %s" % (point_text(first.get("item")), thrashlab_runner_error(first))
    if result.get("unreachable"):
        return "machine unreachable: %s" % (result.get("msg") or "").strip()
    err = runner_result(result).get("error")
    if err:
        return err
    msg = (result.get("msg") or "").strip()
    rc = result.get("rc")
    if rc is not None:
        tail = [ln for ln in _lines(result) if ln.strip()][-3:]
        detail = " | ".join(tail)
        if rc in (137, -9):
            detail = "killed by SIGKILL (the OOM killer?)" + (": " + detail if detail else "")
        return "exit %s%s" % (rc, (": " + detail) if detail else (": " + msg if msg else ""))
    return msg or "failed"


def elapsed_since(t0):
    """'m:ss' since the epoch time ``t0``."""
    try:
        secs = max(0, int(time.time() - float(t0)))
    except (TypeError, ValueError):
        return "?"
    return "%d:%02d" % divmod(secs, 60)


# A zip entry's time and mode: fixed, so that the same sources give the same
# bytes (and the install task, which compares checksums, stays unchanged).
ZIP_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_ENTRY_MODE = 0o644
ZIPAPP_SHEBANG = b"#!/usr/bin/env python3\n"


def runner_zipapp(package_dir):
    """The runner package as the bytes of one zipapp (`python3 FILE.pyz STEP ...`):
    its modules under the package's name, its __main__.py also at the top,
    entries sorted, with fixed times and modes, stored (the payload is
    compressed whole)."""
    package_dir = os.path.normpath(package_dir)
    package = os.path.basename(package_dir)
    sources = sorted(name for name in os.listdir(package_dir)
                     if name.endswith(".py") and not name.startswith("."))
    if "__main__.py" not in sources:
        raise ValueError("%s has no __main__.py: not the runner package" % package_dir)
    entries = [("__main__.py", "__main__.py")] + [("%s/%s" % (package, name), name) for name in sources]
    buf = io.BytesIO()
    buf.write(ZIPAPP_SHEBANG)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for arcname, name in sorted(entries):
            info = zipfile.ZipInfo(arcname, ZIP_ENTRY_TIME)
            info.create_system = 3          # Unix, whatever the controller: the mode below applies
            info.external_attr = ZIP_ENTRY_MODE << 16
            with open(os.path.join(package_dir, name), "rb") as f:
                zf.writestr(info, f.read())
    return buf.getvalue()


def payload(data):
    """Bytes as {"b64": gzip+base64 of them, "sha256": their checksum, "size"},
    to write them on a machine with one `raw` command (no Python module, one
    round trip: each costs seconds under emulation)."""
    return {"b64": base64.b64encode(gzip.compress(data, 9, mtime=0)).decode(),
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def zipapp_payload(package_dir):
    """The runner package's zipapp as a :func:`payload`."""
    return payload(runner_zipapp(package_dir))


class FilterModule:
    def filters(self):
        return {
            "thrashlab_runner_result": runner_result,
            "thrashlab_runner_summary": runner_summary,
            "thrashlab_runner_error": thrashlab_runner_error,
            "thrashlab_elapsed_since": elapsed_since,
            "thrashlab_point_text": point_text,
            "thrashlab_zipapp_payload": zipapp_payload,
        }
