"""Sweeps that outlive the controller, on the test lab's VMs (issue 17).

One Case Study 2 run has its SSH connections cut, then its controller killed,
mid-sweep: the sweeps go on on the machines (their systemd units), and the
playbook run again re-attaches to them and collects a complete run in which
no point ran twice. A second run is stopped after its first points (the
controller killed and the sweeps stopped, as a reboot would), then taken up
with -e resume=true: the points committed before keep their files byte for
byte and only the rest run. The controller's logs of every attempt are in
results/<run>/logs/ and the manifest.
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
    results = tmp_path_factory.mktemp("sweep-results")
    out = tmp_path_factory.mktemp("sweep-output")
    env = {**lab_env, "THRASHLAB_RESULTS_DIR": str(results)}
    names = provisioned.names
    story = {"results": results, "names": names}

    # 1. a connection cut, then the controller killed, then the playbook again
    attach_id = time.strftime("%Y%m%d-%H%M%S-vmattach", time.gmtime())
    first = Controller(env, out / "attach-1.txt", *PLAYS, "-e", f"thrashlab_run_id={attach_id}", *SWEEP)
    first.wait_for(r"\(item=case2 N=1 repeat=1 \[1/5")
    masters = ansible_masters(provisioned)
    assert masters, "no SSH control master of Ansible's to cut"
    for pid in masters.values():
        os.kill(pid, signal.SIGKILL)
    story["cut"] = sorted(masters)
    # a point shown after the cut: the playbook went on; then the controller goes away
    shown = len(re.findall(r"\(item=case2 N=", first.text()))
    first.wait_for(r"(?s)" + r"\(item=case2 N=.*" * (shown + 1))
    first.kill()
    story["done_at_kill"] = {n: points_done(provisioned, n, attach_id) for n in names}
    again = run([tool("ansible-playbook"), *PLAYS, "-e", f"thrashlab_run_id={attach_id}", *SWEEP], env=env)
    story["attach"] = {"id": attach_id, "first": first.text(), "again": again}

    # 2. stopped after the first points (controller and sweeps), then resumed
    resume_id = time.strftime("%Y%m%d-%H%M%S-vmresume", time.gmtime())
    first = Controller(env, out / "resume-1.txt", *PLAYS, "-e", f"thrashlab_run_id={resume_id}", *SWEEP)
    for n in names:
        # stopped on each machine as soon as its first point is committed
        case = f"{REMOTE_RESULTS}/{resume_id}/case2"
        provisioned.ssh(n, f"for i in $(seq 600); do test -f {case}/n-01/r-1/run.json && break; sleep 0.5; done; "
                           f"systemctl stop thrashlab-sweep-{resume_id}-case2", timeout=400)
    first.kill()
    kept = {n: committed_files(provisioned, n, resume_id) for n in names}
    other = run([tool("ansible-playbook"), "playbooks/case2.yml", "-e", f"thrashlab_run_id={resume_id}",
                 *SWEEP, "-e", "resume=true", "-e", "case2_seconds=2"], env=env)
    # resumed one machine at a time (waves, as a lab with more VMs than host cores)
    resumed = run([tool("ansible-playbook"), *PLAYS, "-e", f"thrashlab_run_id={resume_id}", *SWEEP,
                   "-e", "resume=true", "-e", "case_parallel=1"], env=env)
    story["resume"] = {"id": resume_id, "kept": kept, "other": other, "resumed": resumed}
    return story


def test_sweeps_survive_a_cut_connection_and_the_controller(sweeps):
    assert sweeps["cut"], "the SSH connections were cut"
    # the controller was killed mid-sweep: some points were still to run on a machine ...
    assert min(sweeps["done_at_kill"].values()) < len(POINTS), sweeps["done_at_kill"]
    # ... and every machine finished all of them in the one attempt started before the kill
    man = collected(sweeps["results"], sweeps["attach"]["id"])
    for name in sweeps["names"]:
        assert [a["ran"] for a in man["machines"][name]["attempts"]["case2"]] == [POINTS]


def test_the_playbook_run_again_reattaches_and_collects_a_complete_run(sweeps):
    a = sweeps["attach"]
    p = a["again"]
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    assert "(attached, attempt 1)" in p.stdout
    man = collected(sweeps["results"], a["id"])
    assert man["complete"] is True
    for name in sweeps["names"]:
        # one attempt that ran every point once: nothing started over
        [attempt] = man["machines"][name]["attempts"]["case2"]
        assert attempt["attempt"] == 1 and attempt["ran"] == POINTS
    # both controllers' logs are with the run: the killed one's up to where it died
    names = sorted(man["logs"])
    assert len([n for n in names if "-case2-" in n]) == 2, names
    killed = next(sweeps["results"] / a["id"] / n for n in names if "-case2-" in n and "RECAP" not in
                  (sweeps["results"] / a["id"] / n).read_text())
    assert "(item=case2 N=1 repeat=1" in killed.read_text()


def test_resume_keeps_the_committed_points_and_runs_the_rest(sweeps):
    r = sweeps["resume"]
    # (case2.yml alone: the machines' failures are reported, the collect play would fail the run)
    for name in sweeps["names"]:
        assert f"FAILED: {name}: case2: " in r["other"].stdout
    assert "cannot resume case2 of run" in r["other"].stdout and "other parameters" in r["other"].stdout
    assert re.search(r'seconds: \\?"10\\?" then, \\?"2\\?" now', r["other"].stdout), r["other"].stdout[-3000:]
    p = r["resumed"]
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    man = collected(sweeps["results"], r["id"])
    assert man["complete"] is True
    run_dir = sweeps["results"] / r["id"]
    for name in sweeps["names"]:
        kept = r["kept"][name]
        assert kept, f"{name}: no point was committed before the stop"
        points = sorted({"/".join(path.split("/")[:2]) for path in kept})
        for path, digest in kept.items():
            assert man["files"][f"{name}/case2/{path}"] == digest, path
        first, second = man["machines"][name]["attempts"]["case2"]
        assert first["ran"] == points and "failed" in first
        assert second["kept"] == points and sorted(points + second["ran"]) == POINTS
        assert second["ran"] and not set(second["ran"]) & set(points)
        params = json.loads((run_dir / name / "case2" / "params.json").read_text())
        assert params["attempts"] == man["machines"][name]["attempts"]["case2"]
    assert "kept from an earlier attempt" in p.stdout


def test_case_parallel_sweeps_the_machines_in_waves(sweeps):
    r = sweeps["resume"]
    p = r["resumed"]
    names = sweeps["names"]
    assert f"{len(names)} machines, 1 at once (case_parallel): they sweep in waves" in p.stdout
    run_dir = sweeps["results"] / r["id"]
    spans = sorted((json.loads((run_dir / n / "case2" / "params.json").read_text())["attempts"][-1]["started"],
                    json.loads((run_dir / n / "case2" / "params.json").read_text())["ended"]) for n in names)
    # each machine's resumed sweep started after the one before it had ended
    for (_, ended), (started, _) in zip(spans, spans[1:]):
        assert started > ended, spans
