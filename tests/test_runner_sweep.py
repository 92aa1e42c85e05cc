"""The runner's detached sweep on the host (fake /proc and fake programs of
test_runner.py): one `case-sweep` process per case that outlives the step
which started it, `case-follow` reading its points as they finish, the
start step re-attaching to a live sweep, and `--resume` keeping the points
an earlier attempt committed (byte for byte) after the sweep was killed."""
from __future__ import annotations

import json
import os
from unittest.mock import ANY
import signal
import subprocess
import time
from pathlib import Path

from test_runner import MACHINE, fake, runner_pyz  # noqa: F401  (fixtures)
from thrashlab_runner.common import RESULT_MARK

SETSID = ["--detach-with", "setsid"]


def start(fake, run_id, *extra, check=True):
    return fake.run("case2-start", "--run-id", run_id, *MACHINE, "--work-mb", "8", *extra, check=check)


def follow(fake, run_id, attempt, *where, wait="60", check=True):
    return fake.run("case-follow", "--run-id", run_id, "--case", "case2", "--attempt", str(attempt), *where,
                    "--wait", wait, check=check)


def shell_follow(fake, follow: str, what, wait_s=60):
    """The playbook's follower: the start step's shell command (`sweep.follow`)
    for point ``what`` (or "end"), as the raw task runs it."""
    p = subprocess.run(["sh", "-c", f"what={what} wait_s={wait_s}; {follow}"], env=fake.env, capture_output=True,
                       text=True, timeout=120)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    assert lines, f"no RESULT line:\nstdout={p.stdout}\nstderr={p.stderr}"
    return p.returncode, json.loads(lines[-1][len(RESULT_MARK):]), p.stderr


def files_of(tree: Path) -> dict:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_detached_sweep_is_followed_point_by_point_to_done(fake):
    # the start step plans the case and starts its sweep in one call (as the playbooks do)
    rc, plan, err = start(fake, "s1", "--n-values", "1,2", "--repeats", "2", "--seconds", "0.2", "--sweep", *SETSID)
    assert plan["start"] == "fresh" and plan["attempt"] == 1 and len(plan["points"]) == 4
    launched = plan["sweep"]
    assert launched["attached"] is False and launched["pid"] > 0 and "case2 sweep started" in launched["summary"]
    # the playbook's shell follower reads the lines the sweep left for it
    # (no Python starts: nothing on stderr, where the runner logs)
    for i, p in enumerate(plan["points"]):
        rc, res, err = shell_follow(fake, launched["follow"], i)
        assert (res["n"], res["repeat"]) == (p["n"], p["repeat"]) and res["kept"] is False and rc == 0 and not err
        assert res["exit_codes"] == [0] * p["n"]
        # case-follow (the Python follower) says the same from progress.jsonl
        assert follow(fake, "s1", 1, "--index", str(i))[1] == dict(res, runner_s=ANY)
    rc, done, err = shell_follow(fake, launched["follow"], "end")
    assert done["case"] == "case2" and done["runs"] == 4 and rc == 0 and not err
    case = fake.results / "s1" / "case2"
    assert (case / "DONE").is_file() and not (case / "FAILED").exists()
    params = json.loads((case / "params.json").read_text())
    assert params["attempts"] == [{"attempt": 1, "started": params["attempts"][0]["started"], "kept": [],
                                   "ran": ["n-01/r-1", "n-02/r-1", "n-01/r-2", "n-02/r-2"]}]
    lines = [json.loads(ln) for ln in (case / "progress.jsonl").read_text().splitlines()]
    assert [ln.get("index") for ln in lines[:-1]] == [0, 1, 2, 3] and lines[-1]["end"] == "done"
    # the sweep is gone and says so: no sweep.json left behind
    assert wait_for(lambda: not (fake.root / "run" / "sweep.json").exists())
    # the playbook run again after the sweep ended unwatched: nothing runs again
    rc, again, err = start(fake, "s1", "--n-values", "1,2", "--repeats", "2", "--seconds", "0.2")
    assert again["start"] == "attached" and (case / "DONE").is_file()
    rc, launched, err = fake.run("case-sweep", "--run-id", "s1", "--case", "case2", "--detach", *SETSID)
    assert launched["attached"] is True
    assert follow(fake, "s1", 1, "--index", "3")[1]["n"] == 2 and follow(fake, "s1", 1, "--end")[1]["runs"] == 4
    # other arguments under the same run id start the case over
    rc, fresh, err = start(fake, "s1", "--n-values", "1", "--seconds", "0.2")
    assert fresh["start"] == "fresh" and not (case / "DONE").exists() and not (case / "n-02").exists()


def test_a_live_sweep_is_reattached_and_other_runs_are_refused(fake):
    start(fake, "s2", "--n-values", "1,2", "--seconds", "1.5")
    fake.run("case-sweep", "--run-id", "s2", "--case", "case2", "--detach", *SETSID)
    # the playbook run again while the sweep runs: start and launch re-attach
    rc, again, err = start(fake, "s2", "--n-values", "1,2", "--seconds", "1.5")
    assert again["start"] == "attached" and again["points"] == [{"n": 1, "repeat": 1}, {"n": 2, "repeat": 1}]
    rc, launched, err = fake.run("case-sweep", "--run-id", "s2", "--case", "case2", "--detach", *SETSID)
    assert launched["attached"] is True
    # another run cannot start on a busy machine, and the message says how to go on
    rc, res, err = start(fake, "s3", "--n-values", "1", check=False)
    assert rc == 1 and "running the case2 sweep of run s2" in res["error"] and "thrashlab_run_id=s2" in res["error"]
    rc, done, err = follow(fake, "s2", 1, "--end")
    assert done["runs"] == 2
    # the refused start left the running run alone
    assert (fake.results / "s2" / "case2" / "DONE").is_file()


def test_killed_sweep_is_reported_and_resumed_keeping_committed_points(fake):
    args = ["--n-values", "1,2,3", "--seconds", "1"]
    rc, plan, err = start(fake, "s4", *args)
    rc, launched, err = fake.run("case-sweep", "--run-id", "s4", "--case", "case2", "--detach", *SETSID)
    follow(fake, "s4", 1, "--index", "0")
    case = fake.results / "s4" / "case2"
    first = files_of(case / "n-01" / "r-1")
    # kill the whole sweep half way through point 2 (its session: the runner and its work processes)
    assert wait_for(lambda: (case / "n-02" / ".r-1.partial").is_dir())
    os.killpg(launched["pid"], signal.SIGKILL)
    # no line for point 2 will come: the shell follower sees the sweep gone and
    # hands over to case-follow, which says what happened
    rc, res, err = shell_follow(fake, launched["follow"], 1)
    assert rc == 1 and "not running" in res["error"] and "resume=true" in res["error"]
    # resume with other parameters is refused, naming the difference
    rc, res, err = start(fake, "s4", "--n-values", "1,2,3", "--seconds", "2", "--resume", check=False)
    assert rc == 1 and "other parameters" in res["error"] and "seconds" in res["error"]
    rc, again, err = start(fake, "s4", *args, "--resume")
    assert again["start"] == "resumed" and again["attempt"] == 2 and again["points"] == plan["points"]
    assert not (case / "n-02" / ".r-1.partial").exists()
    fake.run("case-sweep", "--run-id", "s4", "--case", "case2", "--detach", *SETSID)
    rc, kept, err = follow(fake, "s4", 2, "--index", "0")
    assert kept["kept"] is True and kept["n"] == 1
    rc, done, err = follow(fake, "s4", 2, "--end")
    assert done["runs"] == 3
    assert files_of(case / "n-01" / "r-1") == first
    params = json.loads((case / "params.json").read_text())
    assert [(a["attempt"], a["kept"], a["ran"]) for a in params["attempts"]] == [
        (1, [], ["n-01/r-1"]), (2, ["n-01/r-1"], ["n-02/r-1", "n-03/r-1"])]
    assert not [p for p in case.rglob(".*")]


def test_stopped_sweep_fails_its_followers_at_once(fake):
    # `systemctl stop` (SIGTERM) half way through point 1: the sweep records
    # the failure, and the followers of the points left and of the end say so
    # without waiting for their bound
    rc, plan, err = start(fake, "s5", "--n-values", "1,2,3", "--seconds", "1", "--sweep", *SETSID)
    follow_cmd = plan["sweep"]["follow"]
    assert shell_follow(fake, follow_cmd, 0)[0] == 0
    case = fake.results / "s5" / "case2"
    assert wait_for(lambda: (case / "n-02" / ".r-1.partial").is_dir())
    os.kill(plan["sweep"]["pid"], signal.SIGTERM)
    t0 = time.monotonic()
    for what in (1, 2, "end"):
        rc, res, err = shell_follow(fake, follow_cmd, what, wait_s=600)
        assert rc == 1 and "interrupted by signal 15" in res["error"], res
    assert time.monotonic() - t0 < 30
