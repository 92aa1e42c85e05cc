"""The machines to collect from, as Ansible sees them.

One piece of inventory logic for everything: the collector asks
``ansible-inventory --list`` (run from the repository root, so that
ansible.cfg's inventory and plugins apply) and reads, for each host of the
group ``lab``: ``ansible_host``, ``ansible_port``, ``ansible_user``,
``ansible_ssh_private_key_file``, a ProxyJump or ProxyCommand, the
known_hosts file to verify its host key against, and ``thrashlab_results_dir``.
Where the inventory says nothing (no port, user or proxy), ``~/.ssh/config``
decides, as it does for Ansible's ssh (collector/remote.py).

The proxy: the first ``-J HOPS``, ``-o ProxyJump=HOPS`` or
``-o ProxyCommand=CMD`` in ``ansible_ssh_common_args`` then
``ansible_ssh_extra_args`` (OpenSSH's rule: the first one given wins, and
``none`` means a direct connection even where ssh_config names a proxy).

The known_hosts file: the host variable ``thrashlab_known_hosts`` if the
inventory sets it, else every ``UserKnownHostsFile`` named in
``ansible_ssh_common_args`` / ``ansible_ssh_extra_args`` (the thrashlab
inventory plugin puts the testbed's pinned file there, for the local QEMU
testbed and for Vagrant), else ``~/.ssh/known_hosts`` (a static inventory:
see inventory/hosts.example.yml). The jump hosts' keys are verified against
the same files.
"""
from __future__ import annotations

import json
import os
import re
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
    port: int | None  # None: ssh_config's, else 22
    user: str | None  # None: ssh_config's, else the local user
    key_file: str | None
    known_hosts: list[str]
    results_dir: str
    backend: str = "static"
    hostvars: dict = field(default_factory=dict)
    proxy_jump: str | None = None  # "user@host:port[,...]", or "none"
    proxy_command: str | None = None  # or "none"


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


def ssh_options_from_args(*arg_strings: str | None) -> list[tuple[str, str]]:
    """The ssh options given in ssh arguments, in order, as (lower-case name, value):
    ``-o Name=V``, ``-oName=V``, ``-o "Name V"``, and ``-J HOPS`` / ``-JHOPS`` as
    ("proxyjump", HOPS)."""
    found: list[tuple[str, str]] = []
    for s in arg_strings:
        if not s:
            continue
        try:
            words = shlex.split(str(s))
        except ValueError:
            words = str(s).split()
        for i, w in enumerate(words):
            for flag, name in (("-o", None), ("-J", "proxyjump")):
                if w == flag and i + 1 < len(words):
                    value = words[i + 1]
                elif w.startswith(flag) and len(w) > 2:
                    value = w[2:]
                else:
                    continue
                if name:
                    found.append((name, value))
                else:
                    # as ssh_config: the name ends at the first "=" or blank
                    m = re.match(r"\s*([^\s=]+)\s*=?\s*(.*)", value, re.S)
                    if m:
                        found.append((m.group(1).lower(), m.group(2).strip()))
    return found


def known_hosts_from_args(*arg_strings: str | None) -> list[str]:
    """Every UserKnownHostsFile given in ssh arguments (``-o UserKnownHostsFile=F``,
    ``-oUserKnownHostsFile=F``, ``-o "UserKnownHostsFile F"``); a value may list
    several files."""
    return [os.path.expanduser(v) for key, value in ssh_options_from_args(*arg_strings)
            if key == "userknownhostsfile" for v in value.split()]


def proxy_from_args(*arg_strings: str | None) -> tuple[str | None, str | None]:
    """(ProxyJump, ProxyCommand) of ssh arguments: the first of the two given wins
    (as in OpenSSH, where each prevents later instances of the other)."""
    for key, value in ssh_options_from_args(*arg_strings):
        if key == "proxyjump":
            return value, None
        if key == "proxycommand":
            return None, value
    return None, None


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
    port = get("ansible_port") or get("ansible_ssh_port")
    try:
        port = int(port) if port else None
    except (TypeError, ValueError):
        raise InventoryError(f"host {name}: ansible_port {port!r} is not a number") from None
    user = get("ansible_user") or get("ansible_ssh_user")
    proxy_jump, proxy_command = proxy_from_args(get("ansible_ssh_common_args"), get("ansible_ssh_extra_args"))
    return Host(
        name=name,
        address=str(get("ansible_host") or get("ansible_ssh_host") or name),
        port=port,
        user=str(user) if user else None,
        key_file=os.path.expanduser(str(key)) if key else None,
        known_hosts=known_hosts,
        results_dir=str(get("thrashlab_results_dir") or DEFAULT_RESULTS_DIR),
        backend=str(hv.get("thrashlab_backend") or "static"),
        hostvars=hv,
        proxy_jump=proxy_jump,
        proxy_command=proxy_command,
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
