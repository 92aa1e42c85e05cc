"""The collector's test plugin: failures at a chosen moment of a collection.

Loaded by the collector when $THRASHLAB_COLLECTOR_PLUGIN names this file
(collector/pull.py); what to do comes from $THRASHLAB_COLLECTOR_TEST_HOOK, a
JSON object or a list of them:

  {"host": H, "file": REL, "remote": CMD}      run CMD on H before every download
                                               attempt of REL (e.g. change the file)
  {"host": H, "after_files": K, "local": CMD}  run CMD (an argv, split as by a shell,
                                               no shell) here, once, after H has
                                               downloaded K files (e.g. kill its VM)
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
from pathlib import Path

HOOK_ENV = "THRASHLAB_COLLECTOR_TEST_HOOK"
PLUGIN_FILE = str(Path(__file__).resolve())

_raw = json.loads(os.environ.get(HOOK_ENV) or "[]")
_hooks = _raw if isinstance(_raw, list) else [_raw]
_fired: set[int] = set()
_lock = threading.Lock()  # machines are collected by several threads


def env(hooks) -> dict:
    """The environment that makes the collector load this plugin with ``hooks``."""
    return {"THRASHLAB_COLLECTOR_PLUGIN": PLUGIN_FILE, HOOK_ENV: json.dumps(hooks)}


def before_download(remote, host: str, rel: str) -> None:
    for h in _hooks:
        if h.get("host") == host and h.get("file") == rel and h.get("remote"):
            remote.run(h["remote"])


def after_file(host: str, count: int) -> None:
    for i, h in enumerate(_hooks):
        if h.get("host") == host and h.get("after_files") == count and h.get("local"):
            with _lock:
                if i in _fired:
                    continue
                _fired.add(i)
            subprocess.run(shlex.split(h["local"]), check=False)
