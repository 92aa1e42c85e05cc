"""``python -m analysis bench``, run as a subprocess on run trees built here from chosen numbers.

The builder (:func:`build_run`) writes a consistent run: two machines, small
(256 MiB, TCG) and large (512 MiB, KVM); bench/ with 3 rounds of N 1, 8, 32
under none/pfprof/perf/poller whose walls are the none wall times times
hand-listed ratios; pfprof cells whose handler cost is a + b*N ns per tick;
an idle profile of 1001 ticks with known intervals; the case2 sweep of
tests/fixtures/make_fixtures.py (small thrashes at N*=3, large has no knee)
with profiles at N* and run.json timings; and testbed.json.  Every expected
figure is computed in the test from those numbers, not read from the code.
Every call names --doc in tmp_path or --no-doc: the real docs/benchmarks.md
is never written.
"""
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import make_fixtures as mf  # noqa: E402  (the case2 sweep of the hand-made fixtures)

REAL_DOC = ROOT / "docs" / "benchmarks.md"
T_DF2 = 4.303                     # Student t, 95% two-sided, 2 degrees of freedom (3 rounds)
INTERVAL_MS, HZ = 50, 250         # a jiffy of 4 ms
NS = (1, 8, 32)
ROUNDS = 3
WALL_NONE = {1: [10.0, 10.4, 9.8], 8: [12.0, 12.5, 11.9], 32: [20.0, 21.0, 19.5]}
RATIOS = {
    "small": {"pfprof": {1: [1.001, 1.003, 0.999], 8: [1.002, 1.000, 1.001], 32: [1.0005, 1.0015, 1.001]},
              "perf": {1: [1.010, 1.012, 1.008], 8: [1.011, 1.013, 1.012], 32: [1.012, 1.016, 1.014]},
              "poller": {1: [1.020, 1.024, 1.022], 8: [1.025, 1.027, 1.026], 32: [1.030, 1.034, 1.032]}},
    # large: pfprof misses 1.002 at N=32 and is dearer than perf there
    "large": {"pfprof": {1: [1.001, 1.001, 1.001], 8: [1.001, 1.002, 1.000], 32: [1.004, 1.006, 1.005]},
              "perf": {1: [1.010, 1.010, 1.010], 8: [1.010, 1.012, 1.014], 32: [1.003, 1.004, 1.005]},
              "poller": {1: [1.020, 1.020, 1.020], 8: [1.020, 1.022, 1.024], 32: [1.030, 1.031, 1.032]}},
}
CPU_S = {"pfprof": [0.02, 0.03, 0.025], "perf": [0.10, 0.12, 0.11], "poller": [0.30, 0.32, 0.31]}
HANDLER = {"small": (3000, 700), "large": (10000, 1800)}    # ns per tick: a + b * N
TICKS = [200, 210, 190]                                     # pfprof ticks of a cell, per round
SETTLE = {"small": 2.0, "large": 1.0}                       # settle_s of every case2 run
IN_RUNNER = 1.5                                             # runner time outside work and settling, per run
REMAINDER = {"small": 30.0, "large": 4.0}                   # Ansible, ssh, start-up over the sweep
STEPS = [("boot", 39.0), ("setup", 82.0), ("bench", 600.0), ("sweep", 200.0), ("collect", 7.0)]
# idle: 1000 intervals: 996 x 50 ms, one 54 ms and one 46 ms (within a jiffy: |d - 50| <= 4), two 75 ms
IDLE_INTERVALS_MS = [50] * 300 + [75] + [50] * 300 + [54] + [50] * 200 + [46] + [50] * 196 + [75]
KNEE = {"small": 3, "large": 4}                             # large: no knee, its largest N
# each profile at N*: 201 ticks; repeat 1 of small has one merged tick (100 ms)
KNEE_LATE = {("small", 1): 1}
# the lateness split (stats since the module's load): counters before each run, and each run's deltas
# (timer_late_ns_sum, queue_delay_ns_sum, timer_late_ticks_over_jiffy, queue_delay_ticks_over_jiffy);
# large's case2 stats come from a module older than the split: no such lines, "n/a"
SPLIT_KEYS = ("timer_late_ns_sum", "queue_delay_ns_sum", "timer_late_ticks_over_jiffy",
              "queue_delay_ticks_over_jiffy")
SPLIT_BEFORE = (7_000_000, 3_000_000, 2, 1)
SPLIT = {("small", 1): (40_000_000, 160_000_000, 1, 3), ("small", 2): (10_000_000, 30_000_000, 0, 1),
         ("idle", 1): (2_000_000, 6_000_000, 0, 1)}
KNEE_TICKS = 200                                            # ticks delta of each run at N*
IDLE_TICKS = 1000


def split_stats(delta=(0, 0, 0, 0)) -> dict:
    """The split's stats lines: SPLIT_BEFORE plus ``delta``; the maxima are not read."""
    return {**dict(zip(SPLIT_KEYS, (b + d for b, d in zip(SPLIT_BEFORE, delta)))),
            "timer_late_ns_max": 9_000_000, "queue_delay_ns_max": 5_000_000}


# The benchmark's profiles at N* (profile() below: pids 9000+, its own ticks) are not those of
# the work JSONs make_fixtures writes, so Case Study 2 falls back to getrusage for those runs,
# one warning each; that is Case 2's business (tests/test_analysis_profile.py), not the bench's.
CASE2_FALLBACK = re.compile(r"analysis: warning: \S+/case2/n-\d+/r-\d+/profile\.csv: no record of work-.*"
                            r"; this run falls back to getrusage \(work JSONs\)\n")


def analysis(*args, env=None):
    p = subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    p.stderr = CASE2_FALLBACK.sub("", p.stderr)
    return p


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def iso(t: float) -> str:
    """POSIX seconds as the runner writes them: 2 decimals, Z."""
    import datetime
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z"


T0 = 1_796_000_000.0              # 2026-11-29


def profile(path: Path, pids, ticks_ns, extra=()) -> None:
    """A monitor profile: one record per pid at every tick, first flagged 2, last 1; ``extra`` rows as given."""
    rows = []
    for i, ts in enumerate(ticks_ns):
        for pid in pids:
            flags = 2 if i == 0 else 1 if i == len(ticks_ns) - 1 else 0
            rows.append((ts, 4_295_000_000 + i * 12, pid, 3, 0, 1_000_000, flags))
    rows += list(extra)
    rows.sort()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags\n"
                    + "".join(",".join(map(str, r)) + "\n" for r in rows))


def stats_text(**kv) -> str:
    base = {"ticks": 5000, "ticks_merged": 0, "ticks_resync": 0, "records_written": 9000, "records_dropped": 0,
            "records_no_reader": 0, "work_ns_sum": 12_000_000, "work_ns_mean": 2400, "work_ns_max": 40000,
            "registered": 0, "interval_ms": INTERVAL_MS, "hz": HZ}
    base.update(kv)
    return "".join(f"{k} {v}\n" for k, v in base.items())


def build_bench(mdir: Path, machine: str) -> None:
    b = mdir / "bench"
    write_json(b / "params.json", {
        "case": "bench", "run_id": "20261129-bench", "machine": machine, "rounds": ROUNDS,
        "processes": list(NS), "conditions": ["none", "pfprof", "perf", "poller"],
        "work": {"mb": 16, "mode": "R", "accesses_total": 2_000_000, "accesses_per_iteration": 10000},
        "interval_ms": INTERVAL_MS, "hz": HZ, "idle_seconds": 50.0, "perf_version": "perf version 6.1.76",
        "started": iso(T0), "ended": iso(T0 + 900)})
    a, slope = HANDLER[machine]
    for r in range(ROUNDS):
        cells, pos = [], 0
        for n in NS:
            for cond in ("none", "pfprof", "perf", "poller"):
                pos += 1
                wall = WALL_NONE[n][r] * (1 if cond == "none" else RATIOS[machine][cond][n][r])
                cell = {"n": n, "condition": cond, "position": pos, "wall_s": wall, "ok": True,
                        "exit_codes": [0] * n, "accesses": 2_000_000 * n, "work_minflt": 4200 * n,
                        "work_majflt": 0, "profiler": None}
                if cond != "none":
                    cell["profiler"] = {"argv": f"{cond} ...", "cpu_s": CPU_S[cond][r], "samples": 200,
                                        "minflt": 4100 * n, "majflt": 0}
                if cond == "pfprof":
                    cell["pfprof"] = {"ticks": TICKS[r], "work_ns_sum": TICKS[r] * (a + slope * n),
                                      "records_dropped": 0}
                cells.append(cell)
        write_json(b / "overhead" / f"r-{r + 1:02d}.json",
                   {"round": r + 1, "started": iso(T0 + 100 * r), "ended": iso(T0 + 100 * r + 90), "cells": cells})
    # idle: 1001 ticks with IDLE_INTERVALS_MS between them, then the U record 13 ms after the last
    ticks = [10**12]
    for d in IDLE_INTERVALS_MS:
        ticks.append(ticks[-1] + d * 1_000_000)
    profile(b / "idle" / "profile.csv", [777], ticks,
            extra=[(ticks[-1] + 13_000_000, 4_295_100_000, 777, 0, 0, 1000, 5)])
    before = {"ticks": 100, "ticks_merged": 0, "ticks_resync": 0, "records_written": 100,
              "records_dropped": 0, "work_ns_sum": 250_000, "interval_ms": INTERVAL_MS, "hz": HZ,
              **split_stats()}
    after = dict(before, ticks=100 + IDLE_TICKS, records_written=1102, work_ns_sum=250_000 + 1000 * 2500,
                 **split_stats(SPLIT[("idle", 1)]))
    write_json(b / "idle" / "run.json", {
        "seconds": 50.0, "started": iso(T0 + 800), "ended": iso(T0 + 850),
        "monitor": {"exit_code": 0, "log_tail": "monitor: records 1002 dropped 0 processes 1"},
        "pfprof_stats_before": before, "pfprof_stats_after": after})


def build_case2(mdir: Path, machine: str) -> None:
    """make_fixtures' sweep (work JSONs, run.json, PSI), plus the timings and, at N*, profiles."""
    mf.make_case2(mdir, machine, (1, 2, 3, 4))
    base = mdir / "case2"
    t = T0 + 2000
    work = 0.0
    for rj in sorted(base.glob("n-*/r-*/run.json")):
        obj = json.loads(rj.read_text())
        wall = obj["wall_s"]
        work += wall
        runner_started = t
        started = t + SETTLE[machine] + 0.5
        ended = started + wall + 1.0               # (ended - runner_started) - wall - settle = IN_RUNNER
        obj.update(settle={"settle_s": SETTLE[machine], "swap_quiet": True}, runner_started=iso(runner_started),
                   started=iso(started), ended=iso(ended),
                   monitor={"exit_code": 0, "log_tail": f"monitor: records 603 dropped 0 processes {obj['n']}"})
        rj.write_text(json.dumps(obj))
        t = ended + 5.0
        n, r = obj["n"], obj["repeat"]
        if n == KNEE[machine]:
            ticks, ts = [], 5 * 10**12
            late = KNEE_LATE.get((machine, r), 0)
            for i in range(201):
                ticks.append(ts)
                ts += (100 if i == 50 and late else 50) * 1_000_000
            profile(rj.parent / "profile.csv", [9000 + k for k in range(n)], ticks)
            split = machine != "large"
            (rj.parent / "pfprof-stats-before.txt").write_text(stats_text(**split_stats() if split else {}))
            (rj.parent / "pfprof-stats-after.txt").write_text(stats_text(
                ticks=5000 + KNEE_TICKS, ticks_merged=late, **split_stats(SPLIT[(machine, r)]) if split else {}))
    sweep = work + len(list(base.glob("n-*/r-*/run.json"))) * (SETTLE[machine] + IN_RUNNER) + REMAINDER[machine]
    params = json.loads((base / "params.json").read_text())
    params.update(started=iso(T0 + 2000), ended=iso(T0 + 2000 + sweep))
    write_json(base / "params.json", params)


def build_run(root: Path, *, case2=True, testbed=True) -> Path:
    facts = {"small": dict(mf.FACTS["small"]), "large": dict(mf.FACTS["large"], accelerator="kvm")}
    for m in ("small", "large"):
        write_json(root / m / "facts.json", facts[m])
        build_bench(root / m, m)
        if case2:
            build_case2(root / m, m)
    man = mf.manifest({m: {"status": "ok", "facts": facts[m]} for m in facts})
    man["run_id"] = "20261129-bench"
    if testbed:  # what the collector copies from the local testbed's state
        man["testbed"] = {"accelerator": "tcg", "placement": {
            "pinned": True, "reason": "pinned: each of the lab's 2 vCPUs on a core of its own (2 cores)",
            "host_cores": [0, 1], "machines": {"small": [{"vcpu": 0, "thread": 11, "cores": [0]}],
                                               "large": [{"vcpu": 0, "thread": 12, "cores": [1]}]}}}
    write_json(root / "manifest.json", man)
    if testbed:
        write_json(root / "testbed.json", {
            "run_id": "20261129-bench", "lab": "default", "accelerator": "tcg",
            "host": {"cpus": 2, "kernel": "6.1.0-host", "hostname": "labhost"},
            "git_revision": "fedcba9876543210fedcba9876543210fedcba98", "git_dirty": True,
            "steps": [{"name": n, "seconds": s} for n, s in STEPS]})
    return root


@pytest.fixture
def run(tmp_path):
    return build_run(tmp_path / "run")


@pytest.fixture(autouse=True)
def real_doc_untouched():
    before = REAL_DOC.stat().st_mtime_ns if REAL_DOC.exists() else None
    yield
    assert (REAL_DOC.stat().st_mtime_ns if REAL_DOC.exists() else None) == before


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def table(text: str, first_header: str) -> list[dict]:
    """The rows of the text table whose header starts with the columns ``first_header`` (two
    spaces apart, as the cells of every row: a cell holds at most single spaces)."""
    lines = text.splitlines()
    want = cells(first_header)
    start = next(i for i, line in enumerate(lines) if cells(line)[:len(want)] == want and
                 i + 1 < len(lines) and lines[i + 1].startswith("---"))
    header = cells(lines[start])
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(dict(zip(header, cells(line))))
    return rows


def ci(ratios):
    mean = statistics.fmean(ratios)
    half = T_DF2 * statistics.stdev(ratios) / math.sqrt(len(ratios))
    return mean, mean - half, mean + half


LABEL = {"small": "small (256 MiB, TCG)", "large": "large (512 MiB, KVM)"}


# --------------------------------------------------------------------------- the figures

def test_overhead_ratios_and_confidence_intervals(run, tmp_path):
    p = analysis("bench", run, "--doc", tmp_path / "bench.md")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    rows = table(p.stdout, "machine  N  profiler")
    assert len(rows) == 2 * 3 * 3
    for m, by_cond in RATIOS.items():
        for cond, by_n in by_cond.items():
            for n, ratios in by_n.items():
                row = next(r for r in rows if r["machine"] == LABEL[m] and r["N"] == str(n)
                           and r["profiler"] == cond)
                mean, lo, hi = ci(ratios)
                assert row["rounds"] == "3"
                assert row["ratio"] == f"{mean:.4f}"
                assert row["95% CI"] == f"[{lo:.4f}, {hi:.4f}]"
                assert row["min-max"] == f"{min(ratios):.4f}-{max(ratios):.4f}"
                assert row["overhead"] == f"{100 * (mean - 1):+.2f}%"
                cpus = list(CPU_S[cond])
                if cond == "pfprof":  # the monitor's CPU plus the module's sampling work
                    a, slope = HANDLER[m]
                    cpus = [c + t * (a + slope * n) / 1e9 for c, t in zip(cpus, TICKS)]
                cpu = 100 * statistics.fmean(cpus) / statistics.fmean(WALL_NONE[n])
                assert row["profiler CPU"] == f"{cpu:.2f}%"
    # e.g. small, pfprof, N=1: 1.001 +- 4.303 x 0.002 / sqrt(3)
    row = next(r for r in rows if r["machine"] == LABEL["small"] and r["N"] == "1" and r["profiler"] == "pfprof")
    assert (row["ratio"], row["95% CI"]) == ("1.0010", "[0.9960, 1.0060]")


def test_handler_time_line_and_fidelity(run, tmp_path):
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 0, p.stderr
    rows = table(p.stdout, "machine  N  cells")
    for m, (a, b) in HANDLER.items():
        for n in NS:
            row = next(r for r in rows if r["machine"] == LABEL[m] and r["N"] == str(n))
            us = (a + b * n) / 1000
            assert (row["cells"], row["ticks"]) == ("3", str(sum(TICKS)))
            assert row["us/tick"] == f"{us:.2f}"
            assert row["% of interval"] == f"{100 * us / (INTERVAL_MS * 1000):.3f}%"
    words = " ".join(p.stdout.split())
    assert ("small (256 MiB, TCG): 3.00 + 0.700 x N us (least squares), R^2 = 1.000: linear in the number "
            "of processes (R^2 >= 0.9); 0.700 us per process; at N=32: 25.40 us = 0.051% of 50 ms") in words
    assert "large (512 MiB, KVM): 10.00 + 1.800 x N us" in words
    assert "small (256 MiB, TCG): idle (one sleeping process, bench/idle): 2.50 us per tick over 1000 ticks" \
        in words

    fid = table(p.stdout, "machine  scope")
    idle = next(r for r in fid if r["machine"] == LABEL["small"] and r["scope"] == "idle")
    # 1000 intervals (the U record 13 ms after the last tick is not a tick), 2 of them late
    assert (idle["intervals"], idle["within 1 jiffy"], idle["worst"]) == ("1000", "99.80%", "75.0 ms")
    assert (idle["dropped (monitor)"], idle["dropped (stats)"], idle["ticks_merged"]) == ("0", "0", "0")
    knee = next(r for r in fid if r["machine"] == LABEL["small"] and r["scope"] != "idle")
    # N* = 3: two profiles of 200 intervals, one of them 100 ms (a merged tick)
    assert knee["scope"] == "N=3 (N*)"
    assert (knee["profiles"], knee["intervals"], knee["within 1 jiffy"]) == ("2", "400", f"{100 * 399 / 400:.2f}%")
    assert (knee["worst"], knee["ticks_merged"]) == ("100.0 ms", "1")
    large = next(r for r in fid if r["machine"] == LABEL["large"] and r["scope"] != "idle")
    assert (large["scope"], large["within 1 jiffy"]) == ("N=4 (largest N, no knee)", "100.00%")


def expected_split(deltas, ticks):
    """The split row and JSON values from the fixture's deltas, summed over the runs."""
    timer, queue, t_over, q_over = (sum(col) for col in zip(*deltas))
    return {"timer late ms/tick": f"{timer / ticks / 1e6:.3f}", "queue delay ms/tick": f"{queue / ticks / 1e6:.3f}",
            "from timer": f"{100 * timer / (timer + queue):.1f}%",
            "from queue": f"{100 * queue / (timer + queue):.1f}%",
            "timer late > 1 jiffy": str(t_over), "queue delay > 1 jiffy": str(q_over)}


def split_rows(stdout: str) -> dict:
    return {(r["machine"], r["scope"]): r for r in table(stdout, "machine  scope  runs with split")}


def test_lateness_split_timer_and_queue(run):
    p = analysis("bench", run, "--no-doc", "--json")
    assert p.returncode == 0, p.stderr
    js = json.loads(p.stdout)
    fid = {(f["machine"], f["scope"]): f for f in js["fidelity"]}
    knee = [SPLIT[("small", r)] for r in (1, 2)]
    timer, queue, t_over, q_over = (sum(col) for col in zip(*knee))
    d = fid[("small", "N=3")]
    assert (d["lateness_split_runs"], d["lateness_split_ticks"]) == (2, 2 * KNEE_TICKS)
    assert (d["timer_late_ns_sum"], d["queue_delay_ns_sum"]) == (timer, queue)
    assert d["timer_late_share_pct"] == pytest.approx(100 * timer / (timer + queue))
    assert d["queue_delay_share_pct"] == pytest.approx(100 * queue / (timer + queue))
    assert d["timer_late_mean_ms"] == pytest.approx(timer / (2 * KNEE_TICKS) / 1e6)
    assert d["queue_delay_mean_ms"] == pytest.approx(queue / (2 * KNEE_TICKS) / 1e6)
    assert (d["timer_late_ticks_over_jiffy"], d["queue_delay_ticks_over_jiffy"]) == (t_over, q_over)
    # large's N* stats have no split (an older module): None, the existing keys still there
    old = fid[("large", "N=4")]
    assert old["lateness_split_runs"] == 0 and old["ticks_merged"] == 0
    assert all(old[k] is None for k in ("timer_late_ns_sum", "queue_delay_ns_sum", "timer_late_share_pct",
                                        "timer_late_ticks_over_jiffy", "queue_delay_ticks_over_jiffy"))
    assert fid[("large", "idle")]["timer_late_ns_sum"] == SPLIT[("idle", 1)][0]

    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 0, p.stderr
    rows = split_rows(p.stdout)
    for m in ("small", "large"):
        idle = rows[(LABEL[m], "idle")]
        assert idle == {"machine": LABEL[m], "scope": "idle", "runs with split": "1 of 1",
                        **expected_split([SPLIT[("idle", 1)]], IDLE_TICKS)}
    small = rows[(LABEL["small"], "N=3 (N*)")]
    assert small == {"machine": LABEL["small"], "scope": "N=3 (N*)", "runs with split": "2 of 2",
                     **expected_split(knee, 2 * KNEE_TICKS)}
    large = rows[(LABEL["large"], "N=4 (largest N, no knee)")]
    assert large["runs with split"] == "0 of 2"
    assert {large[k] for k in expected_split(knee, 1)} == {"n/a"}


def test_lateness_split_from_the_runs_that_have_it(run):
    """One repeat's stats from an older module: the split is of the other repeat alone."""
    after = run / "small" / "case2" / "n-03" / "r-2" / "pfprof-stats-after.txt"
    after.write_text("".join(line + "\n" for line in after.read_text().splitlines()
                             if line.split()[0] not in SPLIT_KEYS))
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 0, p.stderr
    row = split_rows(p.stdout)[(LABEL["small"], "N=3 (N*)")]
    assert row == {"machine": LABEL["small"], "scope": "N=3 (N*)", "runs with split": "1 of 2",
                   **expected_split([SPLIT[("small", 1)]], KNEE_TICKS)}
    fid = table(p.stdout, "machine  scope")
    assert next(r for r in fid if r["scope"] == "N=3 (N*)")["ticks_merged"] == "1"     # the rest unchanged


def test_runner_time_of_a_sweep_run_by_one_runner_process(run):
    """Today's sweep is one runner process (every run.json has its runner_started):
    each run is charged from the previous run's end, not from that start."""
    runs = sorted((run / "small" / "case2").glob("n-*/r-*/run.json"),
                  key=lambda rj: json.loads(rj.read_text())["started"])
    first = json.loads(runs[0].read_text())["runner_started"]
    for rj in runs:
        obj = json.loads(rj.read_text())
        obj["runner_started"] = first
        rj.write_text(json.dumps(obj))
    p = analysis("bench", run, "--no-doc", "--json")
    assert p.returncode == 0, p.stderr
    small = next(m for m in json.loads(p.stdout)["testbed"]["machines"] if m["machine"] == "small")
    # the fixture's timeline: a run ends 5 s + settling + 0.5 s + its work + 1 s after the one before
    expected = IN_RUNNER + (len(runs) - 1) * (5.0 + 0.5 + 1.0)
    assert small["in_runner_runs"] == len(runs)
    assert small["in_runner_s"] == pytest.approx(expected)
    assert small["remainder_s"] == pytest.approx(small["sweep_s"] - small["work_s"] - small["settle_s"] - expected)


def test_testbed_overhead_and_targets(run, tmp_path):
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 0, p.stderr
    rows = table(p.stdout, "machine  runs")
    for m in ("small", "large"):
        walls = [rep[2] for n in (1, 2, 3, 4) for rep in mf.SWEEP[(m, n)][:2]]
        work, runs = sum(walls), len(walls)
        settle, runner = runs * SETTLE[m], runs * IN_RUNNER
        sweep = work + settle + runner + REMAINDER[m]
        rest = sweep - work
        row = next(r for r in rows if r["machine"] == LABEL[m])
        assert (row["runs"], row["work s"], row["sweep s"]) == (str(runs), f"{work:.1f}", f"{sweep:.1f}")
        assert row["sweep/work"] == f"{sweep / work:.3f}"
        assert row["settling s"] == f"{settle:.1f} ({100 * settle / rest:.0f}%)"
        assert row["runner s"] == f"{runner:.1f} ({100 * runner / rest:.0f}%)"
        assert row["remainder s"] == f"{REMAINDER[m]:.1f} ({100 * REMAINDER[m] / rest:.0f}%)"
    large_work = sum(rep[2] for n in (1, 2, 3, 4) for rep in mf.SWEEP[("large", n)][:2])
    words = " ".join(p.stdout.split())
    assert (f"Overall: the sweep step took 200.0 s (testbed.json) against {large_work:.1f} s of work on "
            f"large (512 MiB, KVM), the machine with the most RAM: {200 / large_work:.3f}x.") in words
    steps = table(p.stdout, "step")
    assert [(s["step"], s["seconds"]) for s in steps] == [(n, f"{s:.1f}") for n, s in STEPS] + \
        [("total", f"{sum(s for _, s in STEPS):.1f}")]

    targets = table(p.stdout, "target")
    def result(target, machine):
        return next((r["result"], r["by"]) for r in targets if r["target"] == target and r["machine"] == machine)
    mean32 = statistics.fmean(RATIOS["large"]["pfprof"][32])
    assert result("pfprof overhead <= 0.2% (mean ratio <= 1.002), N=32", LABEL["large"]) == \
        ("missed", f"{100 * (mean32 - 1.002):.2f} pp")
    # small N=32: mean 1.001 but the CI, 1.001 +- 4.303 x 0.0005 / sqrt(3), reaches 1.00224
    lo, hi = ci(RATIOS["small"]["pfprof"][32])[1:]
    assert result("pfprof overhead <= 0.2% (mean ratio <= 1.002), N=32", LABEL["small"]) == \
        ("not shown", f"CI reaches {100 * (hi - 1):+.2f}%")
    # large N=1: three equal ratios, a CI of zero width inside the limit
    assert result("pfprof overhead <= 0.2% (mean ratio <= 1.002), N=1", LABEL["large"]) == ("met", "0.10 pp")
    assert result("pfprof below perf and the poller, N=32", LABEL["large"]) == ("missed", "0.10 pp above perf")
    assert result("pfprof below perf and the poller, N=32", LABEL["small"]) == ("met", "1.30 pp below perf")
    assert result("handler time at N=32 < 0.1% of interval_ms", LABEL["small"]) == ("met", "0.049 pp")
    assert result("handler time at N=32 < 0.1% of interval_ms", LABEL["large"]) == ("missed", "0.035 pp")
    assert result("handler time linear in N (R^2 >= 0.9)", LABEL["small"]) == ("met", "0.100")
    assert result("ticks within 1 jiffy idle >= 99.9%", LABEL["small"]) == ("missed", "0.10 pp")
    assert result("ticks within 1 jiffy at N* >= 99.0%, N=3", LABEL["small"]) == ("met", "0.75 pp")
    assert result("0 records dropped", LABEL["small"]) == ("met", "0")
    assert result("sweep wall <= 1.1 x work time", LABEL["small"]) == ("missed", f"{320 / 262 - 1.10:.3f}")
    assert result("sweep wall <= 1.1 x work time", LABEL["large"]) == ("missed", f"{196 / 172 - 1.10:.3f}")

    # the discussion names the numbers at the largest N and the largest part of the testbed's overhead
    s_pf, p_lo, p_hi = ci(RATIOS["small"]["pfprof"][32])
    assert (f"At 32 processes pfprof cost {100 * (s_pf - 1):+.2f}% [{100 * (p_lo - 1):+.2f}%, "
            f"{100 * (p_hi - 1):+.2f}%] against +1.40% for perf and +3.20% for the poller in wall time on small "
            f"(256 MiB, TCG): the cheapest of the three.") in words
    # large: perf's mean (1.004) lies inside pfprof's interval (1.005 +- 0.0025): no order is claimed
    assert ("for the poller in wall time on large (512 MiB, KVM): the three are not told apart, the 95% interval "
            "is wider than their differences.") in words
    assert words.count("By the CPU each one took while the work ran") == 2
    a, slope = HANDLER["small"]
    wall = statistics.fmean(WALL_NONE[32])
    pf_cpu = 100 * statistics.fmean(c + t * (a + slope * 32) / 1e9 for c, t in zip(CPU_S["pfprof"], TICKS)) / wall
    perf_cpu, poll_cpu = (100 * statistics.fmean(CPU_S[p]) / wall for p in ("perf", "poller"))
    assert (f"pfprof cost {pf_cpu:.2f}% of the work's time at 32 processes against {perf_cpu:.2f}% for perf and "
            f"{poll_cpu:.2f}% for the poller: the cheapest of the three.") in words
    assert ("The testbed's own overhead is largest on small (256 MiB, TCG): the sweep took 1.22x its 262 s "
            "of work; of the 58 s beyond the work, settling between runs took 16 s (28%), the runner outside "
            "the work took 12 s (21%), starting and ending the sweep (Ansible, ssh, interpreter start-up) took "
            "30 s (52%): the largest part is starting and ending the sweep (Ansible, ssh, interpreter "
            "start-up).") in words


def test_header_labels_machines_and_accelerators(run):
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Benchmark of run 20261129-bench\n")
    assert "git revision: fedcba9876543210fedcba9876543210fedcba98 (dirty: uncommitted changes)" in p.stdout
    assert "host: 2 CPUs, kernel 6.1.0-host, labhost" in p.stdout
    assert "vCPUs: pinned: each of the lab's 2 vCPUs on a core of its own (2 cores)" in p.stdout
    machines = table(p.stdout, "machine  RAM")
    assert machines == [
        {"machine": "small (256 MiB, TCG)", "RAM": "256 MiB", "swap": "512 MiB", "vCPUs": "1",
         "kernel": "6.1.0-28-amd64", "accelerator": "tcg", "host cores": "0"},
        {"machine": "large (512 MiB, KVM)", "RAM": "512 MiB", "swap": "512 MiB", "vCPUs": "1",
         "kernel": "6.1.0-28-amd64", "accelerator": "kvm", "host cores": "1"}]
    params = table(p.stdout, "machine  rounds")
    assert params[0]["rounds"] == "3/3" and params[0]["N"] == "1,8,32"
    assert params[0]["work"] == "16 MiB mode R 2000000 accesses (10000/iteration)"


# --------------------------------------------------------------------------- doc, JSON, notes

def test_doc_is_written_where_asked_and_matches(run, tmp_path):
    doc = tmp_path / "out" / "x.md"
    doc.parent.mkdir()
    p = analysis("bench", run, "--doc", doc)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(f"\nwritten: {doc}\n")
    md = doc.read_text()
    assert md.startswith("# Benchmark of run 20261129-bench\n")
    assert sorted(x.name for x in doc.parent.iterdir()) == ["x.md"]       # no temporary left behind
    mean, lo, hi = ci(RATIOS["small"]["pfprof"][1])
    assert f"| small (256 MiB, TCG) | 1 | pfprof | 3 | {mean:.4f} | [{lo:.4f}, {hi:.4f}] |" in md
    for heading in ("## Overhead", "## Work handler time per tick", "## Fidelity of the 50 ms ticks",
                    "## Testbed overhead", "## Targets", "## Discussion"):
        assert heading in md
    if not (ROOT / "docs" / "benchmarks-notes.md").exists():     # the default --notes
        assert "## Notes" not in md


def test_no_doc_writes_nothing(run, tmp_path):
    before = sorted(str(x) for x in tmp_path.rglob("*"))
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 0, p.stderr
    assert "written:" not in p.stdout
    assert sorted(str(x) for x in tmp_path.rglob("*")) == before


def test_json(run, tmp_path):
    doc = tmp_path / "j.md"
    p = analysis("bench", run, "--json", "--doc", doc)
    assert p.returncode == 0
    assert p.stderr == f"written: {doc}\n" and doc.exists()
    js = json.loads(p.stdout)
    assert js["run_id"] == "20261129-bench" and js["git_dirty"] is True
    row = next(r for r in js["overhead"] if (r["machine"], r["n"], r["profiler"]) == ("small", 32, "perf"))
    mean, lo, hi = ci(RATIOS["small"]["perf"][32])
    assert row["ratios"] == pytest.approx(RATIOS["small"]["perf"][32])
    assert (row["ratio_mean"], row["ci_low"], row["ci_high"]) == (pytest.approx(mean), pytest.approx(lo),
                                                                 pytest.approx(hi))
    fit = next(f for f in js["handler_fit"] if f["machine"] == "large")
    assert (fit["intercept_us"], fit["slope_us_per_process"], fit["r2"], fit["linear"]) == \
        (pytest.approx(10.0), pytest.approx(1.8), pytest.approx(1.0), True)
    idle = next(f for f in js["fidelity"] if f["machine"] == "small" and f["scope"] == "idle")
    assert (idle["intervals"], idle["within"], idle["share_pct"]) == (1000, 998, pytest.approx(99.8))
    tb = next(t for t in js["testbed"]["machines"] if t["machine"] == "small")
    assert tb["ratio"] == pytest.approx(320 / 262) and tb["in_runner_s"] == pytest.approx(8 * IN_RUNNER)
    assert js["testbed"]["overall"]["machine"] == "large"
    assert {t["met"] for t in js["targets"]} == {True, False}
    assert len(js["discussion"]) == 5       # wall and CPU per machine, the testbed
    assert [w for w in js["warnings"] if not CASE2_FALLBACK.match(f"analysis: warning: {w}\n")] == []


def test_notes_are_included_verbatim(run, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("Idle fidelity missed by 0.1 pp: two **late** ticks.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    doc = tmp_path / "d.md"
    p = analysis("bench", run, "--doc", doc, "--notes", notes)
    assert p.returncode == 0, p.stderr
    assert f"notes: {notes}\n" in p.stdout and "two **late** ticks" not in p.stdout
    md = doc.read_text()
    assert "\n## Notes\n\n" + notes.read_text() in md
    p = analysis("bench", run, "--no-doc", "--notes", tmp_path / "nope.md")
    assert (p.returncode, p.stderr) == (2, f"analysis: error: {tmp_path / 'nope.md'}: no such file\n")


# --------------------------------------------------------------------------- partial and bad input

def test_without_case2_and_testbed_the_rest_still_works(tmp_path):
    run = build_run(tmp_path / "run", case2=False, testbed=False)
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 0, p.stderr
    assert "host: not measured in this run (no testbed.json)" in p.stdout
    assert "vCPUs: not measured in this run (no placement in the manifest" in p.stdout
    assert {r["host cores"] for r in table(p.stdout, "machine  RAM")} == {"not pinned"}
    rows = table(p.stdout, "machine  runs")
    assert [(r["machine"], r["runs"], r["sweep/work"]) for r in rows] == \
        [(LABEL[m], "not measured in this run", "-") for m in ("small", "large")]
    assert "Whole sweep step and the other steps: not measured in this run (no testbed.json)." in p.stdout
    targets = table(p.stdout, "target")
    assert next(r for r in targets if r["target"] == "ticks within 1 jiffy at N* >= 99.0%")["measured"] == \
        "not measured in this run"
    assert len(table(p.stdout, "machine  N  profiler")) == 18      # the benchmark itself is all there


def test_a_failed_cell_is_left_out_with_a_warning(run):
    r2 = run / "small/bench/overhead/r-02.json"
    obj = json.loads(r2.read_text())
    cell = next(c for c in obj["cells"] if (c["n"], c["condition"]) == (8, "perf"))
    cell.update(ok=False, exit_codes=[0, 0, 1, 0, 0, 0, 0, 0])
    r2.write_text(json.dumps(obj))
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 0
    assert p.stderr == (f"analysis: warning: {r2}: cell 7 (N=8 perf) failed (ok false, exit codes "
                        f"[0, 0, 1, 0, 0, 0, 0, 0]); left out\n")
    ratios = [RATIOS["small"]["perf"][8][i] for i in (0, 2)]
    row = next(r for r in table(p.stdout, "machine  N  profiler")
               if (r["machine"], r["N"], r["profiler"]) == (LABEL["small"], "8", "perf"))
    half = 12.706 * statistics.stdev(ratios) / math.sqrt(2)
    mean = statistics.fmean(ratios)
    assert (row["rounds"], row["ratio"], row["95% CI"]) == ("2", f"{mean:.4f}", f"[{mean - half:.4f}, "
                                                                                   f"{mean + half:.4f}]")


def test_handler_cost_that_is_not_linear(run):
    for r, ticks in enumerate(TICKS, start=1):
        path = run / f"small/bench/overhead/r-{r:02d}.json"
        obj = json.loads(path.read_text())
        for c in obj["cells"]:
            if c["condition"] == "pfprof":
                c["pfprof"]["work_ns_sum"] = ticks * {1: 50_000, 8: 5_000, 32: 50_000}[c["n"]]
        path.write_text(json.dumps(obj))
    p = analysis("bench", run, "--no-doc", "--json")
    fit = next(f for f in json.loads(p.stdout)["handler_fit"] if f["machine"] == "small")
    xs, ys = NS, [50.0, 5.0, 50.0]
    xm, ym = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - xm) * (y - ym) for x, y in zip(xs, ys)) / sum((x - xm) ** 2 for x in xs)
    a = ym - b * xm
    r2 = 1 - sum((y - a - b * x) ** 2 for x, y in zip(xs, ys)) / sum((y - ym) ** 2 for y in ys)
    assert (fit["slope_us_per_process"], fit["r2"], fit["linear"]) == (pytest.approx(b), pytest.approx(r2), False)
    p = analysis("bench", run, "--no-doc")
    target = next(r for r in table(p.stdout, "target")
                  if r["target"] == "handler time linear in N (R^2 >= 0.9)" and r["machine"] == LABEL["small"])
    assert (target["result"], target["measured"]) == ("missed", f"R^2 {r2:.3f}, {b:.3f} us/process")


def test_corrupt_round_file_is_an_error_naming_it(run):
    r1 = run / "large/bench/overhead/r-01.json"
    r1.write_text(r1.read_text()[:200])
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 2 and p.stdout == ""
    assert re.fullmatch(rf"analysis: error: {re.escape(str(r1))}:\d+: invalid JSON: .*\n", p.stderr)
    obj = {"round": 1, "cells": [{"n": 1, "condition": "none", "ok": True, "wall_s": "ten"}]}
    r1.write_text(json.dumps(obj))
    p = analysis("bench", run, "--no-doc")
    assert (p.returncode, p.stderr) == (2, f"analysis: error: {r1}: cell 1: key 'wall_s': expected a number, "
                                           f"found \"ten\"\n")


def test_a_run_without_bench_is_an_error(run, tmp_path):
    for m in ("small", "large"):
        shutil.rmtree(run / m / "bench")
    doc = tmp_path / "x.md"
    p = analysis("bench", run, "--doc", doc)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == (f"analysis: error: {run}: no machine has a bench/ directory: this run has no "
                        "benchmark (run the benchmark command, ./bench.sh)\n")
    assert not doc.exists()


def test_bad_idle_profile_and_testbed_are_errors(run):
    prof = run / "small/bench/idle/profile.csv"
    prof.write_text(prof.read_text()[:-7])
    p = analysis("bench", run, "--no-doc")
    assert p.returncode == 2
    assert p.stderr.startswith(f"analysis: error: {prof}:") and "(file truncated?)" in p.stderr
    build_bench(run / "small", "small")
    tb = run / "testbed.json"
    tb.write_text(json.dumps({"steps": [{"name": "boot", "seconds": "slow"}]}))
    p = analysis("bench", run, "--no-doc")
    assert (p.returncode, p.stderr) == (2, f"analysis: error: {tb}: step 1 (boot): key 'seconds': expected a "
                                           f"number, found \"slow\"\n")


def test_help_lists_bench():
    top = analysis("--help")
    assert "bench" in top.stdout and "docs/benchmarks.md" in top.stdout
    p = analysis("bench", "--help")
    assert p.returncode == 0 and "--no-doc" in p.stdout and "--notes FILE" in p.stdout
    assert "ratios per round" in p.stdout
