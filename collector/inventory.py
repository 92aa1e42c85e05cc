"""The machines to collect from, as Ansible sees them.

One piece of inventory logic for everything: the collector asks
``ansible-inventory --list`` (run from the repository root, so that
ansible.cfg's inventory and plugins apply) and reads, for each host of the
group ``lab``: ``ansible_host``, ``ansible_port``, ``ansible_user``,
``ansible_ssh_private_key_file``, the known_hosts file to verify its host
key against, and ``thrashlab_results_dir``.

The known_hosts file: the host variable ``thrashlab_known_hosts`` if the
inventory sets it, else every ``UserKnownHostsFile`` named in
``ansible_ssh_common_args`` / ``ansible_ssh_extra_args`` (the thrashlab
inventory plugin puts the testbed's pinned file there, for the local QEMU
testbed and for Vagrant), else ``~/.ssh/known_hosts`` (a static inventory:
see inventory/hosts.example.yml).
"""
from __future__ import annotations

import getpass
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from thrashlab.lab import REPO_ROOT, LabError, load_lab

GROUP = "lab"
DEFAULT_RESULTS_DIR = "/var/lib/thrashlab/results"


class InventoryError(RuntimeError):
    pass


@dataclass
class Host:
    name: str
    address: str
    port: int
    user: str
    key_file: str | None
    known_hosts: list[str]
    results_dir: str
    backend: str = "static"
    hostvars: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


def _unwrap(value):
    """ansible-inventory marks strings as {"__ansible_unsafe": "..."}: plain values."""
    if isinstance(value, dict):
        if len(value) == 1:
            (k, v), = value.items()
            if k in ("__ansible_unsafe", "__ansible_vault"):
                return v
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def ansible_inventory(inventories: list[str] | None = None, limit: str | None = None,
                      env: dict | None = None, timeout: float = 180) -> dict:
    argv = [_tool("ansible-inventory"), "--list"]
    for inv in inventories or []:
        argv += ["-i", inv]
    if limit:
        argv += ["--limit", limit]
    try:
        proc = subprocess.run(argv, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise InventoryError("ansible-inventory is not installed (run ./run.sh or ./test.sh once, which "
                             "make the virtualenv)") from None
    except subprocess.TimeoutExpired:
        raise InventoryError(f"`{' '.join(argv)}` did not answer within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise InventoryError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    try:
        return _unwrap(json.loads(proc.stdout))
    except ValueError as e:
        raise InventoryError(f"`{' '.join(argv)}` printed no JSON ({e})") from None


def group_hosts(inv: dict, group: str) -> list[str]:
    """Hosts of ``group`` and of its children, in inventory order, without duplicates."""
    seen: list[str] = []

    def walk(g: str, depth: int = 0):
        entry = inv.get(g) or {}
        for h in entry.get("hosts", []):
            if h not in seen:
                seen.append(h)
        if depth < 20:
            for child in entry.get("children", []):
                walk(child, depth + 1)
    walk(group)
    return seen


def known_hosts_from_args(*arg_strings: str | None) -> list[str]:
    """Every UserKnownHostsFile given in ssh arguments (``-o UserKnownHostsFile=F``,
    ``-oUserKnownHostsFile=F``, ``-o "UserKnownHostsFile F"``); a value may list
    several files."""
    found: list[str] = []
    for s in arg_strings:
        if not s:
            continue
        try:
            words = shlex.split(str(s))
        except ValueError:
            words = str(s).split()
        options = []
        for i, w in enumerate(words):
            if w == "-o" and i + 1 < len(words):
                options.append(words[i + 1])
            elif w.startswith("-o") and len(w) > 2:
                options.append(w[2:])
        for opt in options:
            key, sep, value = opt.partition("=")
            if not sep:
                key, _, value = opt.partition(" ")
            if key.strip().lower() == "userknownhostsfile":
                found += [os.path.expanduser(v) for v in value.split()]
    return found


def _templated(name: str, key: str, value):
    if isinstance(value, str) and "{{" in value:
        raise InventoryError(f"host {name}: {key} is a template ({value!r}); the collector needs a plain value "
                             "(set it in the inventory without Jinja)")
    return value


def host_from_vars(name: str, hv: dict) -> Host:
    def get(key, default=None):
        return _templated(name, key, hv.get(key, default))

    known = get("thrashlab_known_hosts")
    if known:
        known_hosts = [os.path.expanduser(k) for k in (known if isinstance(known, list) else [known])]
    else:
        known_hosts = known_hosts_from_args(get("ansible_ssh_common_args"), get("ansible_ssh_extra_args"))
    if not known_hosts:
        known_hosts = [os.path.expanduser("~/.ssh/known_hosts")]
    key = get("ansible_ssh_private_key_file") or get("ansible_private_key_file")
    try:
        port = int(get("ansible_port") or get("ansible_ssh_port") or 22)
    except (TypeError, ValueError):
        raise InventoryError(f"host {name}: ansible_port {hv.get('ansible_port')!r} is not a number") from None
    return Host(
        name=name,
        address=str(get("ansible_host") or get("ansible_ssh_host") or name),
        port=port,
        user=str(get("ansible_user") or get("ansible_ssh_user") or getpass.getuser()),
        key_file=os.path.expanduser(str(key)) if key else None,
        known_hosts=known_hosts,
        results_dir=str(get("thrashlab_results_dir") or DEFAULT_RESULTS_DIR),
        backend=str(hv.get("thrashlab_backend") or "static"),
        hostvars=hv,
    )


def load_hosts(inventories: list[str] | None = None, limit: str | None = None, lab: str | None = None,
               group: str = GROUP) -> tuple[list[Host], dict]:
    """The hosts of ``group`` (after ``limit``) and the lab as loaded.

    The lab: ``lab`` (a lab file) if given, else the file the thrashlab
    inventory plugin read (host variable ``thrashlab_lab_file``), else one
    made from the inventory's host variables (a static inventory)."""
    env = {"THRASHLAB_LAB": str(Path(lab).absolute())} if lab else None
    inv = ansible_inventory(inventories, limit, env)
    hostvars = (inv.get("_meta") or {}).get("hostvars") or {}
    names = group_hosts(inv, group)
    if not names:
        where = ", ".join(inventories) if inventories else "the default inventory (ansible.cfg)"
        raise InventoryError(f"no host in group '{group}' of {where}" + (f" with --limit {limit}" if limit else ""))
    hosts = [host_from_vars(n, hostvars.get(n) or {}) for n in names]
    return hosts, lab_description(hosts, lab)


def lab_description(hosts: list[Host], lab_arg: str | None = None) -> dict:
    lab_file = lab_arg or next((h.hostvars.get("thrashlab_lab_file") for h in hosts
                                if h.hostvars.get("thrashlab_lab_file")), None)
    if lab_file:
        try:
            lab = load_lab(lab_file)
        except LabError as e:
            raise InventoryError(str(e)) from None
        d = lab.as_dict()
        d["digest"] = lab.digest()
        try:
            d["text"] = Path(lab.path).read_text()
        except OSError:
            pass
        return d
    machines = []
    for h in hosts:
        m = {"name": h.name}
        for key in ("memory_mb", "cpus", "swap_mb"):
            if key in h.hostvars:
                m[key] = h.hostvars[key]
        machines.append(m)
    name = next((h.hostvars.get("lab_name") for h in hosts if h.hostvars.get("lab_name")), "static")
    return {"name": name, "path": None, "description": "made from the inventory's host variables",
            "machines": machines}
