"""work, monitor and procpoll on the host, without the module.

work runs with --no-register (or a plain file as its status file); monitor
reads a regular file laid out like the ring of /dev/pfprof (kmod/pfprof.h),
which exercises its parsing, its protocol and its output formats; procpoll
polls real processes and is checked against their own getrusage().
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import statistics
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = {"pid", "mb", "mode", "accesses_per_iteration", "iterations", "accesses", "seconds",
        "accesses_per_s", "fill", "fill_data", "fill_s", "start_mono_ns", "end_mono_ns", "minflt", "majflt",
        "utime_s", "stime_s", "registered", "minflt_before_register",
        "majflt_before_register", "minflt_after_register", "majflt_after_register"}


@pytest.fixture(scope="module")
def bins(tmp_path_factory) -> Path:
    """work, monitor and procpoll built with -Werror in a copy of the tree."""
    root = tmp_path_factory.mktemp("wl")
    shutil.copytree(REPO / "workloads", root / "workloads",
                    ignore=shutil.ignore_patterns("work", "monitor", "procpoll"))
    shutil.copytree(REPO / "kmod", root / "kmod", ignore=shutil.ignore_patterns("*.o", "*.ko"))
    r = subprocess.run(["make", "-C", str(root / "workloads"), "WERROR=1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in (r.stdout + r.stderr).lower()
    for prog in ("work", "monitor", "procpoll"):
        assert os.access(root / "workloads" / prog, os.X_OK), prog
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
    # The split of CPU time into user and system is tick-sampled (system can
    # read 0 for a short fill); their sum is the precise runtime.
    assert j["utime_s"] >= 0 and j["stime_s"] >= 0 and j["utime_s"] + j["stime_s"] > 0 and j["fill_s"] > 0


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


def held_region(pid: int, mb: int) -> bytes:
    """The work region of a held process, read through /proc/<pid>/mem."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        span, perms = line.split()[:2]
        lo, hi = (int(x, 16) for x in span.split("-"))
        if hi - lo == mb << 20 and perms.startswith("rw"):
            with open(f"/proc/{pid}/mem", "rb") as mem:
                mem.seek(lo)
                return mem.read(hi - lo)
    raise AssertionError(f"no {mb} MiB mapping in /proc/{pid}/maps")


@pytest.mark.parametrize("data, lo, hi", [("random", 0.95, 1.05), ("text", 2.0, 20), ("zero", 50, 1e9)])
def test_fill_data_compresses_as_named(bins, data, lo, hi):
    """What a compressing swap would see: the region's bytes, compressed page by page."""
    import zlib
    p = subprocess.Popen([str(bins / "work"), "--no-register", "--hold", "--fill", data, "4", "R", "1", "1",
                          "--sleep-ms", "0", "--seed", "7"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert "holding" in p.stderr.readline()
        region = held_region(p.pid, 4)
    finally:
        p.send_signal(signal.SIGUSR1)
        out, _ = p.communicate(timeout=10)
    j = json.loads(out)
    assert j["fill_data"] == data and j["fill"] is True
    assert j["minflt"] >= j["pages"]  # one first touch per page, whatever is written
    pages = [region[i:i + 4096] for i in range(0, len(region), 4096)]
    ratio = len(region) / sum(len(zlib.compress(pg, 1)) for pg in pages)
    assert lo <= ratio <= hi, (data, ratio)


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
                                  ["--barrier", "/tmp/x", "8", "R", "1"], ["--fill", "ones", "8", "R", "1"]])
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


# --- procpoll: polls real processes ----------------------------------------

SUMMARY = re.compile(r"procpoll: samples (\d+) rows (\d+) late (\d+) pids (\d+)")


def poll_rows(text: str) -> list[tuple[int, ...]]:
    """Rows of procpoll's CSV as (ts_ns, pid, minflt, majflt, cpu_ns)."""
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["ts_ns", "pid", "minflt", "majflt", "cpu_ns"]
    return [tuple(map(int, row)) for row in rows[1:]]


def poll_summary(stderr: str) -> dict:
    """The summary, which is the last line of stderr."""
    m = SUMMARY.fullmatch(stderr.splitlines()[-1])
    assert m, stderr
    return dict(zip(("samples", "rows", "late", "pids"), map(int, m.groups())))


def stat_fields(pid: int) -> list[str]:
    """Fields 3 onwards of /proc/<pid>/stat: fields[0] is the state."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def start_work(bins, *args) -> subprocess.Popen:
    return subprocess.Popen([str(bins / "work"), "--no-register", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_procpoll_tracks_work_at_20hz(bins, tmp_path):
    """Polls a work child until it exits: 50 ms apart, cumulative counts that
    end where work's own getrusage() ends (16 MiB filled: ~4096 faults)."""
    w = start_work(bins, 16, "R", 10000, "--seconds", 2, "--sleep-ms", 0)
    out = tmp_path / "poll.csv"
    p = subprocess.Popen([str(bins / "procpoll"), "-i", "50", "-o", str(out), str(w.pid)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wout, werr = w.communicate(timeout=60)
    pout, perr = p.communicate(timeout=10)  # ends by itself: work is gone
    assert w.returncode == 0, werr
    assert p.returncode == 0, perr
    assert pout == ""  # -o: everything went to the file
    j = json.loads(wout)
    rows = poll_rows(out.read_text())
    assert len(rows) >= 30 and {r[1] for r in rows} == {w.pid}
    ts = [r[0] for r in rows]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    assert abs(statistics.median(gaps) - 50e6) <= 5e6
    assert abs(ts[-1] - j["end_mono_ns"]) <= 100e6  # CLOCK_MONOTONIC like work's
    for col in (2, 3, 4):  # cumulative totals, not deltas
        assert all(a[col] <= b[col] for a, b in zip(rows, rows[1:]))
    last = rows[-1]
    assert last[2] >= 4096
    assert 0 <= j["minflt"] - last[2] <= 32  # no more faults after the fill
    assert last[3] <= j["majflt"]
    cpu_ns = (j["utime_s"] + j["stime_s"]) * 1e9
    assert cpu_ns - 200e6 <= last[4] <= cpu_ns + 1e6  # the last row is <= 50 ms before the end
    s = poll_summary(perr)
    assert s == {"samples": len(rows), "rows": len(rows), "late": s["late"], "pids": 1}


def test_procpoll_several_pids(bins):
    mbs = (4, 16, 32)
    works = [start_work(bins, mb, "R", 1000, "--seconds", 1, "--sleep-ms", 0) for mb in mbs]
    p = subprocess.Popen([str(bins / "procpoll"), *(str(w.pid) for w in works)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    res = [json.loads(w.communicate(timeout=60)[0]) for w in works]
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    rows = poll_rows(out)
    by_pid = {w.pid: [r for r in rows if r[1] == w.pid] for w in works}
    assert sum(map(len, by_pid.values())) == len(rows)
    for w, mb, j in zip(works, mbs, res):
        mine = by_pid[w.pid]
        assert len(mine) >= 10, (w.pid, len(mine))
        assert mb * 256 <= mine[-1][2] <= j["minflt"] <= mine[-1][2] + 32
    # one time stamp per sample, shared by the pids sampled then
    samples = {}
    for r in rows:
        samples.setdefault(r[0], []).append(r[1])
    assert all(len(pids) == len(set(pids)) for pids in samples.values())
    assert max(map(len, samples.values())) == 3
    s = poll_summary(err)
    assert (s["samples"], s["rows"], s["pids"]) == (len(samples), len(rows), 3)


def test_procpoll_ends_when_the_pids_are_gone(bins):
    """One child reaped, one left a zombie: both count as gone."""
    kids = [subprocess.Popen(["sleep", t]) for t in ("0.3", "0.6")]
    t0 = time.monotonic()
    p = subprocess.Popen([str(bins / "procpoll"), "-i", "20", *(str(k.pid) for k in kids)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kids[0].wait()
    try:
        out, err = p.communicate(timeout=10)
        assert stat_fields(kids[1].pid)[0] == "Z"  # not reaped yet
    finally:
        kids[1].wait()
    assert p.returncode == 0, err
    assert time.monotonic() - t0 < 3
    rows = poll_rows(out)
    n = [sum(r[1] == k.pid for r in rows) for k in kids]
    assert 5 <= n[0] < n[1]  # the shorter sleep stopped being sampled first
    s = poll_summary(err)
    assert (s["samples"], s["rows"], s["pids"]) == (len({r[0] for r in rows}), len(rows), 2)
    assert s["samples"] == n[1]


@pytest.mark.parametrize("args", [[], ["0"], ["-5"], ["abc"], ["12x"], ["SELF", "0"],
                                  ["-i", "0", "SELF"], ["-i", "60001", "SELF"],
                                  ["-i", "x", "SELF"], ["--max-seconds", "0", "SELF"],
                                  ["--bogus", "SELF"], ["-o"]])
def test_procpoll_usage_errors(bins, args):
    args = [str(os.getpid()) if a == "SELF" else a for a in args]
    r = subprocess.run([str(bins / "procpoll"), *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, (args, r.stderr)
    assert r.stdout == "" and "usage: procpoll" in r.stderr


def test_procpoll_help_and_missing_pid(bins, tmp_path):
    for flag in ("-h", "--help"):
        r = subprocess.run([str(bins / "procpoll"), flag], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.startswith("usage: procpoll") and r.stderr == ""
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process
    out = tmp_path / "poll.csv"
    r = subprocess.run([str(bins / "procpoll"), "-o", str(out), str(os.getpid()), str(gone.pid)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and f"no process with pid {gone.pid}" in r.stderr
    assert r.stdout == "" and not out.exists()  # checked before anything is written


def test_procpoll_comm_with_spaces_and_parens(bins, tmp_path):
    """A comm that looks like more fields (and a zombie's state) after its
    first ')': the fields start after the last one."""
    exe = tmp_path / "a) Z 1 (2) b"
    shutil.copy(shutil.which("sleep"), exe)
    k = subprocess.Popen([str(exe), "30"])
    try:
        deadline = time.monotonic() + 5
        while stat_fields(k.pid)[0] != "S" and time.monotonic() < deadline:
            time.sleep(0.01)  # until it is asleep: then nothing changes
        assert f"{k.pid} (a) Z 1 (2) b) S " in Path(f"/proc/{k.pid}/stat").read_text()
        r = subprocess.run([str(bins / "procpoll"), "--max-seconds", "0.3", str(k.pid)],
                           capture_output=True, text=True, timeout=10)
        f = stat_fields(k.pid)
    finally:
        k.kill()
        k.wait()
    assert r.returncode == 0, r.stderr
    rows = poll_rows(r.stdout)
    assert len(rows) == 6 and {row[1] for row in rows} == {k.pid}
    minflt, majflt, ticks = int(f[7]), int(f[9]), int(f[11]) + int(f[12])
    assert minflt > 0
    assert rows[-1][2:] == (minflt, majflt, ticks * 10**9 // os.sysconf("SC_CLK_TCK"))


def test_procpoll_max_seconds_and_repeated_pid(bins):
    me = str(os.getpid())
    t0 = time.monotonic()
    r = subprocess.run([str(bins / "procpoll"), "-i", "50", "--max-seconds", "0.5", me, me],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 2
    rows = poll_rows(r.stdout)
    s = poll_summary(r.stderr)
    assert s["pids"] == 1 and s["rows"] == s["samples"] == len(rows)  # sampled once
    assert s["samples"] + s["late"] == 10  # the slots 0, 50, ..., 450 ms


def test_procpoll_skips_missed_samples(bins):
    """Stopped for 400 ms: on waking it skips the slots missed (counted as
    late) instead of catching up in a burst, and stays on its grid."""
    p = subprocess.Popen([str(bins / "procpoll"), "-i", "50", "--max-seconds", "1.5",
                          str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.4)
        p.send_signal(signal.SIGSTOP)
        time.sleep(0.4)
    finally:
        p.send_signal(signal.SIGCONT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    ts = [r[0] for r in poll_rows(out)]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    s = poll_summary(err)
    assert 5 <= s["late"] <= 9, err
    assert s["samples"] + s["late"] == 30
    assert max(gaps) >= 300e6
    assert sum(g < 5e6 for g in gaps) <= 1  # a burst would be several; the late sample may
    # be close to the next slot. After the gap, the samples are back on the grid of ts[0]:
    after = ts[gaps.index(max(gaps)) + 2:]
    offsets = [abs((t - ts[0] + 25_000_000) % 50_000_000 - 25_000_000) for t in after]
    assert len(after) >= 5 and statistics.median(offsets) < 5e6


def test_procpoll_sigterm_finishes_the_sample(bins, tmp_path):
    out = tmp_path / "poll.csv"
    p = subprocess.Popen([str(bins / "procpoll"), "-o", str(out), str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    assert len(out.read_text().splitlines()) >= 4  # live: flushed once per sample
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=5)
    assert p.returncode == 0, err
    text = out.read_text()
    assert text.endswith("\n")
    s = poll_summary(err)
    assert s["rows"] == len(poll_rows(text)) >= 4


def test_procpoll_builds_without_kmod(tmp_path):
    """procpoll needs only /proc: it builds in a tree without ../kmod."""
    for name in ("Makefile", "procpoll.c"):
        shutil.copy(REPO / "workloads" / name, tmp_path / name)
    r = subprocess.run(["make", "-C", str(tmp_path), "WERROR=1", "procpoll"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in (r.stdout + r.stderr).lower()


def test_readme_reader_example_compiles(tmp_path):
    """The minimal reader of kmod/README.md builds without a warning."""
    text = (REPO / "kmod" / "README.md").read_text()
    code = text.split("### A minimal reader", 1)[1].split("```c", 1)[1].split("```", 1)[0]
    (tmp_path / "reader.c").write_text(code)
    r = subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", f"-I{REPO / 'kmod'}",
                        str(tmp_path / "reader.c"), "-o", str(tmp_path / "reader")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
