"""work and monitor on the host, without the module.

work runs with --no-register (or a plain file as its status file); monitor
reads a regular file laid out like the ring of /dev/pfprof (kmod/pfprof.h),
which exercises its parsing, its protocol and its output formats.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = {"pid", "mb", "mode", "accesses_per_iteration", "iterations", "accesses", "seconds",
        "accesses_per_s", "fill_s", "start_mono_ns", "end_mono_ns", "minflt", "majflt",
        "utime_s", "stime_s", "registered", "minflt_before_register",
        "majflt_before_register", "minflt_after_register", "majflt_after_register"}


@pytest.fixture(scope="module")
def bins(tmp_path_factory) -> Path:
    """work and monitor built with -Werror in a copy of the tree."""
    root = tmp_path_factory.mktemp("wl")
    shutil.copytree(REPO / "workloads", root / "workloads",
                    ignore=shutil.ignore_patterns("work", "monitor"))
    shutil.copytree(REPO / "kmod", root / "kmod", ignore=shutil.ignore_patterns("*.o", "*.ko"))
    r = subprocess.run(["make", "-C", str(root / "workloads"), "WERROR=1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in (r.stdout + r.stderr).lower()
    return root / "workloads"


def work(bins, *args, timeout=120, check=True) -> dict:
    r = subprocess.run([str(bins / "work"), "--no-register", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 1, r.stdout
        return json.loads(lines[0])
    return r


def test_json_keys_and_sanity(bins):
    j = work(bins, 8, "R", 5000, 3, "--sleep-ms", 0, "--seed", 42)
    assert KEYS <= j.keys()
    assert (j["mb"], j["mode"], j["accesses_per_iteration"]) == (8, "R", 5000)
    assert j["iterations"] == 3 and j["accesses"] == 15000
    assert j["registered"] is False and j["interrupted"] is False
    assert j["pid"] > 0 and j["end_mono_ns"] >= j["start_mono_ns"]
    ns = j["end_mono_ns"] - j["start_mono_ns"]
    assert math.isclose(j["seconds"], ns / 1e9, abs_tol=1e-9)
    assert math.isclose(j["accesses_per_s"], j["accesses"] / (ns / 1e9), rel_tol=1e-6)
    assert j["minflt"] >= j["pages"] == 8 * 256  # the fill touched every page
    assert j["minflt_timed"] <= 8  # ... so the timed phase faults no more (code, stack aside)
    assert j["utime_s"] >= 0 and j["stime_s"] > 0 and j["fill_s"] > 0


def test_course_defaults(bins):
    r = subprocess.run([str(bins / "work"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: work" in r.stdout
    j = work(bins, 1, "L", 10, "--sleep-ms", 0)
    assert j["iterations"] == 20 and j["accesses"] == 200  # 20 iterations as in the course
    assert j["sleep_ms"] == 0
    j = work(bins, 1, "R", 10, 2)
    assert j["sleep_ms"] == 1000 and j["seconds"] >= 1.0  # sleep(1) per iteration but the last


def test_seconds_bounds_the_timed_phase(bins):
    j = work(bins, 8, "R", 100000, "--seconds", 0.5)
    assert 0.5 <= j["seconds"] < 0.7
    assert j["iterations"] > 1 and j["iterations_requested"] == -1
    j = work(bins, 8, "R", 1000, 3, "--seconds", 5, "--sleep-ms", 0)
    assert j["iterations"] == 3  # given iterations cap a time-bounded run


def test_no_fill_first_touch_arithmetic(bins):
    """R over a fresh region: distinct pages touched ~ P*(1-exp(-A/P))."""
    pages = 64 * 256
    for accesses in (4096, 16384):
        j = work(bins, "--no-fill", 64, "R", accesses, 1, "--sleep-ms", 0)
        expected = pages * (1 - math.exp(-accesses / pages))
        assert j["fill"] is False
        assert abs(j["minflt_timed"] - expected) <= 0.02 * expected


def test_seed_makes_runs_repeatable(bins):
    a = work(bins, "--no-fill", 32, "L", 20000, 1, "--sleep-ms", 0, "--seed", 7)
    b = work(bins, "--no-fill", 32, "L", 20000, 1, "--sleep-ms", 0, "--seed", 7)
    assert a["seed"] == b["seed"] == 7
    assert abs(a["minflt_timed"] - b["minflt_timed"]) <= 8  # same pages; code faults aside


def test_locality_really_writes_memory(bins):
    """L mode: local accesses land near the previous one and do write memory
    (a pure walk still faults pages in, unlike the course's version), and
    locality touches far fewer pages than uniform writes."""
    args = ["--no-fill", 64, "L", 20000, 1, "--sleep-ms", 0, "--seed", 3]
    walk = work(bins, *args, "--locality", 1)
    assert 50 < walk["minflt_timed"] < 2000
    local = work(bins, *args)
    uniform = work(bins, "--no-fill", 64, "R", 20000, 1, "--sleep-ms", 0, "--seed", 3)
    assert local["locality"] == 0.8 and local["window_pages"] == 4
    assert walk["minflt_timed"] < local["minflt_timed"] < 0.9 * uniform["minflt_timed"]
    never_local = work(bins, *args, "--locality", 0)
    assert abs(never_local["minflt_timed"] - uniform["minflt_timed"]) < 0.05 * uniform["minflt_timed"]


def test_barrier_starts_three_processes_together(bins, tmp_path):
    path = tmp_path / "barrier"
    procs = [subprocess.Popen([str(bins / "work"), "--no-register", "--barrier", str(path), "3",
                               str(mb), "R", "1000", "1", "--sleep-ms", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for mb in (4, 64, 256)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    res = [json.loads(o[0]) for o in outs]
    starts = [r["start_mono_ns"] for r in res]
    assert max(starts) - min(starts) < 50e6  # together, within 50 ms
    assert res[0]["barrier_wait_s"] > res[2]["barrier_wait_s"]  # the quick filler waited
    assert path.read_bytes()[:4] == (3).to_bytes(4, "little")


def test_barrier_timeout_and_reuse(bins, tmp_path):
    path = tmp_path / "barrier"
    r = work(bins, "--barrier", path, 2, "--barrier-timeout", 0.3, 1, "R", 10, 1, check=False)
    assert r.returncode == 3 and "timeout" in r.stderr and r.stdout == ""
    # The file now counts one arrival: with N=1 a new process would be the second.
    r = work(bins, "--barrier", path, 1, 1, "R", 10, 1, check=False)
    assert r.returncode == 1 and "reused" in r.stderr


def test_sigterm_stops_with_json(bins):
    p = subprocess.Popen([str(bins / "work"), "--no-register", "16", "R", "100000",
                          "--seconds", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    j = json.loads(out)
    assert j["interrupted"] is True and j["seconds"] < 5 and j["accesses"] > 0


def test_hold_waits_for_sigusr1(bins):
    p = subprocess.Popen([str(bins / "work"), "--no-register", "--hold", "4", "R", "1000", "1",
                          "--sleep-ms", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stderr.readline()
    assert "holding" in line
    time.sleep(0.2)
    assert p.poll() is None
    p.send_signal(signal.SIGUSR1)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0 and json.loads(out)["accesses"] == 1000


def test_registration_writes_commands(bins, tmp_path):
    """With a plain file as the status file: "R <pid>" then "U <pid>"."""
    status = tmp_path / "status"
    status.write_text("")
    r = subprocess.run([str(bins / "work"), "--status", str(status), "2", "R", "10", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["registered"] is True
    assert status.read_text() == f"U {j['pid']}\n"  # the R was overwritten by the U


def test_registration_errors(bins, tmp_path):
    r = subprocess.run([str(bins / "work"), "--status", str(tmp_path / "absent"), "1", "R", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot register" in r.stderr and "--no-register" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args", [[], ["8"], ["8", "X", "10"], ["0", "R", "10"], ["8", "R", "-1"],
                                  ["8", "R", "10", "x"], ["8", "R", "10", "1", "2"],
                                  ["--seconds", "0", "8", "R", "10"], ["--bogus", "8", "R", "1"],
                                  ["--barrier", "/tmp/x", "8", "R", "1"]])
def test_work_usage_errors(bins, args):
    r = subprocess.run([str(bins / "work"), "--no-register", *args], capture_output=True, text=True)
    assert r.returncode == 2, (args, r.stderr)
    assert r.stdout == "" and r.stderr


@pytest.mark.parametrize("args", [["--bogus"], ["extra"], ["--format", "xml"], ["--poll-ms", "0"],
                                  ["--max-seconds", "-1"], ["-o"]])
def test_monitor_usage_errors(bins, args):
    r = subprocess.run([str(bins / "monitor"), *args], capture_output=True, text=True)
    assert r.returncode == 2, (args, r.stderr)
    assert r.stdout == ""


def test_monitor_missing_device(bins, tmp_path):
    r = subprocess.run([str(bins / "monitor"), "--device", str(tmp_path / "absent")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot open" in r.stderr


# A ring in a regular file, as the module lays it out (kmod/pfprof.h).
PAGE = 4096
HEADER = struct.Struct("<IIIIQQII")
RECORD = struct.Struct("<QQIIQQQ")


def fake_ring(path: Path, records, capacity=16, dropped=0, magic=0x46525046) -> None:
    buf = bytearray(PAGE + capacity * RECORD.size)
    HEADER.pack_into(buf, 0, magic, 1, PAGE, RECORD.size, capacity, len(buf), 50, 250)
    struct.pack_into("<Q", buf, 64, len(records))  # data_head
    struct.pack_into("<Q", buf, 192, dropped)
    for i, rec in enumerate(records):
        RECORD.pack_into(buf, PAGE + (i % capacity) * RECORD.size, *rec)
    path.write_bytes(bytes(buf))


RECS = [  # ts jiffies pid flags minflt majflt cpu
    (1000, 7, 10, 2, 5, 0, 100),
    (1000, 7, 11, 2, 7, 1, 200),
    (2000, 9, 10, 0, 3, 0, 50),
    (2000, 9, 11, 1, 0, 2, 25),
    (2500, 10, 10, 5, 1, 0, 5),
]


def run_monitor(bins, tmp_path, records, *args, dropped=0, status_lines=("pid minflt majflt cpu_ns",)):
    dev, status = tmp_path / "ring", tmp_path / "status"
    fake_ring(dev, records, dropped=dropped)
    status.write_text("\n".join(status_lines) + "\n")
    r = subprocess.run([str(bins / "monitor"), "--device", str(dev), "--status", str(status),
                        "--until-idle", "--max-seconds", "10", *args],
                       capture_output=True, text=True, timeout=30)
    return r, dev


def test_monitor_csv_until_idle(bins, tmp_path):
    t0 = time.monotonic()
    r, dev = run_monitor(bins, tmp_path, RECS)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 5  # idle: both processes ended, status empty
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["ts_ns", "jiffies", "pid", "minflt", "majflt", "cpu_ns", "flags"]
    assert [tuple(map(int, row)) for row in rows[1:]] == [
        (ts, j, pid, mi, ma, cpu, fl) for ts, j, pid, fl, mi, ma, cpu in RECS]
    assert "records 5 dropped 0 processes 2" in r.stderr
    assert struct.unpack_from("<Q", dev.read_bytes(), 128)[0] == len(RECS)  # data_tail published


def test_monitor_mp3_sums_per_tick(bins, tmp_path):
    r, _ = run_monitor(bins, tmp_path, RECS, "--format", "mp3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["7 12 1 300", "9 3 2 75", "10 1 0 5"]


def test_monitor_waits_while_status_lists_processes(bins, tmp_path):
    """Every record seen ended, but a process is still registered: not idle."""
    r, _ = run_monitor(bins, tmp_path, RECS, "--max-seconds", "1",
                       status_lines=("pid minflt majflt cpu_ns", "12 0 0 0"))
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1 + len(RECS)


def test_monitor_reports_drops_and_wraps(bins, tmp_path):
    recs = [(i, i, 10, 0, 1, 0, 1) for i in range(20)] + [(20, 20, 10, 1, 1, 0, 1)]
    dev, status = tmp_path / "ring", tmp_path / "status"
    # capacity 16, head 21, tail 5: the reader starts at record 5 (slots wrap)
    fake_ring(dev, recs, dropped=4)
    buf = bytearray(dev.read_bytes())
    struct.pack_into("<Q", buf, 128, 5)
    dev.write_bytes(bytes(buf))
    status.write_text("pid minflt majflt cpu_ns\n")
    r = subprocess.run([str(bins / "monitor"), "--device", str(dev), "--status", str(status),
                        "--until-idle", "--max-seconds", "10"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ts = [int(line.split(",")[0]) for line in r.stdout.splitlines()[1:]]
    assert ts == list(range(5, 21))
    assert "4 records dropped (ring full)" in r.stderr
    assert "dropped 4" in r.stderr.splitlines()[-1]


def test_monitor_rejects_unknown_ring(bins, tmp_path):
    dev = tmp_path / "ring"
    fake_ring(dev, RECS, magic=0x12345678)
    r = subprocess.run([str(bins / "monitor"), "--device", str(dev)], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown ring format" in r.stderr


def test_monitor_sigterm_drains_and_summarises(bins, tmp_path):
    dev = tmp_path / "ring"
    fake_ring(dev, RECS[:2])
    out = tmp_path / "out.csv"
    p = subprocess.Popen([str(bins / "monitor"), "--device", str(dev), "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    assert p.returncode == 0
    assert len(out.read_text().splitlines()) == 3
    assert "records 2 dropped 0" in err


def test_readme_reader_example_compiles(tmp_path):
    """The minimal reader of kmod/README.md builds without a warning."""
    text = (REPO / "kmod" / "README.md").read_text()
    code = text.split("### A minimal reader", 1)[1].split("```c", 1)[1].split("```", 1)[0]
    (tmp_path / "reader.c").write_text(code)
    r = subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", f"-I{REPO / 'kmod'}",
                        str(tmp_path / "reader.c"), "-o", str(tmp_path / "reader")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
