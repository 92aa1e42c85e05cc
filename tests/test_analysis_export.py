"""``python -m analysis export``: the tidy long table, checked against the raw files of the
fixtures (tests/fixtures/results) and against ``case2 --json``'s per-run numbers."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tests" / "fixtures" / "results"

COLUMNS = ["run_id", "machine", "memory_mb", "kernel", "suite", "swap_type", "mglru", "cpus", "accelerator",
           "case", "pair", "n", "repeat", "process", "pid", "mode", "mb", "accesses", "seconds",
           "accesses_per_s", "interrupted", "minflt", "majflt", "cpu_s",
           "minflt_profile", "majflt_profile", "cpu_s_profile",
           "window_s", "minflt_window", "majflt_window", "cpu_s_window", "source", "wall_s"]


def analysis(*args, env=None):
    return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def export(run, tmp_path) -> pd.DataFrame:
    out = tmp_path / "tidy.csv"
    p = analysis("export", run, "--out", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{out}\n"
    return pd.read_csv(out)


def processes_in_raw_files(run: Path) -> int:
    """work-K.json files of every collected machine: one per process of every case 2 repeat
    and case 1 pair."""
    manifest = json.loads((run / "manifest.json").read_text())
    ok = [name for name, m in manifest["machines"].items() if m.get("status") == "ok"]
    return sum(len(list((run / name).glob(pattern))) for name in ok
               for pattern in ("case2/n-*/r-*/work-*.json", "case1/pair-*/work-*.json"))


@pytest.mark.parametrize("run", ["good", "vm-sweep", "measured"])
def test_one_row_per_process_of_every_run(run, tmp_path):
    table = export(RESULTS / run, tmp_path)
    assert list(table.columns) == COLUMNS
    assert len(table) == processes_in_raw_files(RESULTS / run)
    keys = ["machine", "case", "pair", "n", "repeat", "process"]
    assert not table.duplicated(keys).any()


def test_a_case2_row_is_its_raw_files(tmp_path):
    run = RESULTS / "good"
    table = export(run, tmp_path)
    row = table[(table.machine == "small") & (table.case == 2) & (table.n == 2) & (table.repeat == 1)
                & (table.process == 2)].iloc[0]
    rdir = run / "small" / "case2" / "n-02" / "r-1"
    work = json.loads((rdir / "work-2.json").read_text())
    facts = json.loads((run / "small" / "facts.json").read_text())
    with open(rdir / "profile.csv") as f:
        records = [r for r in csv.DictReader(f) if int(r["pid"]) == work["pid"]]
    assert row.run_id == json.loads((run / "manifest.json").read_text())["run_id"]
    assert (row.kernel, row.memory_mb, row.cpus, row.accelerator) == (
        facts["kernel"], facts["memory_mb"], facts["cpus"], facts["accelerator"])
    assert (row.pid, row["mode"], row.mb, row.accesses) == (work["pid"], work["mode"], work["mb"], work["accesses"])
    assert (row.minflt, row.majflt) == (work["minflt"], work["majflt"])
    assert row.cpu_s == pytest.approx(work["utime_s"] + work["stime_s"])
    assert row.accesses_per_s == work["accesses_per_s"]
    assert row.minflt_profile == sum(int(r["minflt"]) for r in records)
    assert row.majflt_profile == sum(int(r["majflt"]) for r in records)
    assert row.cpu_s_profile == pytest.approx(sum(int(r["cpu_ns"]) for r in records) / 1e9)
    assert row.wall_s == json.loads((rdir / "run.json").read_text())["wall_s"]
    assert row.source == "profile"
    assert pd.isna(row.pair)


def test_a_case1_row_is_its_raw_files(tmp_path):
    run = RESULTS / "good"
    table = export(run, tmp_path)
    row = table[(table.machine == "large") & (table.case == 1) & (table.pair == "pair-B")
                & (table.process == 2)].iloc[0]
    pdir = run / "large" / "case1" / "pair-B"
    work = json.loads((pdir / "work-2.json").read_text())
    with open(pdir / "profile.csv") as f:
        records = [r for r in csv.DictReader(f) if int(r["pid"]) == work["pid"]]
    assert (row.pid, row["mode"]) == (work["pid"], work["mode"])
    assert (row.minflt, row.majflt) == (work["minflt"], work["majflt"])
    assert row.minflt_profile == sum(int(r["minflt"]) for r in records)
    assert row[["n", "repeat", "window_s", "wall_s"]].isna().all()


@pytest.mark.parametrize("run", ["good", "vm-sweep", "measured", "warnings"])
def test_the_runs_and_window_counts_are_case2s(run, tmp_path):
    # The same runs as the analysis (dropped repeats left out), and the processes' window
    # counts add up to each run's rates in case2 --json.
    table = export(RESULTS / run, tmp_path)
    p = analysis("case2", RESULTS / run, "--json", "--no-plots")
    assert p.returncode == 0, p.stderr
    runs = {(row["machine"], row["n"], r["repeat"]): r for row in json.loads(p.stdout) for r in row["runs"]}
    groups = dict(list(table[table.case == 2].groupby(["machine", "n", "repeat"])))
    assert set(groups) == set(runs)
    for key, procs in groups.items():
        assert len(procs) == key[1]
        assert set(procs.source) == {runs[key]["source"]}
        window_s = procs.window_s.iloc[0]
        if procs.majflt_window.notna().all() and window_s > 0:
            assert round(procs.majflt_window.sum() / window_s, 2) == runs[key]["majflt_per_s"]
        if procs.minflt_window.notna().all() and window_s > 0:
            assert round(procs.minflt_window.sum() / window_s, 1) == runs[key]["minflt_per_s"]
        if procs.cpu_s_window.notna().all():
            assert round(procs.cpu_s_window.sum() / window_s, 4) == runs[key]["utilization_cpus"]


def test_dropped_repeats_are_left_out_with_the_analysis_warning(tmp_path):
    out = tmp_path / "tidy.csv"
    p = analysis("export", RESULTS / "warnings", "--out", out)
    assert p.returncode == 0
    assert "work-2.json:1: invalid JSON" in p.stderr and "this repeat is dropped" in p.stderr
    table = pd.read_csv(out)
    assert table[(table.machine == "small") & (table.n == 2) & (table.repeat == 2)].empty


def test_default_output_and_stdout(tmp_path):
    run = tmp_path / "good"
    shutil.copytree(RESULTS / "good", run)
    p = analysis("export", run)
    assert p.returncode == 0, p.stderr
    written = run / "analysis" / "tidy.csv"
    assert p.stdout == f"{written}\n"
    on_stdout = analysis("export", run, "--out", "-")
    assert on_stdout.returncode == 0
    assert on_stdout.stdout == written.read_text()
    assert [f.name for f in (run / "analysis").iterdir()] == ["tidy.csv"]  # no temporary left


def test_a_corrupt_file_is_an_error_naming_it(tmp_path):
    run = tmp_path / "good"
    shutil.copytree(RESULTS / "good", run)
    broken = run / "small" / "case1" / "pair-A" / "work-1.json"
    broken.write_text('{"pid": 1001, "mb": ')
    p = analysis("export", run)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr.startswith(f"analysis: error: {broken}:1: invalid JSON")
    assert not (run / "analysis" / "tidy.csv").exists()


def test_a_missing_run_is_an_error(tmp_path):
    p = analysis("export", tmp_path / "nothing-here")
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == f"analysis: error: {tmp_path / 'nothing-here'}: no such run directory\n"


def test_parquet_needs_pyarrow(tmp_path):
    # A pyarrow that fails to import stands for a missing one, whether or not it is installed.
    fake = tmp_path / "fake" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('pyarrow stands in as missing')\n")
    p = analysis("export", RESULTS / "good", "--out", tmp_path / "tidy.parquet",
                 env={**os.environ, "PYTHONPATH": str(tmp_path / "fake")})
    assert p.returncode == 2
    assert p.stderr.startswith("analysis: error: Parquet needs pyarrow")
    assert not (tmp_path / "tidy.parquet").exists()


def test_parquet_holds_the_csv_table(tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # not a dependency: then the clear error
        p = analysis("export", RESULTS / "good", "--format", "parquet", "--out", tmp_path / "t.parquet")
        assert p.returncode == 2 and "pyarrow" in p.stderr
        return
    out = tmp_path / "t.parquet"
    p = analysis("export", RESULTS / "good", "--format", "parquet", "--out", out)
    assert p.returncode == 0, p.stderr
    as_csv = analysis("export", RESULTS / "good", "--out", "-").stdout
    assert pd.read_parquet(out).to_csv(index=False) == as_csv
