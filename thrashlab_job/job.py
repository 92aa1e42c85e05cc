"""The steps of a job on the local testbed, timed: shared by the main job
(thrashlab_job.main) and the benchmark (thrashlab_job.bench).

Each step prints its name with the elapsed time, runs, and adds its wall time
to ``timings``; the job prints where the time went at the end. The VMs are
stopped whatever happens unless the caller keeps them.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from thrashlab.lab import REPO_ROOT, LabError, load_lab
from thrashlab.paths import results_root
from thrashlab.progress import Progress, format_duration, make_progress

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A program of this virtualenv (ansible-playbook), else from PATH."""
    path = BIN / name
    return str(path) if path.exists() else name


class StepFailed(RuntimeError):
    pass


def job_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The options every job on the local testbed has: --lab, --keep and -e."""
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", metavar="FILE", help="lab file (default: $THRASHLAB_LAB, else lab.yml)")
    parser.add_argument("--keep", action="store_true", help="leave the VMs running at the end")
    parser.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VAR=VALUE",
                        help="an Ansible variable for every playbook (repeatable, as ansible-playbook's -e), "
                             "e.g. case2_repeats=3")
    return parser


def extra_vars(args) -> list[str]:
    """``-e`` options as ansible-playbook arguments."""
    return [a for v in args.extra_vars for a in ("-e", v)]


class Job:
    def __init__(self, progress: Progress | None = None):
        self.progress = progress or make_progress()
        # Where Ansible's output goes when a live view hides it, until the job
        # names its run (name_run): then results/.logs/<run>/, which the
        # collector copies into results/<run>/logs/.
        self.stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        self.log_dir = results_root() / "logs" / self.stamp
        self.run_id: str | None = None
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
        self.progress.add_machines(lab.names)
        return lab

    def name_run(self, run_id: str) -> None:
        """The job's run: its log (every progress line) and Ansible's output
        go with the run's results (results/<run>/logs/ once collected)."""
        from collector.logs import pending_dir
        self.run_id = run_id
        self.log_dir = pending_dir(results_root(), run_id)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.progress.record_to(self.log_dir / f"{self.stamp}-job.log")
        self.progress.say(f"run {run_id}: its logs in {self.log_dir} until collected")

    def attach_logs(self) -> None:
        """Put the job's complete logs with its collected run (listed in the manifest)."""
        if self.run_id is None:
            return
        from collector.logs import attach
        attach(results_root() / self.run_id, sorted(self.log_dir.glob(f"{self.stamp}-*.log")))

    def bring_up(self, bed, *setup_extra: str) -> dict:
        """The first steps of every job: image, boot (the testbed's state is
        returned), setup."""
        images = self.step("image", bed.images)
        state = self.step("boot", lambda: bed.up(images))
        self.step("setup", self.playbook("playbooks/setup.yml", *setup_extra))
        return state or {}

    def step(self, name: str, func):
        self.progress.begin_step(name)
        started = time.monotonic()
        try:
            return func()
        finally:
            self.timings.append((name, time.monotonic() - started))

    def command(self, argv: list[str], log_name: str | None = None):
        """A step function that runs argv in the repository and fails on a
        non-zero exit. Under a live view, its output is streamed into the
        view, or with ``log_name`` (Ansible's) into ``log_dir/log_name.log``."""
        def run_it():
            details = ""
            if not self.progress.live:
                returncode = subprocess.run(argv, cwd=REPO_ROOT).returncode
            elif log_name:
                log = self.log_dir / f"{log_name}.log"
                returncode = self._run_into_log(argv, log)
                details = failure_details(log) if returncode != 0 else ""
            else:
                returncode = self._run_relayed(argv)
            if returncode != 0:
                shown = argv[1:4] if argv[0] == sys.executable else argv[:3]
                raise StepFailed(f"{' '.join(shown)} failed (exit {returncode}){details}")
        return run_it

    def playbook(self, path: str, *extra: str):
        return self.command([tool("ansible-playbook"), path, *extra], log_name=f"{self.stamp}-{Path(path).stem}")

    def _run_into_log(self, argv: list[str], log: Path) -> int:
        """argv with its output in ``log``, every line also read by the live view."""
        log.parent.mkdir(parents=True, exist_ok=True)
        self.progress.say(f"full output: {log}")
        with log.open("w") as out, subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                                    stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
            try:
                for line in proc.stdout:
                    out.write(line)
                    out.flush()
                    self.progress.ansible_line(line.rstrip("\n"))
            except BaseException:
                proc.kill()  # as subprocess.run does on ^C
                raise
        return proc.returncode

    def _run_relayed(self, argv: list[str]) -> int:
        """argv with its stdout on ours (the comparison table) and its stderr
        (progress lines, errors) printed above the live view."""
        with subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, errors="replace") as proc:
            def relay_stderr():
                for line in proc.stderr:
                    self.progress.relay(line.rstrip("\n"))
            relay = threading.Thread(target=relay_stderr, daemon=True)
            relay.start()
            try:
                for line in proc.stdout:
                    sys.stdout.write(line)
                sys.stdout.flush()
            except BaseException:
                proc.kill()
                raise
            relay.join()
        return proc.returncode

    def run_on(self, bed, body, keep: bool = False) -> int:
        """Run ``body()`` (its steps) on the testbed ``bed``; stop the VMs
        whatever happens (unless ``keep`` and all went well), print where the
        time went, and return the exit status: 0, 1 on a failed step, 130 on ^C."""
        from localvm.testbed import TestbedError
        status = 0
        with self.progress.showing():
            try:
                body()
            except (StepFailed, TestbedError) as e:
                self.progress.failed(str(e))
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
        self.attach_logs()
        return status

    def report(self) -> None:
        # The same lines in a terminal: tests and CI logs read them.
        total = sum(t for _, t in self.timings)
        lines = ["", "where the time went:"] + [f"  {name:<36} {format_duration(t):>8}" for name, t in self.timings]
        lines.append(f"  {'total':<36} {format_duration(total):>8}")
        for line in lines:
            print(line, file=sys.stderr)
            self.progress.keep(line)


# The lines of an Ansible log that name a failure.
FAILURE_LINE = ("fatal:", "failed:", "ERROR!", "[ERROR]")


def failure_details(log: Path, tail: int = 20) -> str:
    """What a failed playbook's log says: its failure lines and the recap
    (its last lines when no line names a failure), and where the log is."""
    lines = log.read_text(errors="replace").splitlines()
    recap = next((i for i, line in enumerate(lines) if line.startswith("PLAY RECAP")), len(lines))
    failures = [line for line in lines[:recap] if line.startswith(FAILURE_LINE)]
    shown = failures + lines[recap:] if failures else lines[-tail:]
    return "\n" + "\n".join(shown).rstrip() + f"\nfull output: {log}"
