"""The benchmark's guest-side parts on the host: the plan of the rounds, the
parsers of each profiler's output, and the barrier the runner releases, with
the real `work` program built from workloads/."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "runner"))

from thrashlab_runner import barrier, bench, procfs, profilers  # noqa: E402
from thrashlab_runner.common import RunnerError  # noqa: E402


def test_each_round_runs_every_cell_once_in_its_own_order():
    plan = bench.bench_order([1, 8, 32], 6, seed=3)
    cells = sorted([n, c] for n in (1, 8, 32) for c in bench.BENCH_CONDITIONS)
    assert len(plan) == 6
    for round_cells in plan:
        assert sorted(round_cells) == cells
    assert len({json.dumps(r) for r in plan}) > 1          # shuffled differently per round
    assert plan == bench.bench_order([1, 8, 32], 6, seed=3)   # and reproducibly
    assert plan != bench.bench_order([1, 8, 32], 6, seed=4)


def test_stats_and_lists_parse():
    stats = procfs.parse_stats("ticks 12\nwork_ns_sum 340000\nrecords_dropped 0\nhz 250\nbogus line here\n")
    assert stats == {"ticks": 12, "work_ns_sum": 340000, "records_dropped": 0, "hz": 250}
    assert bench.parse_int_list("32, 1,8,8", "x") == [1, 8, 32]
    for bad in ("", "1,a", "0,2"):
        with pytest.raises(RunnerError):
            bench.parse_int_list(bad, "bench_processes")


def test_perf_interval_output_is_summed_per_event(tmp_path):
    # perf stat -I 50 -x, as perf 6.1 writes it (a comment line, a blank line, then rows)
    f = tmp_path / "perf.csv"
    f.write_text("# started on Thu Nov 26 02:54:27 2026\n\n"
                 "     0.050983933,0,,minor-faults,49548192,100.00,,\n"
                 "     0.050983933,0,,major-faults,49548192,100.00,,\n"
                 "     0.112335924,7,,minor-faults,54288653,100.00,,\n"
                 "     0.112335924,1,,major-faults,54288653,100.00,,\n"
                 "     0.214976275,3,,minor-faults,26313439,100.00,,\n"
                 "     0.214976275,<not counted>,,major-faults,0,100.00,,\n")
    assert profilers.perf_totals(str(f)) == {"minor-faults": 10, "major-faults": 1}
    assert profilers.has_data_line(str(f))
    empty = tmp_path / "empty.csv"
    empty.write_text("# started on Thu Nov 26 02:54:27 2026\n\n")
    assert not profilers.has_data_line(str(empty))


def test_poller_totals_take_each_pids_last_sample(tmp_path):
    f = tmp_path / "poll.csv"
    f.write_text("ts_ns,pid,minflt,majflt,cpu_ns\n"
                 "100,7,10,0,5\n100,8,20,1,5\n"
                 "200,7,15,0,9\n200,8,25,2,9\n"
                 "300,7,16,0,9\n")                      # pid 8 gone
    assert profilers.poller_totals(str(f)) == (3, 16 + 25, 2)


def test_profile_totals_count_ticks_not_unregistration_records(tmp_path):
    f = tmp_path / "profile.csv"
    f.write_text("ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags\n"
                 "100,1,7,5,0,10,2\n100,1,9,50,5,10,2\n"
                 "200,2,7,1,0,10,0\n"
                 "250,2,7,2,1,10,5\n")                  # U <pid>: off-tick, counts still count
    assert profilers.profile_totals(str(f), {"7"}) == (2, 8, 1)


@pytest.fixture(scope="module")
def work_bin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wl")
    shutil.copytree(REPO / "workloads", root / "workloads",
                    ignore=shutil.ignore_patterns("work", "monitor", "procpoll"))
    shutil.copytree(REPO / "kmod", root / "kmod", ignore=shutil.ignore_patterns("*.o", "*.ko"))
    r = subprocess.run(["make", "-C", str(root / "workloads"), "work"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "workloads" / "work"


def test_the_runner_releases_waiting_work_processes_at_once(work_bin, tmp_path):
    """Three processes wait at a barrier of 4 on a futex; the runner is the fourth.
    They start within a few ms of the release (the futex's safety timeout is
    100 ms), and not before it."""
    barrier_file = tmp_path / "barrier"
    procs = [subprocess.Popen([str(work_bin), "--no-register", "--sleep-ms", "0", "--barrier", str(barrier_file), "4",
                               "1", "R", "1000", "1"], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    deadline = time.monotonic() + 10
    while barrier.barrier_count(str(barrier_file)) < 3:
        assert time.monotonic() < deadline, "the work processes did not reach the barrier"
        time.sleep(0.01)
    time.sleep(0.3)
    assert all(p.poll() is None for p in procs)          # still waiting
    released = time.monotonic_ns()
    barrier.release_barrier(str(barrier_file), 4)
    outs = [json.loads(p.communicate(timeout=10)[0]) for p in procs]
    starts = [(o["start_mono_ns"] - released) / 1e6 for o in outs]
    assert all(0 <= s < 50 for s in starts), starts
    assert all(o["barrier_wait_s"] >= 0.3 for o in outs)
