"""What every module shares: the runner's version, its errors, its log and
its clock."""
from __future__ import annotations

import datetime
import sys

RUNNER_VERSION = 1

# UTC time this runner process started: set by cli.main, read at the time of
# writing (as common.RUNNER_STARTED, never imported by value).
RUNNER_STARTED = None


class RunnerError(Exception):
    """An error that stops the step; the message says what and where."""


class Interrupted(Exception):
    pass


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def log(msg: str) -> None:
    print("runner: " + msg, file=sys.stderr, flush=True)
