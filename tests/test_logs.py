"""The controller's logs with the results (issue 17): the thrashlab_log
callback in a real ansible-playbook run, the collector's gathering and
listing, and the main job's own log."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from conftest import REPO, tool

from collector import logs

PLAYBOOK = """
- name: Name the run
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Name the run
      ansible.builtin.set_fact:
        thrashlab_run_id: {run_id}
    - name: Say something per item
      ansible.builtin.debug:
        msg: "point {{{{ item }}}}"
      loop: [1, 2]
    - name: Fail on purpose
      ansible.builtin.command: /bin/false
      changed_when: false
      ignore_errors: true
"""


def _playbook(tmp_path, run_id):
    book = tmp_path / "named.yml"
    book.write_text(PLAYBOOK.format(run_id=run_id))
    env = {"THRASHLAB_RESULTS_DIR": str(tmp_path / "results"), "PATH": "/usr/bin:/bin",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "HOME": str(tmp_path)}
    return subprocess.run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(book)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_callback_writes_the_log_pending_then_attaches_it_to_the_collected_run(tmp_path):
    results = tmp_path / "results"
    # a run that is not collected: the log waits in results/.logs/<run>/
    p = _playbook(tmp_path, "r-pending")
    assert p.returncode == 0, p.stdout + p.stderr
    [pending] = (results / ".logs" / "r-pending").iterdir()
    text = pending.read_text()
    assert "TASK [Say something per item]" in text and "ok: [localhost] (item=1) point 1" in text
    assert "(item=2) point 2" in text and "failed (ignored): [localhost]" in text
    assert "RECAP [localhost]" in text and "failures=0" in text and "ignored=1" in text
    assert f"log of this playbook: {pending}" in p.stdout
    assert not (results / "r-pending").exists()
    # a collected run: the complete log lands in its logs/ and in its manifest
    run = results / "r-done"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"run_id": "r-done", "files": {}}))
    p = _playbook(tmp_path, "r-done")
    assert p.returncode == 0, p.stdout + p.stderr
    [log] = (run / "logs").iterdir()
    man = json.loads((run / "manifest.json").read_text())
    data = log.read_bytes()
    assert man["logs"] == {f"logs/{log.name}": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}
    assert data.decode().rstrip().splitlines()[-1].split(" ", 1)[1].startswith("RECAP [localhost]")
    assert man["run_id"] == "r-done" and man["files"] == {}


def test_gather_keeps_earlier_logs_and_takes_the_pending_ones(tmp_path):
    root, final, staging = tmp_path, tmp_path / "r1", tmp_path / ".partial-r1"
    (final / "logs").mkdir(parents=True)
    (final / "logs" / "a-case2.log").write_text("first controller, killed\n")
    (final / "logs" / "b-case2.log").write_text("older copy\n")
    pend = logs.pending_dir(root, "r1")
    pend.mkdir(parents=True)
    (pend / "b-case2.log").write_text("newer copy\n")
    (pend / ".b-case2.log.tmp-1").write_text("half written\n")
    staging.mkdir()
    logs.gather(staging, final, root, "r1")
    assert sorted(p.name for p in (staging / "logs").iterdir()) == ["a-case2.log", "b-case2.log"]
    assert (staging / "logs" / "b-case2.log").read_text() == "newer copy\n"
    assert set(logs.listing(staging)) == {"logs/a-case2.log", "logs/b-case2.log"}
    # attach leaves a run that was never collected alone
    logs.attach(tmp_path / "not-collected", [pend / "b-case2.log"])
    assert not (tmp_path / "not-collected").exists()


def test_main_job_log_goes_with_its_run(tmp_path):
    script = f"""
import sys, json, os
from pathlib import Path
from thrashlab.progress import Progress
from thrashlab_job.job import Job
job = Job(Progress())
job.name_run("r2")
job.step("sweep", lambda: job.progress.say("N=1 done", machine="small"))
run = Path(os.environ["THRASHLAB_RESULTS_DIR"]) / "r2"
run.mkdir()
(run / "manifest.json").write_text(json.dumps({{"run_id": "r2"}}))
sys.exit(job.run_on(type("Bed", (), {{"down": lambda self: None}})(), lambda: None))
"""
    p = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={"THRASHLAB_RESULTS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    [log] = (tmp_path / "r2" / "logs").iterdir()
    text = log.read_text()
    assert log.name.endswith("-job.log") and "small: N=1 done" in text and "where the time went:" in text
    assert json.loads((tmp_path / "r2" / "manifest.json").read_text())["logs"] == {
        f"logs/{log.name}": {"sha256": hashlib.sha256(log.read_bytes()).hexdigest(), "bytes": log.stat().st_size}}
