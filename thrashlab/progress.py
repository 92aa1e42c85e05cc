"""Progress of long work on stderr: elapsed time, which machine, which step.

Two renderings of the same calls, chosen by ``make_progress()``:

- ``Progress``: plain timestamped lines, so that CI logs, pipes and files
  read the same from run to run;
- ``LiveProgress``: in a terminal, a rich live view with a row per machine
  (its step, runs done of total, elapsed, time left) below the same lines.

``THRASHLAB_PLAIN_PROGRESS=1`` (or ``TERM=dumb``) keeps the plain lines in a
terminal too.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from datetime import timedelta
from typing import NamedTuple

PLAIN_PROGRESS_ENV = "THRASHLAB_PLAIN_PROGRESS"


def wants_live_view(stream=None) -> bool:
    """A live view only where someone watches: a terminal that can redraw,
    unless the plain lines are asked for."""
    stream = stream or sys.stderr
    return (stream.isatty() and os.environ.get("TERM") != "dumb"
            and os.environ.get(PLAIN_PROGRESS_ENV, "") in ("", "0"))


def make_progress() -> "Progress":
    return LiveProgress() if wants_live_view() else Progress()


class Progress:
    """Plain lines; the live view's extra calls do nothing here, and the
    job's children write to the terminal themselves."""
    live = False

    def __init__(self, stream=None, start: float | None = None):
        self.stream = stream or sys.stderr
        self.start = start if start is not None else time.monotonic()
        self._lock = threading.Lock()
        self._record = None

    def record_to(self, path) -> None:
        """Also append every line from now on to the file ``path`` (the job's log)."""
        self._record = open(path, "a")

    def keep(self, text: str) -> None:
        """Append ``text`` to the log file, if there is one."""
        if self._record is not None:
            self._record.write(text + "\n")
            self._record.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def line(self, message: str, machine: str | None = None) -> str:
        prefix = f"[{self.elapsed():7.1f}s]"
        who = f" {machine}:" if machine else ""
        return f"{prefix}{who} {message}"

    def say(self, message: str, machine: str | None = None) -> None:
        with self._lock:
            text = self.line(message, machine)
            print(text, file=self.stream, flush=True)
            self.keep(text)

    def begin_step(self, name: str) -> None:
        self.say(f"== {name}")

    def failed(self, message: str) -> None:
        self.say(f"FAILED: {message}")

    def add_machines(self, names: list[str]) -> None:
        """The machines the live view has a row for."""

    def showing(self):
        """A context in which the live view is on screen."""
        return contextlib.nullcontext()


class MachineEvent(NamedTuple):
    machine: str
    status: str
    done: int | None = None     # runs (loop items) done ...
    total: int | None = None    # ... of this many


class AnsibleOutput:
    """Reads ansible-playbook's default output a line at a time and says
    what each line tells about a machine: the task it finished, and for the
    loops that count their items in the label (Case Study 2's
    ``case2 N=3 repeat=1 [4/12, 1m20s] ...``, bench's ``round 3/5``), how many
    items are done of how many."""

    TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?:[^\]]* : )?(.*)\] \**$")
    # ok: [small] => (item=LABEL)   failed: [small] (item=LABEL) => {...}   fatal: [small]: FAILED! => {...}
    RESULT = re.compile(r"^(ok|changed|skipping|failed|fatal|unreachable): \[([^\]\s]+)(?: -> [^\]]*)?\]"
                        r"(?:(?: =>)? \(item=(.*)\))?")
    COUNT = re.compile(r"\b(\d+)/(\d+)\b")
    RECAP = re.compile(r"^(\S+)\s+: (ok=\d+.*)$")

    def __init__(self):
        self.task = ""

    def feed(self, line: str) -> MachineEvent | None:
        if m := self.TASK.match(line):
            self.task = m.group(1).strip()
            return None
        if m := self.RECAP.match(line):
            return MachineEvent(m.group(1), "done: " + " ".join(m.group(2).split()))
        m = self.RESULT.match(line)
        if not m:
            return None
        state, machine, item = m.groups()
        failed = state in ("failed", "fatal", "unreachable")
        status = f"{state.upper()}: {self.task}" if failed else (item or self.task)
        count = self.COUNT.search(item) if item and not failed else None
        if count:
            return MachineEvent(machine, status, int(count.group(1)), int(count.group(2)))
        return MachineEvent(machine, status)


# A plain line of a child's progress (the collector's): "[   3.2s] small: message"
PLAIN_LINE = re.compile(r"^\[\s*\d+\.\ds\] (\S+): (.*)$")


def _rich_columns():
    """The live view's columns (rich imported only when a terminal shows it)."""
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column
    from rich.text import Text

    class DoneOfTotalColumn(MofNCompleteColumn):
        """Runs done of total, for the steps that count them."""
        def render(self, task):
            return super().render(task) if task.total is not None else Text("")

    class TimeLeftColumn(ProgressColumn):
        """Time left at the pace of the runs done so far in this step."""
        def render(self, task):
            if not task.total or not task.completed or task.finished or task.elapsed is None:
                return Text("")
            left = task.elapsed * (task.total - task.completed) / task.completed
            return Text(f"~{timedelta(seconds=round(left))} left", style="progress.remaining")

    return (TextColumn("{task.description}", style="bold"),
            TextColumn("{task.fields[step]}", style="cyan"),
            BarColumn(bar_width=16),
            DoneOfTotalColumn(),
            TimeElapsedColumn(),
            TimeLeftColumn(),
            TextColumn("{task.fields[status]}", markup=False,
                       table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)))


class LiveProgress(Progress):
    """The plain lines printed above a rich live view: a first row for the
    whole job (its step, elapsed, the latest message), then a row per machine.
    Failures are printed in full once the view is gone."""
    live = True

    def __init__(self, stream=None, start: float | None = None):
        super().__init__(stream, start)
        from rich.console import Console
        from rich.progress import Progress as RichProgress
        self.console = Console(file=self.stream)
        # stdout is redirected above the view only when it shares the terminal:
        # a redirected stdout (./run.sh > out) keeps the comparison table.
        self.view = RichProgress(*_rich_columns(), console=self.console, expand=True, refresh_per_second=4,
                                 redirect_stdout=sys.stdout.isatty(), redirect_stderr=False)
        self.overall = self.view.add_task("all", total=None, step="", status="")
        self.machines: list[str] = []
        self.rows: dict[str, int] = {}
        self.failures: list[str] = []
        self.ansible = AnsibleOutput()

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def say(self, message: str, machine: str | None = None) -> None:
        text = self.line(message, machine)
        self._print(text)
        self.keep(text)
        self._status(machine, message)

    def _status(self, machine: str | None, status: str, done: int | None = None, total: int | None = None):
        row = self.rows.get(machine) if machine else self.overall
        if row is None:
            return  # not a machine of the lab (e.g. Ansible's localhost)
        self.view.update(row, status=status.splitlines()[0] if status else "", total=total, completed=done)

    def add_machines(self, names: list[str]) -> None:
        self.machines = list(names)
        self._new_rows("")

    def _new_rows(self, step: str) -> None:
        # Fresh rows (rich cannot take a total back): counts and clocks start again.
        for row in self.rows.values():
            self.view.remove_task(row)
        self.rows = {name: self.view.add_task(name, total=None, step=step, status="")
                     for name in self.machines}

    def begin_step(self, name: str) -> None:
        text = self.line(f"== {name}")
        self._print(text)
        self.keep(text)
        self.view.update(self.overall, step=name, status="")
        self._new_rows(name)

    def failed(self, message: str) -> None:
        self.failures.append(self.line(f"FAILED: {message}"))
        self.keep(self.failures[-1])
        self._status(None, f"FAILED: {message}")

    @contextlib.contextmanager
    def showing(self):
        self.view.start()
        try:
            yield
        finally:
            self.view.stop()
            for failure in self.failures:
                self._print(failure)
            self.failures.clear()

    def ansible_line(self, line: str) -> None:
        """A line of ansible-playbook's output, which the view hides (the job keeps it in a log)."""
        if event := self.ansible.feed(line):
            self._status(event.machine, event.status, event.done, event.total)

    def relay(self, line: str) -> None:
        """A line of a child's stderr (the collector's progress, errors), shown above the view."""
        self._print(line)
        self.keep(line)
        if m := PLAIN_LINE.match(line):
            self._status(m.group(1), m.group(2))


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s"
