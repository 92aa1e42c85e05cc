"""Shared fixtures: the local testbed is booted once per test session.

- ``testbed``: the lab's VMs up (``localvm up``), shared by every VM test;
  stopped at the end of the session (set THRASHLAB_KEEP_VMS=1 to keep them
  for the next run while iterating).
- ``provisioned``: the same testbed after ``ansible-playbook playbooks/setup.yml``
  (swap, sources copied, module and workloads built, pfprof loaded), run
  twice in a row for the idempotency check (a job's own set-up step on the
  fresh testbed counts as the first run: see test_bench_vm.py).

The lab is ``$THRASHLAB_TEST_LAB`` or the repository's default lab.

- ``newer_kernels``: a second testbed, tests/labs/newer-kernels.yml (trixie's
  6.12 and sid's 7.x, with zram, zswap, MGLRU forced and sysctls), booted and
  provisioned (one set-up run) on first use, stopped at the end of the session.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A command of the test's virtualenv (ansible-playbook, ansible-lint...)."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else name


def run(cmd, env=None, timeout=1800, **kw) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, cwd=REPO, env=full_env, text=True, capture_output=True,
                          timeout=timeout, **kw)


def selected_lab_path() -> Path:
    return Path(os.environ.get("THRASHLAB_TEST_LAB") or REPO / "lab.yml").absolute()


def pytest_collection_modifyitems(config, items):
    # Tests marked on_demand("VAR") run only when $VAR is set (longer
    # matrices, documented in the README); otherwise they are deselected, not
    # skipped (a skip fails the run under THRASHLAB_REQUIRE_ALL=1).
    wanted = [i for i in items if not (m := i.get_closest_marker("on_demand")) or os.environ.get(m.args[0])]
    if len(wanted) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in wanted])
        items[:] = wanted
    # Tests that stop the shared testbed run after every other test of it; the
    # second testbed's (newer_kernels) after those, so that the two are never
    # up at once on a small host.
    items.sort(key=lambda item: (1 if "newer_kernels" in getattr(item, "fixturenames", ()) else 0,
                                 1 if item.get_closest_marker("teardown_last") else 0))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # ./test.sh (and CI) installs every prerequisite and sets
    # THRASHLAB_REQUIRE_ALL=1: a test that would skip there fails instead, so
    # that a green run really ran everything (compile matrix, Vagrant, sshd...).
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("THRASHLAB_REQUIRE_ALL") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where every test must run (THRASHLAB_REQUIRE_ALL=1): {reason}"


def pytest_configure(config):
    config.addinivalue_line("markers", "teardown_last: runs after every other test (stops the testbed)")
    config.addinivalue_line("markers", "on_demand(var): runs only when the environment variable var is set")


def require(ok: bool, missing: str) -> None:
    """Skip without the prerequisite; under THRASHLAB_REQUIRE_ALL=1 the skip
    is a failure (pytest_runtest_makereport above)."""
    if not ok:
        pytest.skip(missing)


@pytest.fixture(scope="session")
def lab_env() -> dict:
    return {"THRASHLAB_LAB": str(selected_lab_path())}


@pytest.fixture(scope="session")
def testbed(lab_env):
    from localvm.testbed import Testbed
    from thrashlab.lab import load_lab
    from thrashlab.progress import Progress

    os.environ.update(lab_env)  # the inventory, ansible and the collector read it
    bed = Testbed(load_lab(selected_lab_path()), Progress(stream=sys.stderr))
    bed.up()
    # The output of every set-up run on these machines so far, when the
    # session knows it (provisioned below, and a job's own set-up step).
    bed.setup_runs = []
    yield bed
    if not os.environ.get("THRASHLAB_KEEP_VMS"):
        bed.down(quiet=True)


def first_playbook_output(output: str, play: str = "Set up the lab machines") -> str:
    """The first playbook's output in a job's stdout (up to the end of its
    PLAY RECAP); it must be the one whose play is ``play``."""
    head, sep, tail = output.partition("PLAY RECAP")
    assert sep and f"PLAY [{play}]" in head, output[-3000:]
    return head + sep + tail.split("\n\n", 1)[0] + "\n"


@pytest.fixture(scope="session")
def provisioned(testbed, lab_env):
    # Two set-up runs in a row: the second is the idempotency check of
    # test_testbed_vm.py, taken before other tests touch the machines. A job
    # that set up this testbed first in the session (the benchmark's of
    # test_bench_vm.py, the first VM test) counts as the first run: one run
    # here is then the second.
    runs = testbed.setup_runs
    while len(runs) < 2:
        proc = run([tool("ansible-playbook"), "playbooks/setup.yml"], env=lab_env)
        assert proc.returncode == 0, f"setup playbook failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        runs.append(proc.stdout)
    testbed.setup_output, testbed.setup_again_output = runs[:2]
    return testbed


NEWER_KERNELS_LAB = REPO / "tests" / "labs" / "newer-kernels.yml"


class LabBed:
    """A testbed of another lab file than the session's, with its own environment."""

    def __init__(self, bed, env: dict):
        self.bed, self.env = bed, env
        self.setup_outputs: list[str] = []

    def playbook(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
        return run([tool("ansible-playbook"), *args], env=self.env, timeout=timeout)


@pytest.fixture(scope="session")
def newer_kernels():
    from localvm.testbed import Testbed
    from thrashlab.lab import load_lab
    from thrashlab.progress import Progress

    bed = Testbed(load_lab(NEWER_KERNELS_LAB), Progress(stream=sys.stderr))
    bed.up()
    lab = LabBed(bed, {"THRASHLAB_LAB": str(NEWER_KERNELS_LAB)})
    try:
        # Once: the second run, the idempotency check, is the set-up play of
        # test_machines_vm.py's run-case2.yml, right after this one.
        proc = lab.playbook("playbooks/setup.yml")
        assert proc.returncode == 0, f"setup playbook failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        lab.setup_outputs.append(proc.stdout)
        yield lab
    finally:
        if not os.environ.get("THRASHLAB_KEEP_VMS"):
            bed.down(quiet=True)
