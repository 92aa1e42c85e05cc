"""The lab file: the one machine list every tool reads.

A lab file is YAML::

    name: default            # optional; names the testbed's state (default: file stem)
    defaults:                # optional; values for machines that do not set them
      cpus: 1
      swap_mb: 512
      suite: bookworm        # Debian suite of the image: bookworm | trixie | sid
    machines:
      - name: small
        memory_mb: 256
      - name: large
        memory_mb: 512

Which file: ``--lab FILE``, else ``$THRASHLAB_LAB``, else ``lab.yml`` at the
repository root. Errors name the file and the machine.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LAB = REPO_ROOT / "lab.yml"
LAB_ENV = "THRASHLAB_LAB"

# Below this a Debian 6.1 guest with sshd does not boot reliably (measured
# under QEMU: 160 MiB boots, leaves ~60 MiB available; 192 MiB leaves ~89 MiB).
MIN_MEMORY_MB = 192
MAX_MEMORY_MB = 1024 * 1024
MAX_CPUS = 256
MAX_SWAP_MB = 1024 * 1024

MACHINE_KEYS = {"name", "memory_mb", "cpus", "swap_mb", "suite"}
DEFAULTABLE_KEYS = {"cpus", "swap_mb", "memory_mb", "suite"}
TOP_KEYS = {"name", "description", "defaults", "machines"}
BUILTIN_DEFAULTS = {"cpus": 1, "swap_mb": 512, "suite": "bookworm"}
# Debian suites a machine's image can be built from: kernel 6.1, 6.12, 7.x.
SUITES = ("bookworm", "trixie", "sid")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class LabError(ValueError):
    """A lab file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Machine:
    name: str
    memory_mb: int
    cpus: int
    swap_mb: int
    suite: str = "bookworm"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Lab:
    name: str
    path: Path
    machines: tuple[Machine, ...]
    description: str = ""

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        raise LabError(f"{self.path}: no machine named {name!r} "
                       f"(machines: {', '.join(m.name for m in self.machines)})")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.machines]

    @property
    def suites(self) -> list[str]:
        """The Debian suites the machines run, each once, in the lab's order."""
        return list(dict.fromkeys(m.suite for m in self.machines))

    def as_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "description": self.description,
                "machines": [m.as_dict() for m in self.machines]}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]


def resolve_lab_path(arg: str | os.PathLike | None = None) -> Path:
    """``--lab`` if given, else ``$THRASHLAB_LAB``, else the repository's lab.yml."""
    chosen = arg or os.environ.get(LAB_ENV) or DEFAULT_LAB
    return Path(chosen).expanduser().absolute()


def _int_field(where: str, key: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabError(f"{where}: {key} must be an integer, got {value!r}")
    if value < lo:
        hint = " (too small to boot a Debian guest)" if key == "memory_mb" else ""
        raise LabError(f"{where}: {key} is {value}, at least {lo} is needed{hint}")
    if value > hi:
        raise LabError(f"{where}: {key} is {value}, at most {hi} is allowed")
    return value


def _choice_field(where: str, key: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices or not isinstance(value, str):
        raise LabError(f"{where}: {key} is {value!r}, expected one of {', '.join(choices)}")
    return value


def parse_lab(data, path: Path) -> Lab:
    where = str(path)
    if not isinstance(data, dict):
        raise LabError(f"{where}: expected a mapping with a 'machines' list at the top")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise LabError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                       f"(allowed: {', '.join(sorted(TOP_KEYS))})")
    defaults = dict(BUILTIN_DEFAULTS)
    user_defaults = data.get("defaults") or {}
    if not isinstance(user_defaults, dict):
        raise LabError(f"{where}: 'defaults' must be a mapping")
    bad = set(user_defaults) - DEFAULTABLE_KEYS
    if bad:
        raise LabError(f"{where}: unknown key(s) in defaults: {', '.join(sorted(map(str, bad)))} "
                       f"(allowed: {', '.join(sorted(DEFAULTABLE_KEYS))})")
    defaults.update(user_defaults)

    raw_machines = data.get("machines")
    if not isinstance(raw_machines, list) or not raw_machines:
        raise LabError(f"{where}: 'machines' must be a non-empty list")
    machines: list[Machine] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_machines, 1):
        mwhere = f"{where}: machine #{i}"
        if not isinstance(raw, dict):
            raise LabError(f"{mwhere}: expected a mapping with name, memory_mb, cpus, swap_mb")
        name = raw.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise LabError(f"{mwhere}: name {name!r} must be lower-case letters, digits and '-', "
                           "starting with a letter, at most 31 characters")
        mwhere = f"{where}: machine {name!r}"
        unknown = set(raw) - MACHINE_KEYS
        if unknown:
            raise LabError(f"{mwhere}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                           f"(allowed: {', '.join(sorted(MACHINE_KEYS))})")
        if name in seen:
            raise LabError(f"{mwhere}: duplicate machine name")
        seen.add(name)
        merged = {**defaults, **raw}
        if "memory_mb" not in merged:
            raise LabError(f"{mwhere}: memory_mb is missing")
        machines.append(Machine(
            name=name,
            memory_mb=_int_field(mwhere, "memory_mb", merged["memory_mb"], MIN_MEMORY_MB, MAX_MEMORY_MB),
            cpus=_int_field(mwhere, "cpus", merged["cpus"], 1, MAX_CPUS),
            swap_mb=_int_field(mwhere, "swap_mb", merged["swap_mb"], 0, MAX_SWAP_MB),
            suite=_choice_field(mwhere, "suite", merged["suite"], SUITES),
        ))
    lab_name = data.get("name", path.resolve().stem)
    if not isinstance(lab_name, str) or not NAME_RE.match(lab_name):
        raise LabError(f"{where}: lab name {lab_name!r} must be lower-case letters, digits and '-'")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise LabError(f"{where}: description must be a string")
    return Lab(name=lab_name, path=path, machines=tuple(machines), description=description)


def load_lab(arg: str | os.PathLike | None = None) -> Lab:
    path = resolve_lab_path(arg)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LabError(f"{path}: lab file not found") from None
    except OSError as e:
        raise LabError(f"{path}: cannot read lab file: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise LabError(f"{path}{loc}: not valid YAML: {problem}") from None
    return parse_lab(data, path)
