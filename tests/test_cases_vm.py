"""Case Study 1 and 2 end to end on the test lab's VMs, and the collector's failure paths.

Every test uses the session's provisioned testbed (tests/conftest.py). Sizes
are small and runs short (-e overrides), so that the whole module takes a few
minutes under emulation. Results go to a temporary THRASHLAB_RESULTS_DIR,
never to the checkout's results/.

Order: the case studies first (one run holding both, as with
`-e thrashlab_run_id=...`), then a machine failing during the case play, a
file changing under the collector; the test that kills a VM during
collection runs last (teardown_last) and leaves that VM dead: only
test_testbed_vm.py's `down` comes after it, and stops a testbed with a
crashed VM as well.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

import collector_faults
from conftest import REPO, run, tool

pytestmark = pytest.mark.vm

CASE2_SMALL = ["-e", "case2_work_mb=16", "-e", '{"case2_n_values": [1, 2]}', "-e", "case2_seconds=2",
               "-e", "case2_timeout=90"]
CASE1_SMALL = ["-e", "case1_work_mb=16", "-e", "case1_iterations=3", "-e", "case1_timeout=90"]
POINT_FILES = ("profile.csv", "vmstat-before.txt", "vmstat-after.txt", "psi-before.txt", "psi-after.txt",
               "meminfo-before.txt", "meminfo-after.txt", "psi-samples.csv", "run.json")
RUN_KEYS = ("case", "n", "repeat", "work_mb", "mode", "accesses", "seconds", "wall_s", "overlap_s", "started",
            "ended", "exit_codes", "oom_killed")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _playbook(args, env, timeout=1500):
    return run([tool("ansible-playbook"), *args], env=env, timeout=timeout)


def _collector(args, env, timeout=600):
    return run([tool("python"), "-m", "collector", "pull", *args], env=env, timeout=timeout)


def _assert_no_partial(results: Path):
    bad = [str(p) for p in results.rglob("*")
           if p.name.endswith((".part", ".partial")) or p.name.startswith((".partial-", ".old-"))
           or "/." in str(p.relative_to(results))]
    assert not bad, bad


def _verify_manifest(run_dir: Path, machines: list[str]) -> dict:
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["complete"] is True
    assert sorted(man["machines"]) == sorted(machines)
    for name in machines:
        entry = man["machines"][name]
        assert entry["status"] == "ok", entry
        facts = entry["facts"]
        for key in ("kernel", "memory_mb", "mem_total_kb", "mem_available_kb", "swap_total_kb", "swap_mb",
                    "cpus", "accelerator", "hostname"):
            assert facts.get(key) is not None, (name, key)
    assert man["lab"]["machines"] and man["git_revision"] and isinstance(man["git_dirty"], bool)
    # the local testbed's record: accelerator and where each machine's vCPUs ran
    assert man["testbed"]["accelerator"] in ("kvm", "tcg") and man["host"]["cores"] >= 1
    placement = man["testbed"]["placement"]
    assert placement["pinned"] == (sum(m["cpus"] for m in man["lab"]["machines"]) <= man["host"]["cores"])
    assert sorted(placement["machines"]) == (sorted(machines) if placement["pinned"] else [])
    assert man["started"] and man["ended"] and man["collected"]["ended"]
    on_disk = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(man["files"]) | set(man["logs"])
    for rel, digest in man["files"].items():
        assert _sha(run_dir / rel) == digest, rel
    # the controller's logs: each playbook run's, the last one attached complete after its collect play
    for rel, entry in man["logs"].items():
        assert _sha(run_dir / rel) == entry["sha256"], rel
    return man


# Session scope: the test that stops a VM during collection runs last
# (teardown_last), long after this module's other tests; a module scope would
# run both case studies again for it (about 4 minutes under emulation).
@pytest.fixture(scope="session")
def results_env(provisioned, lab_env, tmp_path_factory):
    results = tmp_path_factory.mktemp("case-results")
    return {**lab_env, "THRASHLAB_RESULTS_DIR": str(results)}, results


@pytest.fixture(scope="session")
def both_cases(results_env, provisioned):
    """run-case2.yml then run-case1.yml into one run id; both collect it."""
    env, results = results_env
    run_id = time.strftime("%Y%m%d-%H%M%S-vmtest", time.gmtime())
    t0 = time.monotonic()
    p2 = _playbook(["run-case2.yml", "-e", f"thrashlab_run_id={run_id}", *CASE2_SMALL], env)
    t2 = time.monotonic() - t0
    p1 = _playbook(["run-case1.yml", "-e", f"thrashlab_run_id={run_id}", *CASE1_SMALL], env)
    t1 = time.monotonic() - t0 - t2
    print(f"\nrun-case2.yml (small) took {t2:.0f}s, run-case1.yml (small) {t1:.0f}s")
    return {"run_id": run_id, "p2": p2, "p1": p1, "dir": results / run_id, "results": results, "env": env}


def test_run_case2_end_to_end(both_cases, provisioned):
    p = both_cases["p2"]
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    # one progress line per finished run per machine, with its numbers
    for name in provisioned.names:
        for n in (1, 2):
            assert f"changed: [{name}] => (item=case2 N={n} repeat=1 [{n}/2," in p.stdout
    assert "results/latest -> " + both_cases["run_id"] in p.stdout


def test_run_case1_end_to_end(both_cases, provisioned):
    p = both_cases["p1"]
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    for name in provisioned.names:
        for pair in ("A", "B"):
            assert f"changed: [{name}] => (item=case1 pair {pair}" in p.stdout


def test_results_complete_and_verified(both_cases, provisioned):
    run_dir = both_cases["dir"]
    man = _verify_manifest(run_dir, provisioned.names)
    # both playbooks' logs: run-case1.yml's collection kept the one run-case2.yml's had attached
    assert any("-run-case2-" in rel for rel in man["logs"]) and any("-run-case1-" in rel for rel in man["logs"])
    assert man["case"] == "case1+case2"
    assert os.readlink(both_cases["results"] / "latest") == both_cases["run_id"]
    _assert_no_partial(both_cases["results"])
    for name in provisioned.names:
        params = man["parameters"][name]
        assert params["case2_work_mb"] == 16 and params["case2_n_values"] == [1, 2]
        assert params["case1_work_mb"] == 16
        m = run_dir / name
        for n in (1, 2):
            point = m / "case2" / f"n-{n:02d}" / "r-1"
            for f in POINT_FILES + tuple(f"work-{k}.json" for k in range(1, n + 1)):
                assert (point / f).is_file(), point / f
            rj = json.loads((point / "run.json").read_text())
            for key in RUN_KEYS:
                assert key in rj, key
            assert rj["exit_codes"] == [0] * n and rj["oom_killed"] == 0 and not rj["timed_out"]
            # the barrier: the timed phases ran together
            assert rj["overlap_s"] is not None and rj["overlap_s"] > 1.0
            w = json.loads((point / "work-1.json").read_text())
            assert w["mb"] == 16 and w["accesses"] > 0 and w["majflt"] >= 0
            prof = (point / "profile.csv").read_text().splitlines()
            assert prof[0] == "ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags" and len(prof) > 2
            psi = (point / "psi-samples.csv").read_text().splitlines()
            assert psi[0] == "t_s,some_avg10,full_avg10,some_total_us,full_total_us" and len(psi) >= 3
        for pair in ("pair-A", "pair-B"):
            d = m / "case1" / pair
            for f in ("profile.csv", "work-1.json", "work-2.json", "run.json"):
                assert (d / f).is_file(), d / f
            rj = json.loads((d / "run.json").read_text())
            assert rj["exit_codes"] == [0, 0]
            # profiled from the start: the profile holds both processes' first records
            pids = {json.loads((d / f"work-{k}.json").read_text())["pid"] for k in (1, 2)}
            rows = [r.split(",") for r in (d / "profile.csv").read_text().splitlines()[1:]]
            assert {int(r[2]) for r in rows if int(r[6]) & 2} == pids
        assert json.loads((m / "case1" / "params.json").read_text())["fill"] is False


def _analysis(args, env):
    return run([tool("python"), "-m", "analysis", *args, "--no-plots"], env=env, timeout=300)


def test_analysis_on_the_collected_run(both_cases, provisioned):
    """The analysis on what the VMs collected: compare's prediction from each machine's own
    params.json, no knee where 2 x 16 MiB fits in memory (every process's getrusage shows so),
    and Case Study 1's measured / expected ratio consistent with its flag and with getrusage."""
    env, run_dir = both_cases["env"], both_cases["dir"]
    p = _analysis(["compare", str(run_dir), "--json"], env)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {r["machine"]: r for r in json.loads(p.stdout)}
    assert sorted(rows) == sorted(provisioned.names)
    for name, row in rows.items():
        params = json.loads((run_dir / name / "case2" / "params.json").read_text())
        assert row["work_mb"] == params["work_mb"] == 16
        assert row["predicted_n"] == pytest.approx(params["mem_available_kb"] / 1024 / 16, abs=0.01)
        assert row["predicted_n"] > 3
        majflts = [json.loads((run_dir / name / "case2" / f"n-{n:02d}" / "r-1" / f"work-{k}.json").read_text())
                   ["majflt"] for n in (1, 2) for k in range(1, n + 1)]
        assert max(majflts) <= 50, majflts          # in memory by rule 1 of analysis.knee
        assert (row["thrashing_n"], row["thrashing_after"], row["reasons"]) == (None, None, None)
        assert row["n_values"] == [1, 2]
    p = _analysis(["case1", str(run_dir), "--format", "csv"], env)
    assert p.returncode == 0, p.stdout + p.stderr
    import csv
    import io
    procs = [r for r in csv.DictReader(io.StringIO(p.stdout)) if r["proc"] != "total"]
    assert len(procs) == 4 * len(provisioned.names)
    for r in procs:
        # the profile counts from the registration, getrusage the whole life: never more
        assert int(r["minflt_profile"]) <= int(r["minflt_work"])
        if r["mode"] == "R":
            ratio, expected = float(r["ratio"]), float(r["expected_minflt"])
            # the CSV rounds the expectation to a whole fault and the ratio to 3 decimals
            assert ratio == pytest.approx(int(r["minflt_profile"]) / expected, abs=1e-3 + 0.5 * ratio / expected)
            assert r["flag"] == ("over" if ratio > 1.02 else "under" if ratio < 0.98 else "")


def test_collector_pulls_again_by_hand(both_cases):
    """`python -m collector pull --run ID` by hand gives the same verified files."""
    env = both_cases["env"]
    before = json.loads((both_cases["dir"] / "manifest.json").read_text())["files"]
    p = _collector(["--run", both_cases["run_id"]], env)
    assert p.returncode == 0, p.stdout + p.stderr
    man = json.loads((both_cases["dir"] / "manifest.json").read_text())
    assert man["files"] == before
    _assert_no_partial(both_cases["results"])


def test_a_failing_machine_is_reported_the_others_collected(results_env, provisioned):
    """One machine's case fails (its work binary is not executable): the play goes on
    for the others, the collector reports that machine, the exit is non-zero."""
    env, results = results_env
    bad, good = provisioned.names[-1], provisioned.names[0]
    work = "/opt/thrashlab/workloads/work"
    provisioned.ssh(bad, f"chmod -x {work}")
    try:
        run_id = time.strftime("%Y%m%d-%H%M%S-vmfail", time.gmtime())
        p = _playbook(["playbooks/case2.yml", "playbooks/collect.yml", "-e", f"thrashlab_run_id={run_id}",
                       "-e", "case2_work_mb=16", "-e", '{"case2_n_values": [1]}', "-e", "case2_seconds=2"], env)
    finally:
        provisioned.ssh(bad, f"chmod +x {work}")
    assert p.returncode != 0
    assert f"FAILED: {bad}: case2" in p.stdout and "work is not an executable" in p.stdout
    man = json.loads((results / run_id / "manifest.json").read_text())
    assert man["complete"] is False
    assert man["machines"][good]["status"] == "ok"
    assert man["machines"][bad]["status"] == "failed"
    assert "the case playbook reported" in man["machines"][bad]["error"]
    assert "work is not an executable" in man["machines"][bad]["error"]
    assert not (results / run_id / bad).exists()
    assert (results / run_id / good / "case2" / "n-01" / "r-1" / "run.json").is_file()


def test_file_changed_after_listing_fails_clearly(both_cases, provisioned, tmp_path):
    env = {**both_cases["env"], "THRASHLAB_RESULTS_DIR": str(tmp_path)}
    name = provisioned.names[0]
    rel = "case2/n-01/r-1/run.json"
    copy_id = both_cases["run_id"] + "-copy"
    # a copy of the run on the machines, so that the real one stays intact
    for m in provisioned.names:
        provisioned.ssh(m, f"cp -a /var/lib/thrashlab/results/{both_cases['run_id']} "
                           f"/var/lib/thrashlab/results/{copy_id}")
    target = f"/var/lib/thrashlab/results/{copy_id}/{rel}"
    hook = {"host": name, "file": rel, "remote": f"echo changed >> {target}"}
    p = _collector(["--run", copy_id, "--retries", "3", "--backoff", "0.5"],
                   {**env, **collector_faults.env(hook)})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "checksum mismatch" in p.stderr and "listing it again" in p.stderr
    man = json.loads((tmp_path / copy_id / "manifest.json").read_text())
    err = man["machines"][name]["error"]
    assert err.startswith(f"{rel}: checksum mismatch 3 times: listed ")
    assert man["machines"][name]["retries"] >= 2
    assert all(e["status"] == "ok" for n, e in man["machines"].items() if n != name)
    assert not (tmp_path / copy_id / name).exists()
    _assert_no_partial(tmp_path)
    for m in provisioned.names:
        provisioned.ssh(m, f"rm -rf /var/lib/thrashlab/results/{copy_id}")


@pytest.mark.teardown_last
def test_vm_stopped_during_collection(both_cases, provisioned, tmp_path):
    """Kill one VM's QEMU after its third file: the others are collected, that
    machine is reported, exit 1, no partial file among the results. The VM is
    not booted again (a minute under emulation): the testbed's `down` is all
    that follows."""
    env = {**both_cases["env"], "THRASHLAB_RESULTS_DIR": str(tmp_path)}
    victim = provisioned.names[-1]
    pid = json.loads(provisioned.state_file.read_text())["machines"][victim]["pid"]
    assert pid and Path(f"/proc/{pid}").exists()
    hook = {"host": victim, "after_files": 3, "local": f"kill -9 {int(pid)}"}
    t0 = time.monotonic()
    p = _collector(["--run", both_cases["run_id"], "--timeout", "10", "--backoff", "0.5"],
                   {**env, **collector_faults.env(hook)})
    elapsed = time.monotonic() - t0
    assert p.returncode == 1, p.stdout + p.stderr
    man = json.loads((tmp_path / both_cases["run_id"] / "manifest.json").read_text())
    assert man["complete"] is False
    assert man["machines"][victim]["status"] == "failed"
    assert "gave up after" in man["machines"][victim]["error"]
    others = [n for n in provisioned.names if n != victim]
    assert all(man["machines"][n]["status"] == "ok" for n in others)
    assert not (tmp_path / both_cases["run_id"] / victim).exists()
    assert set(man["files"]) | set(man["logs"]) == {str(q.relative_to(tmp_path / both_cases["run_id"]))
                                                    for q in (tmp_path / both_cases["run_id"]).rglob("*")
                                                    if q.is_file()} - {"manifest.json"}
    for rel, digest in man["files"].items():
        assert _sha(tmp_path / both_cases["run_id"] / rel) == digest
    _assert_no_partial(tmp_path)
    assert not (tmp_path / "latest").exists()
    assert any(line.startswith(victim) and "FAILED" in line for line in p.stdout.splitlines())
    assert elapsed < 180
