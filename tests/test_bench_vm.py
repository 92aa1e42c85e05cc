"""The benchmark end to end on the session's testbed (./bench.sh's
thrashlab_job.bench with --keep, made short with -e), then its numbers checked
against sources that do not depend on the profilers: each work process's own
getrusage() and the arithmetic of the schedule."""
from __future__ import annotations

import csv
import json
import sys

import pytest

from conftest import first_playbook_output, run

pytestmark = [pytest.mark.vm, pytest.mark.slow]

ROUNDS = 2
PROCESSES = [1, 4]
IDLE_S = 10


# The job's own Case Study 2 sweep, small and in memory: the sweep step, its
# collection beside bench/ and the testbed-overhead table are what is checked
# here; fidelity at a real knee is test_analysis_bench.py's (fixtures), the
# knees are test_main_job_vm.py's.
SWEEP = ["-e", "case2_work_mb=16", "-e", json.dumps({"case2_n_values": [1, 2]}), "-e", "case2_seconds=2"]


@pytest.fixture(scope="module")
def bench(testbed, lab_env, tmp_path_factory):
    """The job on the booted testbed: its set-up step is the machines' first
    when this is the session's first VM test (CI), and counts as such for
    conftest's ``provisioned`` (one set-up run fewer)."""
    first_setup = not testbed.setup_runs
    results = tmp_path_factory.mktemp("bench-results")
    doc = results / "benchmarks.md"
    env = {**lab_env, "THRASHLAB_RESULTS_DIR": str(results)}
    job = run([sys.executable, "-m", "thrashlab_job.bench", "--keep", "--doc", str(doc),
               "-e", f"bench_rounds={ROUNDS}", "-e", f"bench_idle_seconds={IDLE_S}",
               "-e", json.dumps({"bench_processes": PROCESSES}), "-e", "bench_accesses_total=10000000",
               *SWEEP], env=env, timeout=2400)
    assert job.returncode == 0, job.stdout[-6000:] + job.stderr[-6000:]
    if first_setup and not testbed.setup_runs:
        testbed.setup_runs.append(first_playbook_output(job.stdout))
    run_dir = (results / "latest").resolve()
    return {"job": job, "run": run_dir, "doc": doc, "env": env}


def machines(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())["machines"]


def test_every_step_is_timed_and_recorded(bench):
    tail = bench["job"].stderr.split("where the time went", 1)[1]
    for step in ("boot", "setup", "bench", "sweep", "collect", "analysis"):
        assert step in tail
    testbed = json.loads((bench["run"] / "testbed.json").read_text())
    names = [s["name"] for s in testbed["steps"]]
    assert names[-4:] == ["setup", "bench", "sweep", "collect"]
    assert all(s["seconds"] >= 0 for s in testbed["steps"])
    assert testbed["accelerator"] in ("kvm", "tcg")


def test_the_report_is_printed_and_written(bench):
    out = bench["job"].stdout
    text = bench["doc"].read_text()
    for heading in ("Overhead", "Fidelity", "Testbed overhead", "Targets"):
        assert heading in out and heading in text
    accel = json.loads((bench["run"] / "testbed.json").read_text())["accelerator"].upper()
    for name in machines(bench["run"]):
        assert f"{name} (" in text and accel in text


def test_every_cell_ran_with_its_profiler(bench):
    for name in machines(bench["run"]):
        bdir = bench["run"] / name / "bench"
        params = json.loads((bdir / "params.json").read_text())
        assert params["processes"] == PROCESSES and params["rounds"] == ROUNDS
        for r in range(1, ROUNDS + 1):
            cells = json.loads((bdir / "overhead" / f"r-{r:02d}.json").read_text())["cells"]
            assert sorted((c["n"], c["condition"]) for c in cells) == sorted(
                (n, c) for n in PROCESSES for c in ("none", "pfprof", "perf", "poller"))
            for c in cells:
                assert c["ok"], c
                assert c["wall_s"] > 0 and c["accesses"] == params["work"]["iterations"][str(c["n"])] \
                    * c["n"] * params["work"]["accesses_per_iteration"]
                if c["condition"] != "none":
                    # each profiler ran while the work did: at least one sample per 50 ms of it, nearly
                    assert c["profiler"]["samples"] >= c["wall_s"] / 0.05 * 0.5, c


def test_profilers_agree_with_the_processes_own_counters(bench):
    """pfprof counts from registration (before the fill) to exit: the processes'
    faults after registering; procpoll's last sample lies just before the exit;
    perf counts from its attach (after the fill) to the exit, which pages nothing."""
    for name in machines(bench["run"]):
        for rfile in sorted((bench["run"] / name / "bench" / "overhead").glob("r-*.json")):
            doc = json.loads(rfile.read_text())
            for c in doc["cells"]:
                works = json.loads((rfile.with_suffix("") / f"n-{c['n']:02d}-{c['condition']}" / "works.json")
                                   .read_text())
                faults = sum(w["minflt"] for w in works)
                assert faults == c["work_minflt"]
                p = c["profiler"]
                if c["condition"] == "pfprof":
                    since_register = sum(w["minflt"] - w["minflt_after_register"] for w in works)
                    assert abs(p["minflt"] - since_register) <= 8 * c["n"], (c, since_register)
                elif c["condition"] == "poller":
                    assert faults - 40 * c["n"] <= p["minflt"] <= faults, (c, faults)
                elif c["condition"] == "perf":
                    timed = sum(w["minflt_timed"] for w in works)
                    assert timed <= p["minflt"] <= timed + 40 * c["n"], (c, timed)
                    assert p["majflt"] == 0


def test_idle_ticks_are_regular_and_nothing_is_dropped(bench):
    for name in machines(bench["run"]):
        idle = bench["run"] / name / "bench" / "idle"
        info = json.loads((idle / "run.json").read_text())
        with open(idle / "profile.csv") as f:
            stamps = sorted({int(r["ts_ns"]) for r in csv.DictReader(f) if not int(r["flags"]) & 4})
        # 20 ticks a second on a fixed schedule, for the length of the run
        assert abs(len(stamps) - IDLE_S * 20) <= 3
        gaps = [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:])]
        assert sorted(gaps)[len(gaps) // 2] == pytest.approx(50, abs=4)
        stats = info["pfprof_stats_after"], info["pfprof_stats_before"]
        assert stats[0]["records_dropped"] == stats[1]["records_dropped"]
        assert "dropped 0" in info["monitor"]["log_tail"]


def test_analysis_bench_json(bench):
    out = run([sys.executable, "-m", "analysis", "bench", str(bench["run"]), "--json", "--no-doc"],
              env=bench["env"])
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert figures
