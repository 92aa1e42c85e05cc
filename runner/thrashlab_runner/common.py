"""What every module shares: the runner's version, its errors, its log and
its clock."""
from __future__ import annotations

import datetime
import json
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


# The last lines of every step's output, what the playbooks read (their
# filter_plugins/thrashlab_runner.py): `THRASHLAB-SUMMARY <one line>` (on
# success) and `THRASHLAB-RESULT <one JSON object>`.
RESULT_MARK = "THRASHLAB-RESULT "
SUMMARY_MARK = "THRASHLAB-SUMMARY "


def result_text(result: dict) -> str:
    """A step's last lines for its result (its "summary" popped into the
    SUMMARY line; an {"error": ...} result has none)."""
    result = dict(result)
    summary = result.pop("summary", "")
    return (SUMMARY_MARK + summary + "\n" if summary else "") + RESULT_MARK + json.dumps(result) + "\n"


def log(msg: str) -> None:
    print("runner: " + msg, file=sys.stderr, flush=True)
