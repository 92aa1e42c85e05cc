"""The command lines around the modules, without VMs: the ``thrashlab`` console
script (thrashlab_job/cli.py) and ``./run.sh -e VAR=VALUE`` down to the playbooks."""
import os
import shutil
import subprocess
import sys
from importlib import import_module, metadata
from pathlib import Path

import pytest

from thrashlab_job import cli

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = "tests/fixtures/results/good"
# The console script of the virtualenv: scripts/install.sh makes it (pip install -e).
THRASHLAB = Path(sys.executable).parent / "thrashlab"


def thrashlab(*args):
    assert THRASHLAB.exists(), f"{THRASHLAB} missing: run scripts/install.sh (pyproject's [project.scripts])"
    return subprocess.run([str(THRASHLAB), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_version_is_the_package_version_and_the_checkout_revision():
    p = thrashlab("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"thrashlab {metadata.version('thrashlab')}")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (not an unpacked tarball)
        assert f"(git {head.stdout.strip()[:12]}" in p.stdout


def test_help_lists_every_command_with_one_line():
    p = thrashlab("--help")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for name, command in cli.COMMANDS.items():
        listed = [line for line in lines if line.split()[:1] == [name]]
        assert len(listed) == 1, f"{name} not listed once in:\n{p.stdout}"
        assert command.summary in listed[0]


def test_compare_prints_what_python_m_analysis_prints():
    ours = thrashlab("compare", FIXTURE, "--no-plots")
    theirs = subprocess.run([sys.executable, "-m", "analysis", "compare", FIXTURE, "--no-plots"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert (ours.stdout, ours.stderr) == (theirs.stdout, theirs.stderr)
    assert "small" in ours.stdout


def test_an_unknown_command_or_none_is_a_usage_error():
    for args in (("nope",), ()):
        p = thrashlab(*args)
        assert p.returncode == 2
        assert "thrashlab: error:" in p.stderr and "compare" in p.stderr


def test_importing_the_cli_imports_no_command_module():
    # The cli imports a command's module only when it runs: --help and --version stay light.
    code = ("import sys, thrashlab_job.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('localvm', 'collector', 'analysis')))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout.strip()) == (0, "[]"), p.stderr


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_passes_its_arguments_unchanged(name, monkeypatch):
    command = cli.COMMANDS[name]
    received = []
    monkeypatch.setattr(import_module(command.module), "main", lambda argv: received.append(argv) or 7)
    args = ["--lab", "labs/trio.yml", "-e", "case2_repeats=3", "-e", '{"case2_n_values": [1, 2]}', "--json"]
    assert cli.main([name, *args]) == 7
    assert received == [[*command.prefix, *args]]


class FakeTestbed:
    """Stands for localvm.testbed.Testbed: no image, no VM."""

    def __init__(self, lab, progress):
        self.lab = lab

    def images(self):
        return {}

    def up(self, images):
        return {"accelerator": "tcg"}

    def down(self):
        pass


def test_run_passes_e_values_to_every_playbook(monkeypatch):
    # thrashlab_job.main with the testbed faked and every command recorded instead of run.
    import localvm.testbed
    import thrashlab_job.job
    import thrashlab_job.main

    commands = []
    monkeypatch.setattr(localvm.testbed, "Testbed", FakeTestbed)
    # thrashlab_job.job's subprocess is the global module: restored by monkeypatch at the end.
    monkeypatch.setattr(thrashlab_job.job.subprocess, "run",
                        lambda argv, **kw: commands.append(argv) or subprocess.CompletedProcess(argv, 0))
    monkeypatch.setenv("THRASHLAB_LAB", str(ROOT / "lab.yml"))  # restored after: open_lab exports it
    monkeypatch.setenv("THRASHLAB_PLAIN_PROGRESS", "1")  # the live view (pytest -s in a terminal) streams instead
    extra = ["-e", "case2_repeats=3", "-e", '{"case2_n_values": [1, 2]}']
    assert thrashlab_job.main.main(["--lab", str(ROOT / "labs" / "default.yml"), *extra]) == 0
    playbooks = {Path(argv[1]).name: argv[2:] for argv in commands if argv[0].endswith("ansible-playbook")}
    assert set(playbooks) == {"setup.yml", "case2.yml"}
    for name, args in playbooks.items():
        assert args[-len(extra):] == extra, name


def test_run_sh_hands_its_arguments_to_the_main_job_unchanged(tmp_path):
    # run.sh and scripts/launch.sh copied beside a no-op install and a python that echoes its argv.
    (tmp_path / "scripts").mkdir()
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "run.sh", tmp_path / "run.sh")
    shutil.copy(ROOT / "scripts" / "launch.sh", tmp_path / "scripts" / "launch.sh")
    fakes = {"scripts/install.sh": "#!/bin/sh\nexit 0\n",
             ".venv/bin/python": "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n"}
    for path, text in fakes.items():
        (tmp_path / path).write_text(text)
        os.chmod(tmp_path / path, 0o755)
    args = ["--lab", "labs/trio.yml", "-e", "case2_repeats=3", "-e", '{"case2_n_values": [1, 2]}', "--keep"]
    p = subprocess.run([str(tmp_path / "run.sh"), *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["-m", "thrashlab_job.main", *args]
