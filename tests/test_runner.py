"""The guest-side runner (the package runner/thrashlab_runner/) on the host: its
pure parts, and whole case steps against a fake /proc and fake `work`/`monitor`
programs, run through the zipapp that the case_runner role ships.

The fakes follow the interface of workloads/ (kmod/README.md, issue 3):
`work MB MODE ACCESSES [ITER] [--seconds S] [--barrier PATH N]` prints one JSON
line at exit; `monitor -o FILE --until-idle` keeps the device open and exits
once the processes it saw registered are gone. Nothing here needs root or
touches the host's kernel settings (drop_caches goes to the fake /proc).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNNER_PACKAGE = REPO / "runner" / "thrashlab_runner"
sys.path.insert(0, str(REPO / "runner"))

from thrashlab_runner import files, planning, processes, procfs, work_output  # noqa: E402
from thrashlab_runner.common import RESULT_MARK, RunnerError  # noqa: E402
from thrashlab.paths import case_runner_filters  # noqa: E402


@pytest.fixture(scope="session")
def runner_pyz(tmp_path_factory) -> Path:
    """The runner as the machines get it: the zipapp, built by the filter the install task uses."""
    path = tmp_path_factory.mktemp("runner") / "thrashlab_runner.pyz"
    path.write_bytes(case_runner_filters().runner_zipapp(str(RUNNER_PACKAGE)))
    return path

MEMINFO = """MemTotal:         215000 kB
MemFree:           90000 kB
MemAvailable:     153600 kB
Buffers:            2000 kB
SwapTotal:        524284 kB
SwapFree:         524284 kB
HugePages_Total:       0
"""
VMSTAT = "nr_free_pages 22000\npgfault 1000\npgmajfault 10\npswpin 5\npswpout 7\noom_kill 0\n"
PSI = ("some avg10=1.50 avg60=0.20 avg300=0.05 total=123456\n"
       "full avg10=0.75 avg60=0.10 avg300=0.01 total=65432\n")


# ---------------------------------------------------------------------------- pure parts

def test_parsers():
    m = procfs.parse_meminfo(MEMINFO)
    assert m["MemAvailable"] == 153600 and m["SwapTotal"] == 524284 and m["HugePages_Total"] == 0
    v = procfs.parse_vmstat(VMSTAT)
    assert v["pswpout"] == 7 and v["oom_kill"] == 0
    p = procfs.parse_psi(PSI)
    assert p["some"] == {"avg10": 1.5, "avg60": 0.2, "avg300": 0.05, "total": 123456}
    assert p["full"]["total"] == 65432
    assert procfs.psi_row(1.23456, p) == "1.235,1.50,0.75,123456,65432"
    # a kernel without "full" for memory (old) still gives a row of the right width
    assert procfs.psi_row(0, procfs.parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n")) == "0.000,0.00,,1,"
    assert procfs.vmstat_delta({"a": 1}, {"a": 5}, "a") == 4
    assert procfs.vmstat_delta({}, {"a": 5}, "a") is None


def test_overlap():
    w = [{"start_mono_ns": 10_000_000_000, "end_mono_ns": 22_000_000_000},
         {"start_mono_ns": 11_500_000_000, "end_mono_ns": 23_000_000_000}]
    assert work_output.overlap_s(w) == 10.5
    # never overlapped
    assert work_output.overlap_s([{"start_mono_ns": 0, "end_mono_ns": 5},
                                  {"start_mono_ns": 10, "end_mono_ns": 20}]) == 0
    # a missing JSON or timestamp: unknown, not a made-up number
    assert work_output.overlap_s([w[0], None]) is None
    assert work_output.overlap_s([w[0], {"start_mono_ns": 1}]) is None
    assert work_output.overlap_s([]) is None


def test_parse_work_output():
    text = 'registered\n{"accesses": 5, "seconds": 1.0}\n{"broken": \n'
    assert work_output.parse_work_output(text) == {"accesses": 5, "seconds": 1.0}
    assert work_output.parse_work_output("no json here\n") is None
    assert work_output.parse_work_output('[1, 2]\n') is None


def test_exit_code():
    assert processes.exit_code(0) == 0 and processes.exit_code(3) == 3
    assert processes.exit_code(-9) == 137 and processes.exit_code(None) is None


@pytest.mark.parametrize("mem, expected", [(192, 20), (256, 36), (320, 52), (512, 96), (1024, 224), (4096, 992)])
def test_plan_work_mb(mem, expected):
    assert planning.plan_work_mb(mem) == expected


def test_plan_n_values_default_lab():
    # the default lab as measured: ~150 MiB available on the 256 MiB VM, ~400 on the 512 MiB one
    small = planning.plan_n_values(150, 512, 36)
    large = planning.plan_n_values(400, 512, 36)
    assert small["n_values"] == [1, 3, 4, 5, 6, 7]
    assert large["n_values"] == [1, 6, 11, 12, 13, 17]
    for plan, avail in ((small, 150), (large, 400)):
        ns = plan["n_values"]
        k = plan["first_n_past_available"]
        assert (k - 1) * 36 <= avail < k * 36
        assert {k - 1, k, k + 1} <= set(ns)          # steps of 1 around the knee
        assert max(ns) * 36 <= avail + 0.8 * 512     # no OOM
        assert max(ns) >= 1.5 * plan["predicted_n"]  # about 1.5 x the prediction
        assert not plan["warnings"]


@pytest.mark.parametrize("avail, swap, work, points", [
    (89, 512, 20, 7), (212, 512, 20, 7), (335, 512, 20, 6), (900, 2048, 224, 7), (3900, 2048, 224, 8),
    (150, 512, 36, 3), (150, 512, 36, 12), (30, 512, 36, 7), (150, 0, 36, 7), (36, 512, 36, 7)])
def test_plan_n_values_properties(avail, swap, work, points):
    plan = planning.plan_n_values(avail, swap, work, points=points)
    ns = plan["n_values"]
    assert ns == sorted(set(ns)) and ns[0] == 1
    assert len(ns) <= points
    assert max(ns) <= max(1, plan["n_cap"]) or max(ns) == 1
    if plan["n_cap"] >= plan["first_n_past_available"] + 1 and points >= 4:
        assert plan["first_n_past_available"] in ns


def test_plan_n_values_deeper():
    # case2_max_factor 2 and more points: deeper into thrashing, still capped by swap
    plan = planning.plan_n_values(400, 512, 36, points=7, max_factor=2.0)
    assert plan["n_values"] == [1, 6, 11, 12, 13, 18, 22]
    assert max(plan["n_values"]) * 36 <= 400 + 0.8 * 512
    assert planning.plan_n_values(400, 100, 36, max_factor=3.0)["n_values"][-1] == 13   # the swap caps it


def test_plan_n_values_small_swap_warns():
    plan = planning.plan_n_values(150, 0, 36)
    assert plan["n_values"][-1] == 4          # 4 x 36 <= 150: nothing past the available memory fits
    assert plan["warnings"] and "swap too small" in plan["warnings"][0]


def test_plan_case1_mb():
    assert planning.plan_case1_mb(150) == 40
    assert planning.plan_case1_mb(400) == 120
    assert planning.plan_case1_mb(3000) == 896
    assert planning.plan_case1_mb(3500) == 1024   # the course's size once it fits
    assert planning.plan_case1_mb(10) == 8


def test_case1_accesses():
    assert planning.case1_accesses("auto", "many", 1024) == 50000
    assert planning.case1_accesses("auto", "few", 1024) == 10000
    assert planning.case1_accesses("auto", "many", 40) == 1953 and planning.case1_accesses("auto", "few", 40) == 391
    assert planning.case1_accesses("777", "few", 40) == 777
    named = {"many": lambda mb: planning.case1_accesses("auto", "many", mb)}
    assert planning.parse_work_spec("auto R many", 120, 20, named)["accesses_per_iteration"] == 5859
    with pytest.raises(RunnerError, match="or one of many"):
        planning.parse_work_spec("auto R few", 120, 20, named)


def test_work_specs_and_n_values():
    assert planning.parse_work_spec("auto R 50000", 40, 20) == {"mb": 40, "mode": "R", "accesses_per_iteration": 50000,
                                                        "iterations": 20}
    assert planning.parse_work_spec("1024 L 10000 5", 40, 20)["iterations"] == 5
    assert planning.parse_work_spec("64 R 100", None, None)["iterations"] is None
    for bad in ("R 100", "x R 100", "64 X 100", "64 R 0", "64 R 1 2 3", "auto R 10"):
        with pytest.raises(RunnerError):
            planning.parse_work_spec(bad, None if bad.startswith("auto") else 40, None)
    assert planning.parse_n_values("1, 2,4 8") == [1, 2, 4, 8]
    assert planning.parse_n_values("[1,3]") == [1, 3]
    for bad in ("", "1,0", "1,1", "a"):
        with pytest.raises(RunnerError):
            planning.parse_n_values(bad)


def test_case2_order():
    assert planning.case2_points([4, 1], 2) == [{"n": 1, "repeat": 1}, {"n": 4, "repeat": 1},
                                          {"n": 1, "repeat": 2}, {"n": 4, "repeat": 2}]
    assert planning.point_dir_name(4, 1) == "n-04/r-1"


def test_atomic_write_and_remove_tree(tmp_path):
    p = tmp_path / "d" / "f.json"
    files.atomic_json(str(p), {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1}
    assert sorted(os.listdir(p.parent)) == ["f.json"]      # no temporary left
    assert oct(p.stat().st_mode & 0o777) == "0o644"
    files.remove_tree(str(tmp_path / "d"))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- fakes

FAKE_WORK = textwrap.dedent(r'''
    #!/usr/bin/env python3
    # fake `work`: registers in $FAKE_PFPROF/reg, optional barrier, prints one JSON line
    import json, os, sys, time, signal
    args = sys.argv[1:]
    opts = {}
    pos = []
    i = 0
    while i < len(args):
        if args[i] == "--seconds":
            opts["seconds"] = float(args[i + 1]); i += 2
        elif args[i] == "--barrier":
            opts["barrier"] = (args[i + 1], int(args[i + 2])); i += 3
        elif args[i] == "--no-fill":
            opts["no_fill"] = True; i += 1
        elif args[i] == "--fill":
            opts["fill"] = args[i + 1]; i += 2
        else:
            pos.append(args[i]); i += 1
    mb, mode, acc = int(pos[0]), pos[1], int(pos[2])
    behaviour = os.environ.get("FAKE_WORK", "ok")
    if behaviour == "badargs":
        print("work: bad arguments", file=sys.stderr); sys.exit(2)
    reg = os.path.join(os.environ["FAKE_PFPROF"], "reg", str(os.getpid()))
    open(reg, "w").close()
    t_fill = time.monotonic()
    def bye(*_):
        # like work: SIGTERM ends the run early, JSON with the counts so far and
        # "interrupted": true, exit 0
        os.unlink(reg)
        secs = time.monotonic() - t_fill
        print(json.dumps({"pid": os.getpid(), "mb": mb, "mode": mode, "accesses": 700, "seconds": secs,
                          "accesses_per_s": 700 / secs, "minflt": mb * 256, "majflt": 1234,
                          "majflt_timed": 1200, "utime_s": 0.05, "stime_s": 0.2, "interrupted": True}))
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    if "barrier" in opts:
        path, n = opts["barrier"]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(fd, b"x"); os.close(fd)
        while os.path.getsize(path) < n:
            time.sleep(0.01)
    fill_s = time.monotonic() - t_fill
    if behaviour == "hang":
        time.sleep(3600)
    if behaviour == "die" and os.environ.get("FAKE_DIE_PID_FILE"):
        # the first process of the run kills itself (as the OOM killer would)
        try:
            fd = os.open(os.environ["FAKE_DIE_PID_FILE"], os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.close(fd); os.unlink(reg); os.kill(os.getpid(), signal.SIGKILL)
        except FileExistsError:
            pass
    start = time.monotonic_ns()
    secs = opts.get("seconds", 0.3)
    time.sleep(secs)
    end = time.monotonic_ns()
    os.unlink(reg)
    print("some chatter")
    print(json.dumps({"pid": os.getpid(), "mb": mb, "mode": mode, "accesses_per_iteration": acc,
                      "accesses": 1000, "seconds": secs, "accesses_per_s": 1000 / secs,
                      "fill_s": fill_s if "seconds" in opts else 0.0,
                      "start_mono_ns": start, "end_mono_ns": end,
                      "minflt": mb * 256, "majflt": 0, "utime_s": 0.1, "stime_s": 0.01}))
''').lstrip()

FAKE_MONITOR = textwrap.dedent(r'''
    #!/usr/bin/env python3
    # fake `monitor -o FILE --until-idle`: holds the device open, writes a header and
    # one row per registered process seen, exits when they are all gone
    import os, sys, time, signal
    out = sys.argv[sys.argv.index("-o") + 1]
    if os.environ.get("FAKE_MONITOR") == "fail":
        print("monitor: cannot map /dev/pfprof: Device or resource busy", file=sys.stderr); sys.exit(1)
    dev = open(os.environ["FAKE_DEVICE"], "rb")
    regdir = os.path.join(os.environ["FAKE_PFPROF"], "reg")
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    seen = set()
    with open(out, "w") as f:
        f.write("ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags\n")
        while not stop:
            now = set(os.listdir(regdir))
            for pid in now - seen:
                f.write("%d,1,%s,1,0,1,2\n" % (time.monotonic_ns(), pid))
            seen |= now
            if seen and not now and "--until-idle" in sys.argv:
                break
            time.sleep(0.02)
    print("monitor: 0 records dropped", file=sys.stderr)
''').lstrip()


@pytest.fixture
def fake(tmp_path, runner_pyz):
    """A fake machine: /proc, /sys and /dev/pfprof under tmp_path, fake programs, env."""
    proc = tmp_path / "proc"
    for d in ("pressure", "pfprof/reg", "sys/vm"):
        (proc / d).mkdir(parents=True)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "vmstat").write_text(VMSTAT)
    (proc / "pressure" / "memory").write_text(PSI)
    (proc / "pfprof" / "status").write_text("")
    (proc / "pfprof" / "stats").write_text("ticks 0\n")
    (proc / "sys" / "vm" / "swappiness").write_text("60\n")
    sysr = tmp_path / "sys"
    (sysr / "module" / "pfprof" / "parameters").mkdir(parents=True)
    (sysr / "module" / "pfprof" / "parameters" / "interval_ms").write_text("50\n")
    dev = tmp_path / "pfprof.dev"
    dev.write_text("")
    bindir = tmp_path / "opt" / "workloads"
    bindir.mkdir(parents=True)
    for name, text in (("work", FAKE_WORK), ("monitor", FAKE_MONITOR)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    results = tmp_path / "results"

    class Fake:
        root = tmp_path
        env = {**os.environ, "FAKE_PFPROF": str(proc / "pfprof"), "FAKE_DEVICE": str(dev)}

        def run(self, *args, env=None, check=True):
            argv = [sys.executable, str(runner_pyz), *args, "--results-dir", str(results),
                    "--remote-dir", str(tmp_path / "opt"), "--proc-root", str(proc), "--sys-root", str(sysr),
                    "--pfprof-device", str(dev), "--run-dir", str(tmp_path / "run"), "--settle-timeout", "4", "--swap-window", "0.1",
                    "--monitor-grace", "3"]
            p = subprocess.run(argv, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=120)
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith(RESULT_MARK)]
            assert lines, f"no RESULT line:\nstdout={p.stdout}\nstderr={p.stderr}"
            result = json.loads(lines[-1][len(RESULT_MARK):])
            if check:
                assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
            return p.returncode, result, p.stderr

    f = Fake()
    f.proc, f.results, f.dev, f.runner = proc, results, dev, runner_pyz
    return f


MACHINE = ["--machine", "small", "--memory-mb", "256", "--swap-mb", "512", "--cpus", "1", "--accelerator", "tcg"]


def test_case2_end_to_end_with_fakes(fake):
    rc, plan, err = fake.run("case2-start", "--run-id", "t1", *MACHINE, "--lab-min-memory-mb", "256",
                             "--n-values", "1,3", "--repeats", "2", "--seconds", "0.3", "--timeout", "30")
    assert plan["work_mb"] == 34 and plan["n_values"] == [1, 3]     # 150 MiB / 36 = 4.17: too near 4
    assert plan["points"] == [{"n": 1, "repeat": 1}, {"n": 3, "repeat": 1}, {"n": 1, "repeat": 2},
                              {"n": 3, "repeat": 2}]
    for p in plan["points"]:
        rc, res, err = fake.run("case2-point", "--run-id", "t1", "--n", str(p["n"]), "--repeat", str(p["repeat"]))
        assert res["exit_codes"] == [0] * p["n"] and not res["timed_out"]
    rc, res, err = fake.run("case-finish", "--run-id", "t1", "--case", "case2")
    run = fake.results / "t1"
    facts = json.loads((run / "facts.json").read_text())
    assert facts["mem_available_kb"] == 153600 and facts["machine"] == "small" and facts["page_size"] > 0
    assert facts["pfprof_params"] == {"interval_ms": 50} and facts["swappiness"] == 60
    params = json.loads((run / "case2" / "params.json").read_text())
    assert params["work_mb"] == 34 and params["n_values"] == [1, 3] and params["repeats"] == 2
    assert params["variables"]["case2_work_mb"] == 34 and params["ended"]
    assert (run / "case2" / "DONE").is_file()
    pdir = run / "case2" / "n-03" / "r-2"
    names = sorted(os.listdir(pdir))
    for f in ("profile.csv", "work-1.json", "work-2.json", "work-3.json", "vmstat-before.txt", "vmstat-after.txt",
              "psi-before.txt", "psi-after.txt", "meminfo-before.txt", "meminfo-after.txt", "psi-samples.csv",
              "run.json"):
        assert f in names, names
    assert not [n for n in names if n.startswith(".")], names
    rj = json.loads((pdir / "run.json").read_text())
    for key in ("case", "n", "repeat", "work_mb", "mode", "accesses", "seconds", "wall_s", "overlap_s", "started",
                "ended", "exit_codes", "oom_killed"):
        assert key in rj, key
    assert rj["n"] == 3 and rj["exit_codes"] == [0, 0, 0] and rj["oom_killed"] == 0
    # the barrier made the timed phases start together
    assert rj["overlap_s"] is not None and rj["overlap_s"] > 0.2
    assert " --barrier " in rj["commands"]["work"][0] and rj["commands"]["work"][0].endswith(" 3 --fill random")
    assert params["fill_data"] == "random" and params["variables"]["case2_fill"] == "random"
    w = json.loads((pdir / "work-2.json").read_text())
    assert w["mb"] == 34 and w["accesses_per_iteration"] == 10000
    prof = (pdir / "profile.csv").read_text().splitlines()
    assert prof[0] == "ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags" and len(prof) == 4
    samples = (pdir / "psi-samples.csv").read_text().splitlines()
    assert samples[0] == procfs.PSI_HEADER and len(samples) >= 2
    assert (fake.proc / "sys" / "vm" / "drop_caches").read_text() == "3\n"
    # nothing of the work processes' raw output or the barrier is left behind
    assert not os.listdir(fake.root / "run")


def test_case2_auto_plan(fake):
    rc, plan, err = fake.run("case2-start", "--run-id", "t2", *MACHINE, "--lab-min-memory-mb", "256")
    # the fake machine's MemAvailable (150 MiB) / the lab's 36 MiB is 4.17, near the edge: 34 MiB (4.41)
    assert plan["work_mb"] == 34
    assert plan["n_values"] == planning.plan_n_values(150, 512, 34)["n_values"] == [1, 3, 4, 5, 6, 7]
    assert plan["predicted_n"] == round(150 / 34, 3)
    params = json.loads((fake.results / "t2/case2/params.json").read_text())
    assert params["work_mb"] == 34 and params["plan"]["sizing"]["common_mb"] == 36
    assert params["requested"]["work_mb"] == "auto"
    p = subprocess.run([sys.executable, str(fake.runner), "plan-case2", "--mem-available-mb", "400", "--swap-mb", "512",
                        "--lab-min-memory-mb", "256"], capture_output=True, text=True, check=True)
    plan = json.loads(p.stdout.splitlines()[-1][len(RESULT_MARK):])
    assert plan["n_values"] == [1, 6, 11, 12, 13, 18] and plan["work_mb"] == 35     # 400/36 = 11.1 -> 11.43


@pytest.mark.parametrize("lab_min", [192, 256, 320, 512, 1024])
def test_auto_work_mb_keeps_the_prediction_off_the_edge(lab_min):
    """Issue 16: with N x work_mb within 1-2% of MemAvailable for one N, whether that N thrashes
    is a coin toss.  Over MemAvailable from 60 MiB to 4 GiB the auto size keeps the prediction at
    least 0.3 from an integer, within 15% (30% where whole MiB step over the window) of the
    lab's common size, and the plan brackets it."""
    common = planning.plan_work_mb(lab_min)
    for avail in [60 + 0.7 * i for i in range(5000)]:
        sizing = planning.plan_case2_work_mb(avail, lab_min)
        w, p = sizing["work_mb"], avail / sizing["work_mb"]
        assert abs(w - common) <= 0.3 * common
        if sizing["warnings"]:
            # only below 1.3 (nothing fits the latitude) or past 40 processes, where one MiB
            # moves the prediction by more than the 0.4-wide window
            assert (p < 1.3 or p > 40) and "no size within 30%" in sizing["warnings"][0]
            continue
        assert abs(p - round(p)) >= 0.3 - 1e-9
        assert sizing["predicted_n"] == round(p, 3)
        plan = planning.plan_n_values(avail, 512, w)
        if p < 1:                     # not even one process fits: nothing to bracket (the plan warns)
            assert "does not bracket" in plan["warnings"][-1]
            continue
        assert any(n < p for n in plan["n_values"]) and any(n > p for n in plan["n_values"]), (avail, plan)
        assert not [x for x in plan["warnings"] if "bracket" in x]
    # a size already off the edge is kept: the same size on every machine where possible
    assert planning.plan_case2_work_mb(157.6, 256)["work_mb"] == 36


def test_plan_warns_when_the_sweep_does_not_bracket_the_prediction():
    plan = planning.plan_n_values(150, 512, 34, points=1)
    assert plan["n_values"] == [1] and "does not bracket the prediction 4.41" in plan["warnings"][-1]


def test_case2_timeout_is_recorded(fake):
    fake.run("case2-start", "--run-id", "t3", *MACHINE, "--work-mb", "8", "--n-values", "2",
             "--seconds", "0.2", "--timeout", "4")   # room for the fakes to start under load
    t0 = time.monotonic()
    rc, res, err = fake.run("case2-point", "--run-id", "t3", "--n", "2", "--repeat", "1", env={"FAKE_WORK": "hang"})
    assert time.monotonic() - t0 < 30
    assert res["timed_out"] is True
    rj = json.loads((fake.results / "t3/case2/n-02/r-1/run.json").read_text())
    # stopped at the timeout: 124 whatever they exited with (work exits 0 after SIGTERM)
    assert rj["timed_out"] and rj["killed"] == [1, 2] and rj["exit_codes"] == [124, 124]
    assert rj["exit_codes_raw"] == [0, 0] and rj["overlap_s"] is None
    # every process's JSON is kept, with the partial counts it printed after SIGTERM
    for k in (1, 2):
        w = json.loads((fake.results / f"t3/case2/n-02/r-1/work-{k}.json").read_text())
        assert w["interrupted"] is True and w["accesses"] == 700 and w["majflt"] == 1234
        assert w["accesses_per_s"] == pytest.approx(700 / w["seconds"])
    assert rj["missing_json"] == [] and rj["majflt_sum"] == 2 * 1234
    assert rj["accesses_per_s_sum"] > 0
    # the monitor stopped by itself once the killed processes were gone
    assert rj["monitor"]["exit_code"] == 0


def test_case2_one_process_killed(fake, tmp_path):
    fake.run("case2-start", "--run-id", "t4", *MACHINE, "--work-mb", "8", "--n-values", "3",
             "--seconds", "0.3", "--timeout", "20")
    rc, res, err = fake.run("case2-point", "--run-id", "t4", "--n", "3", "--repeat", "1",
                            env={"FAKE_WORK": "die", "FAKE_DIE_PID_FILE": str(tmp_path / "died")})
    assert sorted(res["exit_codes"]) == [0, 0, 137]
    rj = json.loads((fake.results / "t4/case2/n-03/r-1/run.json").read_text())
    assert len(rj["missing_json"]) == 1 and rj["overlap_s"] is None


def test_errors_are_clear(fake):
    # pfprof not loaded
    (fake.proc / "pfprof" / "status").unlink()
    rc, res, err = fake.run("case2-start", "--run-id", "t5", *MACHINE, "--work-mb", "8", check=False)
    assert rc == 1 and "pfprof is not loaded" in res["error"] and "setup.yml" in res["error"]
    (fake.proc / "pfprof" / "status").write_text("")
    # a point before the start
    rc, res, err = fake.run("case2-point", "--run-id", "t6", "--n", "1", "--repeat", "1", check=False)
    assert rc == 1 and "params.json is missing" in res["error"]
    # every work fails at once: an error, with the run kept for diagnosis
    fake.run("case2-start", "--run-id", "t7", *MACHINE, "--work-mb", "8", "--n-values", "2")
    rc, res, err = fake.run("case2-point", "--run-id", "t7", "--n", "2", "--repeat", "1", check=False,
                            env={"FAKE_WORK": "badargs"})
    assert rc == 1 and "every work process failed" in res["error"]
    assert "bad arguments" in (fake.results / "t7/case2/n-02/r-1/work-1.log").read_text()
    # finish refuses an incomplete case
    fake.run("case2-start", "--run-id", "t8", *MACHINE, "--work-mb", "8", "--n-values", "1,2", "--seconds", "0.2")
    fake.run("case2-point", "--run-id", "t8", "--n", "1", "--repeat", "1", "--settle-timeout", "2")
    rc, res, err = fake.run("case-finish", "--run-id", "t8", "--case", "case2", check=False)
    assert rc == 1 and "incomplete" in res["error"] and "n-02/r-1" in res["error"]
    assert not (fake.results / "t8/case2/DONE").exists()
    # the monitor cannot start
    rc, res, err = fake.run("case2-point", "--run-id", "t8", "--n", "2", "--repeat", "1", check=False,
                            env={"FAKE_MONITOR": "fail"})
    assert rc == 1 and "monitor exited at start" in res["error"] and "resource busy" in res["error"]
    assert not (fake.results / "t8/case2/n-02/r-1").exists()
    # ... after which the later steps of the case stop at once, saying why
    assert "monitor exited at start" in json.loads((fake.results / "t8/case2/FAILED").read_text())["error"]
    t0 = time.monotonic()
    rc, res, err = fake.run("case2-point", "--run-id", "t8", "--n", "2", "--repeat", "1", check=False)
    assert rc == 1 and res["error"].startswith("an earlier step of case2 failed (the monitor exited")
    assert time.monotonic() - t0 < 5
    rc, res, err = fake.run("case-finish", "--run-id", "t8", "--case", "case2", check=False)
    assert rc == 1 and "an earlier step" in res["error"]
    # a new start begins afresh
    fake.run("case2-start", "--run-id", "t8", *MACHINE, "--work-mb", "8", "--n-values", "1", "--seconds", "0.2")
    assert sorted(os.listdir(fake.results / "t8/case2")) == ["facts.json", "params.json"]
    # bad values
    rc, res, err = fake.run("case2-start", "--run-id", "t9", *MACHINE, "--work-mb", "8", "--repeats", "0",
                            check=False)
    assert rc == 1 and "case2_repeats" in res["error"]
    rc, res, err = fake.run("case2-start", "--run-id", "t9", *MACHINE, "--work-mb", "8", "--fill", "ones",
                            check=False)
    assert rc == 1 and "case2_fill must be random, zero or text, not 'ones'" in res["error"]
    rc, res, err = fake.run("case1-start", "--run-id", "t9", *MACHINE, "--pair", "A=8 R 100,8 R 10",
                            "--fill", "maybe", check=False)
    assert rc == 1 and "case1_fill must be false, true, random, zero or text" in res["error"]
    rc, res, err = fake.run("case2-start", "--run-id", "../x", *MACHINE, check=False)
    assert rc == 1 and "bad run id" in res["error"]


def test_interrupted_point_leaves_nothing_complete(fake):
    fake.run("case2-start", "--run-id", "ti", *MACHINE, "--work-mb", "8", "--n-values", "2",
             "--seconds", "30", "--timeout", "60")
    argv = [sys.executable, str(fake.runner), "case2-point", "--run-id", "ti", "--n", "2", "--repeat", "1",
            "--results-dir", str(fake.results), "--remote-dir", str(fake.root / "opt"),
            "--proc-root", str(fake.proc), "--sys-root", str(fake.root / "sys"),
            "--pfprof-device", str(fake.dev), "--run-dir", str(fake.root / "run"), "--settle-timeout", "4"]
    p = subprocess.Popen(argv, env=fake.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reg = fake.proc / "pfprof" / "reg"
    deadline = time.monotonic() + 30
    while len(os.listdir(reg)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir(reg)) == 2
    p.terminate()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1 and "interrupted" in out
    case2 = fake.results / "ti" / "case2"
    assert not (case2 / "n-02" / "r-1").exists()
    assert [n for n in os.listdir(case2 / "n-02")] == [".r-1.partial"]
    # no work process was left running
    assert processes.processes_of([str(fake.root / "opt" / "workloads" / "work")]) == []


def test_case1_with_fakes(fake):
    rc, plan, err = fake.run("case1-start", "--run-id", "c1", *MACHINE, "--pair", "A=auto R many,auto R few",
                             "--pair", "B=auto R many,auto L few", "--iterations", "3")
    assert plan["work_mb"] == 40 and plan["pairs"] == ["A", "B"]
    for pair in plan["pairs"]:
        rc, res, err = fake.run("case1-pair", "--run-id", "c1", "--pair", pair)
        assert res["exit_codes"] == [0, 0]
    fake.run("case-finish", "--run-id", "c1", "--case", "case1")
    run = fake.results / "c1" / "case1"
    params = json.loads((run / "params.json").read_text())
    # the course's 50000 and 10000 accesses per 1024 MiB, scaled to 40 MiB
    assert params["pairs"] == {"pair-A": ["R 40 1953", "R 40 391"], "pair-B": ["R 40 1953", "L 40 391"]}
    assert params["variables"]["case1_accesses_many"] == 1953
    assert params["fill"] is False          # course mode: no --seconds, no fill
    rj = json.loads((run / "pair-B" / "run.json").read_text())
    assert rj["case"] == 1 and rj["pair"] == "pair-B" and rj["exit_codes"] == [0, 0]
    assert rj["commands"]["work"][1].endswith("work 40 L 391 3 --no-fill")
    for f in ("profile.csv", "work-1.json", "work-2.json", "run.json"):
        assert (run / "pair-A" / f).is_file()
    rc, res, err = fake.run("case1-pair", "--run-id", "c1", "--pair", "C", check=False)
    assert rc == 1 and "no pair-C" in res["error"]
    # a pair too big for the machine is run, with a warning
    rc, plan, err = fake.run("case1-start", "--run-id", "c2", *MACHINE, "--pair", "A=100 R 5,100 R 5")
    assert plan["warnings"] and "will not fit" in plan["warnings"][0]


@pytest.mark.parametrize("fill,expect", [(None, "--no-fill"), ("false", "--no-fill"), ("true", "--fill random"),
                                         ("text", "--fill text")])
def test_case1_fill_reaches_work(fake, fill, expect):
    # case1_fill: no fill phase (the course's), or a fill phase writing random, zero or text data
    extra = ["--fill", fill] if fill is not None else []
    fake.run("case1-start", "--run-id", "f1", *MACHINE, "--pair", "A=8 R 100 2,8 R 10 2", *extra)
    params = json.loads((fake.results / "f1/case1/params.json").read_text())
    assert params["fill"] is (expect != "--no-fill")
    fake.run("case1-pair", "--run-id", "f1", "--pair", "A")
    rj = json.loads((fake.results / "f1/case1/pair-A/run.json").read_text())
    assert all(c.endswith(" " + expect) for c in rj["commands"]["work"]), rj["commands"]["work"]
