# Filters for the case roles: read what the guest runner printed.
#
# Every runner step ends its output with `THRASHLAB-RESULT <JSON>` (and, on
# success, a `THRASHLAB-SUMMARY <text>` line before it); the output may
# carry other lines too (the runner's progress on stderr, merged by `raw`'s
# terminal; a login banner).
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import time

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


def _item_text(item):
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
            return "at %s: %s" % (_item_text(first.get("item")), thrashlab_runner_error(first))
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


def file_payload(path):
    """A local file as {"b64": gzip+base64 of its bytes, "sha256": its checksum},
    to write it on a machine with one `raw` command (no Python module, one
    round trip: each costs seconds under emulation)."""
    with open(path, "rb") as f:
        data = f.read()
    return {"b64": base64.b64encode(gzip.compress(data, 9, mtime=0)).decode(),
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


class FilterModule:
    def filters(self):
        return {
            "thrashlab_runner_result": runner_result,
            "thrashlab_runner_summary": runner_summary,
            "thrashlab_runner_error": thrashlab_runner_error,
            "thrashlab_elapsed_since": elapsed_since,
            "thrashlab_file_payload": file_payload,
        }
