"""The main job, end to end on the local default testbed (run by ./run.sh).

image -> boot -> setup -> Case Study 2 sweep -> collect -> analysis -> shutdown.
The VMs are stopped whatever happens. Each step's time is printed at the end,
so a user sees where the time goes.
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


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


class StepFailed(RuntimeError):
    pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="./run.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", metavar="FILE", help="lab file (default: $THRASHLAB_LAB, else lab.yml)")
    parser.add_argument("--keep", action="store_true", help="leave the VMs running at the end")
    args = parser.parse_args(argv)

    progress = Progress()
    try:
        lab = load_lab(args.lab)
    except LabError as e:
        print(f"run: error: {e}", file=sys.stderr)
        return 2
    os.environ["THRASHLAB_LAB"] = str(lab.path)
    timings: list[tuple[str, float]] = []
    if os.environ.get("THRASHLAB_INSTALL_SECONDS", "").isdigit():  # measured by run.sh
        timings.append(("install (apt, virtualenv)", float(os.environ["THRASHLAB_INSTALL_SECONDS"])))

    def step(name: str, func):
        progress.say(f"== {name}")
        started = time.monotonic()
        try:
            return func()
        finally:
            timings.append((name, time.monotonic() - started))

    def playbook(path: str, *extra: str):
        def run_it():
            proc = subprocess.run([_tool("ansible-playbook"), path, *extra], cwd=REPO_ROOT)
            if proc.returncode != 0:
                raise StepFailed(f"ansible-playbook {path} failed (exit {proc.returncode})")
        return run_it

    from localvm.image import build_image
    from localvm.testbed import Testbed, TestbedError
    bed = Testbed(lab, progress)
    status = 0
    try:
        image = step("image", lambda: build_image(progress=progress))
        step("boot", lambda: bed.up(image))
        step("setup", playbook("playbooks/setup.yml"))
        # The same plays as run-case2.yml, as separate steps so that each is timed.
        run_id = time.strftime("%Y%m%d-%H%M%S-case2", time.gmtime())
        step("case study 2 sweep", playbook("playbooks/case2.yml", "-e", f"thrashlab_run_id={run_id}"))
        step("collect", _command([sys.executable, "-m", "collector", "pull", "--run", run_id,
                                  "--expect-case", "case2"]))
        step("analysis", _analysis())
    except (StepFailed, TestbedError) as e:
        progress.say(f"FAILED: {e}")
        status = 1
    except KeyboardInterrupt:
        progress.say("interrupted")
        status = 130
    finally:
        if args.keep and status == 0:
            progress.say("VMs left running (--keep); stop them with `python -m localvm down`")
        else:
            step("shutdown", lambda: bed.down())
    total = sum(t for _, t in timings)
    print("\nwhere the time went:", file=sys.stderr)
    for name, t in timings:
        print(f"  {name:<36} {format_duration(t):>8}", file=sys.stderr)
    print(f"  {'total':<36} {format_duration(total):>8}", file=sys.stderr)
    return status


def _command(argv: list[str]):
    def run_it():
        proc = subprocess.run(argv, cwd=REPO_ROOT)
        if proc.returncode != 0:
            raise StepFailed(f"{' '.join(argv[1:4])} failed (exit {proc.returncode})")
    return run_it


def _analysis():
    compare = _command([sys.executable, "-m", "analysis", "compare"])
    report = _command([sys.executable, "-m", "analysis", "report"])

    def run_it():
        compare()
        report()
    return run_it


if __name__ == "__main__":
    sys.exit(main())
