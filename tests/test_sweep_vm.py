"""Sweeps that outlive the controller, on the test lab's VMs (issue 17).

One Case Study 2 run: the last machine's sweep is stopped after its first
point (as a reboot would); the SSH connections are cut, then the controller
killed, mid-sweep: the other sweeps go on on the machines (their systemd
units). The playbook run again with -e resume=true and case_parallel=1
re-attaches to the running sweep (no point runs twice), resumes the stopped
one (the points committed before keep their files byte for byte, only the
rest run), one machine after the other, and collects a complete run. The
controller's logs of both attempts are in results/<run>/logs/ and the
manifest.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import REPO, run, tool

pytestmark = pytest.mark.vm

# Points long enough (at least 12 s each under emulation) that a sweep is still
# running when the controller is killed or the sweep stopped.
SWEEP = ["-e", "case2_work_mb=16", "-e", '{"case2_n_values": [1, 2, 3, 4, 5]}', "-e", "case2_seconds=10",
         "-e", "case2_timeout=90"]
POINTS = ["n-01/r-1", "n-02/r-1", "n-03/r-1", "n-04/r-1", "n-05/r-1"]
PLAYS = ["playbooks/case2.yml", "playbooks/collect.yml"]
REMOTE_RESULTS = "/var/lib/thrashlab/results"


class Controller:
    """ansible-playbook in its own session, its output in a file read as it grows."""

    def __init__(self, env: dict, out, *args: str):
        self.out = out
        self.proc = subprocess.Popen([tool("ansible-playbook"), *args], cwd=REPO, env={**os.environ, **env},
                                     stdout=out.open("w"), stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 600) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(pattern, self.text()):
                return m
            assert self.proc.poll() is None, f"playbook ended (exit {self.proc.returncode}):\n{self.text()[-4000:]}"
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.text()[-4000:]}")

    def kill(self) -> None:
        """The controller goes away at once (the laptop closed): its whole session."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def ansible_masters(testbed) -> dict[str, int]:
    """PIDs of Ansible's SSH control masters (ansible.cfg: ~/.ansible/cp/%C) to each machine."""
    found = {}
    for name in testbed.names:
        g = run(["ssh", "-G", "-F", str(testbed.ssh_config), "-o", "ControlPath=~/.ansible/cp/%C", name])
        path = re.search(r"^controlpath (\S+)$", g.stdout, re.M).group(1)
        check = run(["ssh", "-o", f"ControlPath={path}", "-O", "check", "x"])
        if m := re.search(r"pid=(\d+)", check.stderr):
            found[name] = int(m.group(1))
    return found


def points_done(testbed, name: str, run_id: str) -> int:
    """How many points the machine's sweep has finished (its progress lines)."""
    out = testbed.ssh(name, f"grep -c '\"point\"' {REMOTE_RESULTS}/{run_id}/case2/progress.jsonl || true").stdout
    return int(out.strip() or 0)


def committed_files(testbed, name: str, run_id: str) -> dict[str, str]:
    """sha256 of every file of the points committed on the machine (directories with run.json)."""
    case = f"{REMOTE_RESULTS}/{run_id}/case2"
    out = testbed.ssh(name, f"cd {case} && for d in $(dirname $(ls n-*/r-*/run.json 2>/dev/null) 2>/dev/null); "
                            f"do find $d -type f -exec sha256sum {{}} +; done").stdout
    return {path: digest for digest, path in (line.split() for line in out.splitlines())}


def collected(results, run_id: str) -> dict:
    return json.loads((results / run_id / "manifest.json").read_text())


@pytest.fixture(scope="module")
def sweeps(provisioned, lab_env, tmp_path_factory):
    """One run, one story: the last machine's sweep is stopped after its first
    point (as a reboot would); the others' SSH connections are cut, then the
    controller is killed mid-sweep; the playbook run again (resume=true,
    one machine at a time) re-attaches to the running sweeps and resumes the
    stopped one."""
    results = tmp_path_factory.mktemp("sweep-results")
    out = tmp_path_factory.mktemp("sweep-output")
    env = {**lab_env, "THRASHLAB_RESULTS_DIR": str(results)}
    names = provisioned.names
    watched, stopped = names[0], names[-1]
    run_id = time.strftime("%Y%m%d-%H%M%S-vmsweep", time.gmtime())
    case = f"{REMOTE_RESULTS}/{run_id}/case2"
    story = {"results": results, "names": names, "id": run_id, "watched": watched, "stopped": stopped}

    first = Controller(env, out / "first.txt", *PLAYS, "-e", f"thrashlab_run_id={run_id}", *SWEEP)
    provisioned.ssh(stopped, f"for i in $(seq 900); do test -f {case}/n-01/r-1/run.json && break; sleep 0.5; done; "
                             f"systemctl stop thrashlab-sweep-{run_id}-case2", timeout=600)
    story["kept"] = committed_files(provisioned, stopped, run_id)
    first.wait_for(rf"{watched}\] => \(item=case2 N=1 repeat=1 \[1/5")
    masters = ansible_masters(provisioned)
    assert masters, "no SSH control master of Ansible's to cut"
    for pid in masters.values():
        os.kill(pid, signal.SIGKILL)
    story["cut"] = sorted(masters)
    # a point shown after the cut: the playbook went on; then the controller goes away
    shown = len(re.findall(rf"{watched}\] => \(item=case2 N=", first.text()))
    first.wait_for(r"(?s)" + rf"{watched}\] => \(item=case2 N=.*" * (shown + 1))
    first.kill()
    story["done_at_kill"] = points_done(provisioned, watched, run_id)
    story["first"] = first.text()
    story["again"] = run([tool("ansible-playbook"), *PLAYS, "-e", f"thrashlab_run_id={run_id}", *SWEEP,
                          "-e", "resume=true", "-e", "case_parallel=1"], env=env)
    return story


def test_sweeps_survive_a_cut_connection_and_the_controller(sweeps):
    assert sweeps["cut"], "the SSH connections were cut"
    # the controller was killed mid-sweep: points were still to run ...
    assert sweeps["done_at_kill"] < len(POINTS), sweeps["done_at_kill"]
    # ... and the machine finished all of them in the one attempt started before the kill
    man = collected(sweeps["results"], sweeps["id"])
    assert [a["ran"] for a in man["machines"][sweeps["watched"]]["attempts"]["case2"]] == [POINTS]


def test_the_playbook_run_again_reattaches_resumes_and_collects(sweeps):
    p = sweeps["again"]
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    assert "(attached, attempt 1)" in p.stdout and "(resumed, attempt 2)" in p.stdout
    man = collected(sweeps["results"], sweeps["id"])
    assert man["complete"] is True
    # both controllers' logs are with the run: the killed one's up to where it died
    logs = {name: (sweeps["results"] / sweeps["id"] / name).read_text() for name in man["logs"]}
    assert len([n for n in logs if "-case2-" in n]) == 2, sorted(logs)
    killed = [text for text in logs.values() if "RECAP" not in text]
    assert len(killed) == 1 and "(item=case2 N=1 repeat=1" in killed[0]


def test_resume_keeps_the_committed_points_and_runs_the_rest(sweeps):
    man = collected(sweeps["results"], sweeps["id"])
    name = sweeps["stopped"]
    kept = sweeps["kept"]
    assert kept, f"{name}: no point was committed before the stop"
    points = sorted({"/".join(path.split("/")[:2]) for path in kept})
    for path, digest in kept.items():
        assert man["files"][f"{name}/case2/{path}"] == digest, path
    first, second = man["machines"][name]["attempts"]["case2"]
    assert first["ran"] == points and "interrupted" in first["failed"]
    assert second["kept"] == points and sorted(points + second["ran"]) == POINTS
    assert second["ran"] and not set(second["ran"]) & set(points)
    params = json.loads((sweeps["results"] / sweeps["id"] / name / "case2" / "params.json").read_text())
    assert params["attempts"] == man["machines"][name]["attempts"]["case2"]
    assert "kept from an earlier attempt" in sweeps["again"].stdout


def test_case_parallel_sweeps_the_machines_in_waves(sweeps):
    p = sweeps["again"]
    names = sweeps["names"]
    assert f"{len(names)} machines, 1 at once (case_parallel): they sweep in waves" in p.stdout
    run_dir = sweeps["results"] / sweeps["id"]
    params = {n: json.loads((run_dir / n / "case2" / "params.json").read_text()) for n in names}
    # the resumed machine, last in the lab, began its attempt after the first machine's sweep had ended
    assert params[sweeps["stopped"]]["attempts"][-1]["started"] > params[sweeps["watched"]]["ended"]
