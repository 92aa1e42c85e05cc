"""The lab file: loading, defaults, and the errors a user sees."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from thrashlab.lab import MIN_MEMORY_MB, LabError, load_lab, resolve_lab_path

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "lab.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_lab_is_the_small_preset():
    lab = load_lab(REPO / "lab.yml")
    assert lab.name == "default"
    assert [(m.name, m.memory_mb, m.swap_mb, m.cpus) for m in lab.machines] == [
        ("small", 256, 512, 1), ("large", 512, 512, 1)]


def test_every_preset_loads():
    presets = sorted((REPO / "labs").glob("*.yml"))
    assert {p.stem for p in presets} >= {"default", "classic"}
    for p in presets:
        lab = load_lab(p)
        assert lab.machines
    classic = load_lab(REPO / "labs" / "classic.yml")
    assert [m.memory_mb for m in classic.machines] == [1024, 2048, 4096]
    assert {m.swap_mb for m in classic.machines} == {2048}


def test_defaults_apply_and_machine_values_win(tmp_path):
    lab = load_lab(write(tmp_path, """
defaults: {cpus: 2, swap_mb: 1024}
machines:
  - {name: a, memory_mb: 300}
  - {name: b, memory_mb: 400, cpus: 1, swap_mb: 0}
"""))
    assert [(m.cpus, m.swap_mb) for m in lab.machines] == [(2, 1024), (1, 0)]
    assert lab.name == "lab"  # from the file name


def test_suite_defaults_to_bookworm_and_lists_each_suite_once(tmp_path):
    lab = load_lab(write(tmp_path, """
defaults: {suite: trixie}
machines:
  - {name: a, memory_mb: 256}
  - {name: b, memory_mb: 256, suite: sid}
  - {name: c, memory_mb: 256, suite: trixie}
"""))
    assert [m.suite for m in lab.machines] == ["trixie", "sid", "trixie"]
    assert lab.suites == ["trixie", "sid"]
    assert load_lab(REPO / "lab.yml").suites == ["bookworm"]


def test_env_variable_selects_the_lab(tmp_path, monkeypatch):
    path = write(tmp_path, "machines: [{name: only, memory_mb: 256}]\n", "mine.yml")
    monkeypatch.setenv("THRASHLAB_LAB", str(path))
    assert load_lab().names == ["only"]
    assert resolve_lab_path("other.yml").name == "other.yml"  # --lab wins over the variable


@pytest.mark.parametrize("text, message", [
    ("machines: [{name: a, memory_mb: 256, ram: 3}]", "machine 'a': unknown key(s) ram"),
    ("machines: [{name: a, memory_mb: 256}, {name: a, memory_mb: 512}]", "machine 'a': duplicate machine name"),
    (f"machines: [{{name: a, memory_mb: {MIN_MEMORY_MB - 1}}}]",
     f"machine 'a': memory_mb is {MIN_MEMORY_MB - 1}, at least {MIN_MEMORY_MB} is needed (too small to boot"),
    ("machines: [{name: a, memory_mb: '256'}]", "machine 'a': memory_mb must be an integer, got '256'"),
    ("machines: [{name: a, memory_mb: 256, cpus: 0}]", "machine 'a': cpus is 0, at least 1 is needed"),
    ("machines: [{name: a, memory_mb: 256, swap_mb: -1}]", "machine 'a': swap_mb is -1, at least 0"),
    ("machines: [{name: Big_One, memory_mb: 256}]", "machine #1: name 'Big_One' must be lower-case"),
    ("machines: [{name: a}]", "machine 'a': memory_mb is missing"),
    ("machines: []", "'machines' must be a non-empty list"),
    ("vms: []", "unknown key(s) vms"),
    ("defaults: {ram: 1}\nmachines: [{name: a, memory_mb: 256}]", "unknown key(s) in defaults: ram"),
    ("- just a list", "expected a mapping"),
    ("machines: [{name: a, memory_mb: 256, suite: buster}]",
     "machine 'a': suite is 'buster', expected one of bookworm, trixie, sid"),
    ("defaults: {suite: 12}\nmachines: [{name: a, memory_mb: 256}]", "machine 'a': suite is 12, expected one of"),
    ("machines: [{name: a, memory_mb: 256}\n", "not valid YAML"),
])
def test_bad_lab_files_say_where_and_why(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(LabError) as err:
        load_lab(path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(LabError, match="lab file not found"):
        load_lab(tmp_path / "nope.yml")


def test_cli_reports_lab_errors_without_traceback(tmp_path):
    path = write(tmp_path, "machines: [{name: a, memory_mb: 64}]")
    proc = subprocess.run([sys.executable, "-m", "localvm", "--lab", str(path), "status"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"localvm: error: {path}: machine 'a': memory_mb is 64")
    assert "Traceback" not in proc.stderr
