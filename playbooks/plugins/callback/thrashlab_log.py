# Keeps the controller's record of a playbook run with the run's results
# (issue 17): every task, every host's outcome with the runner's summary or
# the error, and the recap, one timestamped line each. Enabled by ansible.cfg
# (callbacks_enabled); THRASHLAB_LOG=0 turns it off for one run.
from __future__ import annotations

DOCUMENTATION = r"""
name: thrashlab_log
type: notification
short_description: Writes the playbook's log under the results of the run it belongs to
description:
  - Once the run is named (the thrashlab_run_id fact of the case playbooks' first play), the log is
    written to results/.logs/<run id>/ as the playbook goes (a controller killed half way leaves it
    there); the collector copies it into results/<run id>/logs/ and lists it in the manifest.
  - At the end of the playbook the complete log is attached to the collected run (collector.logs.attach).
  - A playbook that names no run (setup.yml alone) writes to results/logs/.
options:
  enabled:
    description: Write the log at all.
    type: bool
    default: true
    env:
      - name: THRASHLAB_LOG
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
"""

import os
import sys
import time
from pathlib import Path

from ansible.plugins.callback import CallbackBase

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from collector import logs  # noqa: E402
from thrashlab.paths import case_runner_filters, results_root  # noqa: E402


# one reading of the runner's output: the case roles' own filter
runner_summary = case_runner_filters().runner_summary


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _gist(res):
    """One line for a host's result: the runner's summary or error, else msg, else stdout's last line."""
    gist = runner_summary(res)
    if gist:
        return gist
    msg = res.get("msg")
    if isinstance(msg, list):
        msg = " | ".join(str(m) for m in msg)
    if msg:
        return str(msg).replace("\n", " | ")
    tail = [ln for ln in str(res.get("stdout") or "").replace("\r", "").splitlines() if ln.strip()]
    return tail[-1] if tail else ""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "thrashlab_log"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._lines = []
        self._file = None
        self._path = None
        self._run_id = None
        self._playbook = "playbook"
        self._stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())

    # ------------------------------------------------------------------ writing
    def _write(self, text):
        if not self.get_option("enabled"):
            return
        line = "%s %s\n" % (_now(), text)
        if self._file is None:
            self._lines.append(line)
        else:
            self._file.write(line)
            self._file.flush()

    def _open(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / ("%s-%s-%d.log" % (self._stamp, self._playbook, os.getpid()))
        self._file = self._path.open("a")
        self._file.writelines(self._lines)
        self._file.flush()
        self._lines = []

    def _learn_run_id(self, res):
        facts = res.get("ansible_facts") or {}
        run_id = facts.get("thrashlab_run_id")
        if run_id and self._run_id is None and self.get_option("enabled"):
            self._run_id = str(run_id)
            self._open(logs.pending_dir(results_root(), self._run_id))

    # ------------------------------------------------------------------ events
    def v2_playbook_on_start(self, playbook):
        self._playbook = Path(playbook._file_name).stem
        self._write("ansible-playbook %s (pid %d): %s" % (playbook._file_name, os.getpid(), " ".join(sys.argv)))

    def v2_playbook_on_play_start(self, play):
        self._write("PLAY [%s]" % play.get_name().strip())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._write("TASK [%s]" % task.get_name().strip())

    def _outcome(self, status, result):
        res = result._result
        self._learn_run_id(res)
        if status == "ok" and res.get("changed"):
            status = "changed"
        item = ""
        if "item" in res or res.get("_ansible_item_label") is not None:
            label = res.get("_ansible_item_label", res.get("item"))
            item = " (item=%s)" % (str(label).strip().replace("\n", " ")[:300])
        self._write("%s: [%s]%s %s" % (status, result._host.get_name(), item, _gist(res)))

    def v2_runner_on_ok(self, result):
        if not result._result.get("results"):  # a loop's items came one by one
            self._outcome("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not result._result.get("results"):
            self._outcome("failed (ignored)" if ignore_errors else "failed", result)

    def v2_runner_on_unreachable(self, result):
        self._outcome("unreachable", result)

    def v2_runner_item_on_ok(self, result):
        self._outcome("ok", result)

    def v2_runner_item_on_failed(self, result):
        self._outcome("failed", result)

    def v2_playbook_on_stats(self, stats):
        for host in sorted(stats.processed):
            s = stats.summarize(host)
            self._write("RECAP [%s] %s" % (host, " ".join("%s=%s" % kv for kv in sorted(s.items()))))
        if not self.get_option("enabled"):
            return
        if self._file is None:
            self._open(results_root() / "logs")
        self._file.close()
        if self._run_id is not None:
            logs.attach(results_root() / self._run_id, [self._path])
        self._display.display("log of this playbook: %s" % self._path, color="bright gray")
