"""Where thrashlab keeps things outside the source tree.

- state: per-testbed files (SSH key, known_hosts, VM overlays, PIDs), under
  ``$THRASHLAB_STATE_DIR`` or ``<repo>/.thrashlab`` (git-ignored), so that
  the inventory, the collector and ``localvm`` of one checkout agree;
- cache: big artifacts keyed by their inputs (the VM base image, compile
  chroots), under ``$THRASHLAB_CACHE_DIR`` or ``$XDG_CACHE_HOME/thrashlab``.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .lab import REPO_ROOT


def state_root() -> Path:
    return Path(os.environ.get("THRASHLAB_STATE_DIR") or REPO_ROOT / ".thrashlab").absolute()


def testbed_dir(lab_name: str) -> Path:
    return state_root() / "testbeds" / lab_name


def cache_root() -> Path:
    explicit = os.environ.get("THRASHLAB_CACHE_DIR")
    if explicit:
        return Path(explicit).absolute()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).absolute() / "thrashlab"


def results_root() -> Path:
    return Path(os.environ.get("THRASHLAB_RESULTS_DIR") or REPO_ROOT / "results").absolute()


def case_runner_filters():
    """The case roles' Ansible filters (how the runner's output is read, how
    its zipapp is built) as a module, for code outside Ansible. Loaded by
    path: the plugin's file name is the runner package's name."""
    path = REPO_ROOT / "playbooks" / "roles" / "case_runner" / "filter_plugins" / "thrashlab_runner.py"
    spec = importlib.util.spec_from_file_location("thrashlab_case_runner_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
