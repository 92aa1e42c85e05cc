"""Case Study 2 from pfprof's profile, on real collected runs (tests/fixtures/README.md).

vm-sweep: the default lab under TCG, N = 1-5 on the 256 MiB machine (knee at
4) and N = 1-2 on the 512 MiB one, one repeat, 8 s timed phases.
vm-timeout: N = 6 with 30 s timed phases bounded by a 20 s case2_timeout, so
the runner stopped every process (exit code 124, work's "interrupted": true).

The reference numbers are computed here from the files with the csv and json
modules, not with the analysis code: the work processes' own getrusage since
registration (work-K.json), and the records' sums.
"""
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "tests/fixtures/results/vm-sweep"
TIMEOUT = ROOT / "tests/fixtures/results/vm-timeout"


def analysis(*args):
    return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def case2_json(run, *extra):
    p = analysis("case2", run, "--no-plots", "--json", *extra)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p.stderr


def runs_of(run):
    for rdir in sorted(run.glob("*/case2/n-*/r-*")):
        works = [json.loads(p.read_text()) for p in sorted(rdir.glob("work-*.json"))]
        with open(rdir / "profile.csv", newline="") as f:
            records = [{k: int(v) for k, v in row.items()} for row in csv.DictReader(f)]
        yield rdir, works, records


def test_profile_totals_match_getrusage_since_registration():
    """pfprof's records of each process sum to its getrusage since registration: faults within
    1%, CPU within 2% (so the utilization from the profile is within 2% of getrusage's)."""
    checked = 0
    for rdir, works, records in runs_of(SWEEP):
        for w in works:
            mine = [r for r in records if r["pid"] == w["pid"]]
            assert mine, (rdir, w["pid"])
            minflt = w["minflt"] - w["minflt_after_register"]
            majflt = w["majflt"] - w["majflt_after_register"]
            cpu = w["utime_s"] + w["stime_s"] - w["cpu_before_register_s"]
            assert abs(sum(r["minflt"] for r in mine) - minflt) <= 0.01 * minflt, rdir
            assert abs(sum(r["majflt"] for r in mine) - majflt) <= max(0.01 * majflt, 0), rdir
            assert abs(sum(r["cpu_ns"] for r in mine) / 1e9 - cpu) <= 0.02 * cpu, rdir
            checked += 1
    assert checked == 1 + 2 + 3 + 4 + 5 + 1 + 2


def test_every_run_is_read_from_the_profile_and_the_difference_is_reported():
    rows, stderr = case2_json(SWEEP)
    assert stderr == ""
    assert [(r["machine"], r["n"]) for r in rows] == [("small", n) for n in range(1, 6)] + [("large", 1),
                                                                                            ("large", 2)]
    for row in rows:
        assert (row["source"], row["source_counts"], row["source_reasons"]) == ("profile", {"profile": 1}, [])
        run = row["runs"][0]
        assert run["source"] == "profile" and run["source_reason"] is None
        diff = run["profile_diff_pct"]
        assert set(diff) == {"minflt_pct", "majflt_pct", "cpu_s_pct"}
        assert abs(diff["minflt_pct"]) <= 1 and abs(diff["majflt_pct"]) <= 1 and abs(diff["cpu_s_pct"]) <= 2
        assert row["utilization_cpus"] == pytest.approx(run["utilization_cpus"], abs=1e-3)


def test_utilization_and_rates_are_those_of_the_timed_window():
    """Recomputed here: the records inside [first start_mono_ns, last end_mono_ns] (pfprof's
    ts_ns and work's times are both CLOCK_MONOTONIC), against the analysis's pro-rata sums.
    The difference can only come from the two edge records of each process (50 ms each)."""
    rows, _ = case2_json(SWEEP)
    by_run = {(r["machine"], r["n"]): r["runs"][0] for r in rows}
    for rdir, works, records in runs_of(SWEEP):
        t0 = min(w["start_mono_ns"] for w in works)
        t1 = max(w["end_mono_ns"] for w in works)
        window = (t1 - t0) / 1e9
        inside = [r for r in records if t0 < r["ts_ns"] <= t1]
        cpu = sum(r["cpu_ns"] for r in inside) / 1e9
        edge = 2 * 0.05 * len(works)        # two 50 ms records per process at the edges, at most
        got = by_run[(rdir.parts[-4], int(rdir.parts[-2][2:]))]
        assert got["window_s"] == pytest.approx(window, abs=1e-3)
        assert abs(got["utilization_cpus"] * window - cpu) <= edge + 1e-6, rdir
        assert 0 < got["utilization_cpus"] <= 1.02      # one vCPU per machine
        maj = sum(r["majflt"] for r in inside)
        assert got["majflt_per_s"] * window == pytest.approx(maj, rel=0.1, abs=3), rdir
        timed = sum(w["majflt_timed"] for w in works)
        assert got["majflt_per_s"] * window == pytest.approx(timed, rel=0.1, abs=3), rdir


def test_the_knee_reads_the_timed_window_and_thrashing_starts_in_it():
    p = analysis("compare", SWEEP, "--no-plots", "--json")
    assert p.returncode == 0 and p.stderr == ""
    small, large = json.loads(p.stdout)
    assert (small["thrashing_n"], large["thrashing_n"]) == (4, None)
    rows, _ = case2_json(SWEEP)
    at = next(r for r in rows if (r["machine"], r["n"]) == ("small", 4))["runs"][0]
    assert small["majflt_per_s_at_n"] == pytest.approx(at["majflt_per_s"], abs=0.1)
    # in memory before the knee: no onset; at the knee the rate is above the in-memory level
    # through nearly the whole window
    for row in rows:
        run = row["runs"][0]
        if run["in_memory"]:
            assert (run["thrashing_onset_s"], run["thrashing_share"]) == (None, 0.0)
    assert small["thrashing_onset_s"] == at["thrashing_onset_s"] and 0 <= at["thrashing_onset_s"] < 1
    assert small["thrashing_share"] == at["thrashing_share"] > 0.5
    assert small["source"] == "profile" and small["dropped_repeats"] == []


def _copy(tmp_path, src=SWEEP):
    run = tmp_path / "run"
    shutil.copytree(src, run)
    return run


def _rewrite(path, edit):
    lines = path.read_text().splitlines(True)
    path.write_text("".join(edit(lines)))


def _run_row(run, machine="small", n=4):
    rows, stderr = case2_json(run)
    return next(r for r in rows if (r["machine"], r["n"]) == (machine, n)), stderr


def test_records_removed_from_the_profile_raise_the_flag(tmp_path):
    run = _copy(tmp_path)
    prof = run / "small/case2/n-04/r-1/profile.csv"
    _rewrite(prof, lambda lines: lines[:1] + [ln for i, ln in enumerate(lines[1:]) if i % 10 != 5])
    row, stderr = _run_row(run)
    assert f"analysis: warning: {prof}: the profile disagrees with getrusage since registration: " in stderr
    assert stderr.rstrip().endswith("; this run falls back to getrusage (work JSONs)")
    assert (row["source"], row["runs"][0]["source"]) == ("getrusage", "getrusage")
    assert row["source_reasons"][0].startswith(f"r-1: {prof}: the profile disagrees")


def test_a_changed_value_raises_the_flag(tmp_path):
    run = _copy(tmp_path)
    prof = run / "small/case2/n-04/r-1/profile.csv"

    def more_cpu(lines):
        out = list(lines)
        for i in range(1, len(out)):
            f = out[i].split(",")
            f[5] = str(int(f[5]) * 2)
            out[i] = ",".join(f)
        return out
    _rewrite(prof, more_cpu)
    row, stderr = _run_row(run)
    assert "cpu_s" in stderr and "(+100.0" in stderr
    assert row["source"] == "getrusage"


def test_faults_moved_in_time_change_the_result(tmp_path):
    """Totals unchanged (no flag), but the window's share changes: the profile is really read."""
    run = _copy(tmp_path)
    prof = run / "small/case2/n-04/r-1/profile.csv"
    works = [json.loads(p.read_text()) for p in sorted(prof.parent.glob("work-*.json"))]
    t0 = min(w["start_mono_ns"] for w in works)
    before, _ = _run_row(run)

    def to_the_fill(lines):
        # every major fault of the timed phase moved to the same process's first record
        out = [ln.split(",") for ln in lines]
        first, moved = {}, {}
        for f in out[1:]:
            pid = f[2]
            first.setdefault(pid, f)
            if int(f[0]) > t0:
                moved[pid] = moved.get(pid, 0) + int(f[4])
                f[4] = "0"
        for pid, n in moved.items():
            first[pid][4] = str(int(first[pid][4]) + n)
        return [",".join(f) for f in out]
    _rewrite(prof, to_the_fill)
    after, stderr = _run_row(run)
    assert stderr == "" and after["source"] == "profile"
    assert before["majflt_per_s_mean"] > 100 and after["majflt_per_s_mean"] == 0
    assert after["runs"][0]["thrashing_onset_s"] is None


@pytest.mark.parametrize("edit, line, what", [
    (lambda lines: lines[:40] + [lines[40][:9]], 41, "expected 7 fields, found 1 (file truncated?)"),
    (lambda lines: lines[:7] + [lines[7].replace(",", ",x", 1)] + lines[8:], 8, "column 'jiffies': not an integer"),
    (lambda lines: lines[:5] + ["-" + lines[5]] + lines[6:], 6, "column 'ts_ns': negative value"),
    (lambda lines: ["ts_ns,jiffies,pid,minflt,majflt,flags\n"] + lines[1:], 1, "missing column(s) cpu_ns"),
    (lambda lines: lines[:1], None, "no record (a header only)"),
    (lambda lines: [], 1, "empty file (no header row)"),
])
def test_bad_profiles_name_the_file_and_line_and_fall_back(tmp_path, edit, line, what):
    run = _copy(tmp_path)
    prof = run / "small/case2/n-02/r-1/profile.csv"
    _rewrite(prof, edit)
    row, stderr = _run_row(run, n=2)
    where = f"{prof}:{line}" if line else f"{prof}"
    assert stderr.startswith(f"analysis: warning: {where}: {what}"), stderr
    assert stderr.endswith("; this run falls back to getrusage (work JSONs)\n")
    assert row["source"] == "getrusage" and row["source_reasons"][0].startswith(f"r-1: {where}: {what}")
    # the fallback's rates: getrusage's timed-phase counts over the same window
    works = [json.loads(p.read_text()) for p in sorted(prof.parent.glob("work-*.json"))]
    window = (max(w["end_mono_ns"] for w in works) - min(w["start_mono_ns"] for w in works)) / 1e9
    assert row["majflt_per_s_mean"] == pytest.approx(sum(w["majflt_timed"] for w in works) / window)


def test_time_going_backwards_in_a_process_is_an_error_naming_the_line(tmp_path):
    run = _copy(tmp_path)
    prof = run / "small/case2/n-01/r-1/profile.csv"
    lines = prof.read_text().splitlines(True)
    f = lines[10].split(",")
    f[0] = str(int(f[0]) - 10**9)
    lines[10] = ",".join(f)
    prof.write_text("".join(lines))
    row, stderr = _run_row(run, n=1)
    assert stderr.startswith(f"analysis: warning: {prof}:11: ts_ns ")
    assert row["source"] == "getrusage"


def test_a_timed_out_run_is_kept_with_its_partial_counts():
    """The runner stopped every process at case2_timeout: exit_codes 124, exit_codes_raw 0,
    each work JSON "interrupted": true.  Kept, read from its profile, marked interrupted."""
    for rj in TIMEOUT.glob("*/case2/n-*/r-*/run.json"):
        obj = json.loads(rj.read_text())
        assert obj["timed_out"] is True and set(obj["exit_codes"]) == {124} and set(obj["exit_codes_raw"]) == {0}
    rows, stderr = case2_json(TIMEOUT)
    assert "the run timed out and its work processes were stopped; kept" in stderr
    assert "dropped" not in stderr and "falls back" not in stderr
    for row in rows:
        run = row["runs"][0]
        assert (row["repeats"], row["repeats_dropped"], row["interrupted"]) == (1, 0, 1)
        assert run["interrupted"] is True and run["source"] == "profile"
        works = [json.loads(p.read_text()) for p in
                 sorted((TIMEOUT / row["machine"] / "case2" / f"n-{row['n']:02d}" / "r-1").glob("work-*.json"))]
        assert all(w["interrupted"] for w in works)
        assert row["throughput_mean"] == pytest.approx(sum(w["accesses_per_s"] for w in works))
        assert run["window_s"] < 20       # the part that ran, not the 30 s asked for


def test_dropped_repeats_are_listed_with_their_reason(tmp_path):
    run = _copy(tmp_path, TIMEOUT)
    rj = next(run.glob("*/case2/n-*/r-1/run.json"))
    obj = json.loads(rj.read_text())
    obj["exit_codes_raw"][0] = 137            # really killed: not a clean stop at the timeout
    rj.write_text(json.dumps(obj))
    p = analysis("compare", run, "--no-plots", "--json")
    machine = rj.parts[-5]
    row = next(r for r in json.loads(p.stdout) if r["machine"] == machine) if p.returncode == 0 else None
    reason = f"{rj}: exit codes {obj['exit_codes']} (raw {obj['exit_codes_raw']}), oom_killed 0"
    assert f"analysis: warning: {reason}; this repeat is dropped" in p.stderr
    if row is not None:
        assert row["dropped_repeats"] == [{"n": 6, "repeat": 1, "reason": reason}]
        text = analysis("compare", run, "--no-plots").stdout
        assert f"dropped: {machine}: N=6 r-1: {rj}" in text


def test_series_around_the_knee(tmp_path):
    p = analysis("case2", SWEEP, "--series", "--json", "--no-plots")
    assert p.returncode == 0 and p.stderr == ""
    runs = json.loads(p.stdout)
    assert [(r["machine"], r["n"]) for r in runs] == [("small", 3), ("small", 4), ("small", 5),
                                                      ("large", 1), ("large", 2)]
    for r in runs:
        rdir = SWEEP / r["machine"] / "case2" / f"n-{r['n']:02d}" / "r-1"
        with open(rdir / "profile.csv", newline="") as f:
            records = [{k: int(v) for k, v in row.items()} for row in csv.DictReader(f)]
        # the course's per-tick sums: the records grouped by jiffies
        by_jiffies = {}
        for rec in records:
            t = by_jiffies.setdefault(rec["jiffies"], [0, 0, 0])
            t[0] += rec["minflt"]
            t[1] += rec["majflt"]
            t[2] += rec["cpu_ns"]
        assert {t["jiffies"]: [t["minflt"], t["majflt"], t["cpu_ns"]] for t in r["ticks"]} == by_jiffies
        assert set(r["processes"]) == {str(rec["pid"]) for rec in records}
        slow = r["processes"][str(r["slowest_pid"])]
        assert len(slow) == sum(1 for rec in records if rec["pid"] == r["slowest_pid"]) - 1
    text = analysis("case2", SWEEP, "--series", "--out", tmp_path)
    assert text.returncode == 0
    assert "small N=4 r-1" in text.stdout and "thrashing from 0.04 s" in text.stdout
    assert (tmp_path / "case2-series-small.png").stat().st_size > 0
    assert (tmp_path / "case2-series-large.svg").stat().st_size > 0


def test_a_missing_profile_in_one_repeat_makes_the_n_mixed(tmp_path):
    run = _copy(tmp_path, ROOT / "tests/fixtures/results/good")
    prof = run / "small/case2/n-03/r-2/profile.csv"
    prof.unlink()
    row, stderr = _run_row(run, n=3)
    assert stderr == f"analysis: warning: {prof}: no such file; this run falls back to getrusage (work JSONs)\n"
    assert (row["source"], row["source_counts"]) == ("mixed", {"profile": 1, "getrusage": 1})
    assert row["source_reasons"] == [f"r-2: {prof}: no such file"]
    assert [r["source"] for r in row["runs"]] == ["profile", "getrusage"]
    p = analysis("compare", run, "--no-plots", "--json")
    small = json.loads(p.stdout)[0]
    assert (small["source"], small["source_counts"]) == ("mixed", {"profile": 7, "getrusage": 1})


def test_window_counts_edge_records_pro_rata(tmp_path):
    """A record covers the time since the same pid's previous record."""
    from analysis.profile import read_profile
    prof = tmp_path / "profile.csv"
    prof.write_text("ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags\n"
                    "1000,1,7,10,0,100,2\n"          # first record: counts whole at its time
                    "2000,2,7,20,4,1000,0\n"         # covers (1000, 2000]
                    "3000,3,7,30,8,2000,1\n")        # covers (2000, 3000]
    p = read_profile(prof)
    got = p.window(1500, 2500)[7]
    assert (got.minflt, got.majflt, got.cpu_ns) == (10 + 15, 2 + 4, 500 + 1000)
    assert p.window(0, 1000)[7].minflt == 10
    assert p.totals()[7].cpu_ns == 3100


def test_counters_read_after_unregistering_bound_the_profile(tmp_path):
    """Under thrashing a process can fault and reclaim between work's last getrusage and its
    "U" write (measured: +0.58 s of CPU and one major fault in one process of 11): the
    counters read right after the write (*_at_unregister) bound the records from above."""
    run = _copy(tmp_path)
    rdir = run / "small/case2/n-04/r-1"
    w = json.loads((rdir / "work-1.json").read_text())
    pid, extra_ns = w["pid"], 500_000_000
    before = _run_row(run)[0]["runs"][0]["profile_diff_pct"]
    assert all(abs(v) < 0.1 for v in before.values())

    def late_cpu(lines):    # the process's last record takes 0.5 s more CPU and one major fault
        last = max(i for i, ln in enumerate(lines) if ln.split(",")[2] == str(pid))
        f = lines[last].split(",")
        f[4], f[5] = str(int(f[4]) + 1), str(int(f[5]) + extra_ns)
        return lines[:last] + [",".join(f)] + lines[last + 1:]
    _rewrite(rdir / "profile.csv", late_cpu)
    row, stderr = _run_row(run)
    assert "the profile disagrees with getrusage since registration: " in stderr and "cpu_s" in stderr
    assert row["source"] == "getrusage"
    # the counters after the unregistration saw the same
    cpu = w["utime_s"] + w["stime_s"]
    w.update(minflt_at_unregister=w["minflt"], majflt_at_unregister=w["majflt"] + 1,
             cpu_at_unregister_s=cpu + extra_ns / 1e9)
    (rdir / "work-1.json").write_text(json.dumps(w))
    row, stderr = _run_row(run)
    assert stderr == "" and row["source"] == "profile"
    after = row["runs"][0]["profile_diff_pct"]
    assert all(abs(after[k]) <= abs(before[k]) for k in before), (before, after)
    # ... and bound it: beyond them the flag is raised again, by the part outside
    w["cpu_at_unregister_s"] = cpu + 0.1
    (rdir / "work-1.json").write_text(json.dumps(w))
    row, stderr = _run_row(run)
    assert row["source"] == "getrusage" and "cpu_s" in stderr and ".." in stderr
