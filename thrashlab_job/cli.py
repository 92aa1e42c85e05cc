"""``thrashlab COMMAND [ARGS...]``: one command for the project's tools.

Each command runs an existing module's ``main`` with the remaining arguments
unchanged (``thrashlab compare --json`` is ``python -m analysis compare
--json``), so every option, message and exit status is that module's.
It imports a command's module only when that command runs, so --help and
--version load none of localvm, collector or analysis.
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

from thrashlab.lab import REPO_ROOT


@dataclass(frozen=True)
class Command:
    module: str          # whose main(argv) runs the command
    prefix: tuple        # arguments put before the user's
    summary: str


COMMANDS = {
    "run": Command("thrashlab_job.main", (), "the main job: boot, set up, Case Study 2 sweep, collect, compare, "
                                         "stop (./run.sh without the install step)"),
    "bench": Command("thrashlab_job.bench", (), "the benchmark of the testbed itself, end to end (./bench.sh "
                                            "without the install step)"),
    "up": Command("localvm.__main__", ("up",), "boot every machine of the lab (python -m localvm up)"),
    "down": Command("localvm.__main__", ("down",), "stop every VM of the testbed (python -m localvm down)"),
    "status": Command("localvm.__main__", ("status",), "the testbed's VMs (python -m localvm status)"),
    "collect": Command("collector.__main__", ("pull",), "copy a run from every machine into results/ "
                                                        "(python -m collector pull)"),
    "compare": Command("analysis.__main__", ("compare",), "where each machine starts to thrash "
                                                          "(python -m analysis compare)"),
    "case1": Command("analysis.__main__", ("case1",), "Case Study 1's fault profiles (python -m analysis case1)"),
    "case2": Command("analysis.__main__", ("case2",), "Case Study 2 per machine and N (python -m analysis case2)"),
    "report": Command("analysis.__main__", ("report",), "the HTML report of a run (python -m analysis report)"),
    "export": Command("analysis.__main__", ("export",), "a run as one tidy table, one row per process "
                                                        "(python -m analysis export)"),
}


def version() -> str:
    """The installed package's version, and the checkout's git revision when there is one."""
    try:
        text = f"thrashlab {metadata.version('thrashlab')}"
    except metadata.PackageNotFoundError:
        text = "thrashlab (not installed)"
    if (REPO_ROOT / ".git").exists():
        try:
            git = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return text
        if git.returncode == 0 and git.stdout.strip():
            text += f" (git {git.stdout.strip()})"
    return text


class VersionAction(argparse.Action):
    """--version, computed only when asked (it runs git)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="thrashlab", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A lab testbed that measures where Linux virtual memory starts to thrash.",
        epilog=f"commands:\n{listing}\n\nThe arguments after COMMAND go to it unchanged: "
               f"thrashlab COMMAND --help shows its own.")
    parser.add_argument("--version", action=VersionAction, help="print the version and exit")
    parser.add_argument("command", metavar="COMMAND", choices=COMMANDS, help="one of the commands below")
    parser.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help="the command's arguments")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.error(f"give a COMMAND: {', '.join(COMMANDS)} (thrashlab --help says what each does)")
    args = parser.parse_args(argv)
    command = COMMANDS[args.command]
    return importlib.import_module(command.module).main([*command.prefix, *args.args])


if __name__ == "__main__":
    sys.exit(main())
