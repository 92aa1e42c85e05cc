"""The steps of a job on the local testbed, timed: shared by the main job
(thrashlab.main) and the benchmark (thrashlab.bench).

Each step prints its name with the elapsed time, runs, and adds its wall time
to ``timings``; the job prints where the time went at the end. The VMs are
stopped whatever happens unless the caller keeps them.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .lab import REPO_ROOT, LabError, load_lab
from .progress import Progress, format_duration

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A program of this virtualenv (ansible-playbook), else from PATH."""
    path = BIN / name
    return str(path) if path.exists() else name


class StepFailed(RuntimeError):
    pass


def job_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The options every job on the local testbed has: --lab and --keep."""
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", metavar="FILE", help="lab file (default: $THRASHLAB_LAB, else lab.yml)")
    parser.add_argument("--keep", action="store_true", help="leave the VMs running at the end")
    return parser


class Job:
    def __init__(self, progress: Progress | None = None):
        self.progress = progress or Progress()
        self.timings: list[tuple[str, float]] = []
        if os.environ.get("THRASHLAB_INSTALL_SECONDS", "").isdigit():  # measured by run.sh / bench.sh
            self.timings.append(("install", float(os.environ["THRASHLAB_INSTALL_SECONDS"])))

    def open_lab(self, path: str | None, who: str):
        """The lab file, exported for every tool the job starts; None (after
        the message) when it is missing or invalid."""
        try:
            lab = load_lab(path)
        except LabError as e:
            print(f"{who}: error: {e}", file=sys.stderr)
            return None
        os.environ["THRASHLAB_LAB"] = str(lab.path)
        return lab

    def bring_up(self, bed, *setup_extra: str) -> dict:
        """The first steps of every job: image, boot (the testbed's state is
        returned), setup."""
        images = self.step("image", bed.images)
        state = self.step("boot", lambda: bed.up(images))
        self.step("setup", self.playbook("playbooks/setup.yml", *setup_extra))
        return state or {}

    def step(self, name: str, func):
        self.progress.say(f"== {name}")
        started = time.monotonic()
        try:
            return func()
        finally:
            self.timings.append((name, time.monotonic() - started))

    def command(self, argv: list[str]):
        """A step function that runs argv in the repository and fails on a non-zero exit."""
        def run_it():
            proc = subprocess.run(argv, cwd=REPO_ROOT)
            if proc.returncode != 0:
                shown = argv[1:4] if argv[0] == sys.executable else argv[:3]
                raise StepFailed(f"{' '.join(shown)} failed (exit {proc.returncode})")
        return run_it

    def playbook(self, path: str, *extra: str):
        return self.command([tool("ansible-playbook"), path, *extra])

    def run_on(self, bed, body, keep: bool = False) -> int:
        """Run ``body()`` (its steps) on the testbed ``bed``; stop the VMs
        whatever happens (unless ``keep`` and all went well), print where the
        time went, and return the exit status: 0, 1 on a failed step, 130 on ^C."""
        from localvm.testbed import TestbedError
        status = 0
        try:
            body()
        except (StepFailed, TestbedError) as e:
            self.progress.say(f"FAILED: {e}")
            status = 1
        except KeyboardInterrupt:
            self.progress.say("interrupted")
            status = 130
        finally:
            if keep and status == 0:
                self.progress.say("VMs left running (--keep); stop them with `python -m localvm down`")
            else:
                self.step("shutdown", lambda: bed.down())
        self.report()
        return status

    def report(self) -> None:
        total = sum(t for _, t in self.timings)
        print("\nwhere the time went:", file=sys.stderr)
        for name, t in self.timings:
            print(f"  {name:<36} {format_duration(t):>8}", file=sys.stderr)
        print(f"  {'total':<36} {format_duration(total):>8}", file=sys.stderr)
