# A small timing callback for thrashlab (ansible-core only ships no timing
# callback; ansible.posix's profile_tasks does more and needs the collection).
# Enabled by ansible.cfg (callbacks_enabled = thrashlab_timer); silenced for
# one run with THRASHLAB_TIMER=0.
from __future__ import annotations

DOCUMENTATION = r"""
name: thrashlab_timer
type: aggregate
short_description: Prints the elapsed time at each task and the slowest tasks at the end
description:
  - Under each task banner, the time since the start of the run.
  - At the end, the wall time of the run and its slowest tasks (a task's time runs from its
    start to the start of the next one, across all hosts).
options:
  enabled:
    description: Print anything at all.
    type: bool
    default: true
    env:
      - name: THRASHLAB_TIMER
  slowest:
    description: How many of the slowest tasks to list at the end (0 lists none).
    type: int
    default: 8
    env:
      - name: THRASHLAB_TIMER_SLOWEST
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
"""

import time

from ansible.plugins.callback import CallbackBase


def _fmt(seconds):
    minutes, sec = divmod(seconds, 60)
    return "%d:%05.2f" % (minutes, sec) if minutes else "%.2fs" % sec


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "thrashlab_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._start = time.monotonic()
        self._current = None  # (label, started)
        self._durations = []  # [(seconds, label)]

    def _close_current(self):
        now = time.monotonic()
        if self._current is not None:
            label, started = self._current
            self._durations.append((now - started, label))
            self._current = None
        return now

    def _task_start(self, task):
        now = self._close_current()
        label = task.get_name().strip()
        self._current = (label, now)
        if self.get_option("enabled"):
            self._display.display("elapsed %s" % _fmt(now - self._start), color="bright gray")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task)

    def v2_playbook_on_stats(self, stats):
        now = self._close_current()
        if not self.get_option("enabled"):
            return
        slowest = self.get_option("slowest")
        if slowest and self._durations:
            self._display.banner("SLOWEST TASKS")
            for seconds, label in sorted(self._durations, key=lambda d: d[0], reverse=True)[:slowest]:
                self._display.display("%10s  %s" % (_fmt(seconds), label))
        self._display.display("Playbook run took %s" % _fmt(now - self._start))
