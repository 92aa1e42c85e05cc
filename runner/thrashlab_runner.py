#!/usr/bin/env python3
"""thrashlab runner: Case Study 1 and 2, and the benchmarks, on one lab machine.

Copied to every machine by playbooks/roles/case_runner and run there as root,
one command per Ansible task. Python 3 standard library only (the machines
have python3 and no pip).

    thrashlab_runner.py case2-start  --run-id ID --machine NAME [plan options]
    thrashlab_runner.py case2-point  --run-id ID --n N --repeat R
    thrashlab_runner.py case1-start  --run-id ID --machine NAME [--work-mb auto|MB] --pair A=SPEC,SPEC ...
                                     (SPEC: "MB MODE ACCESSES [ITERATIONS]", MB may be auto,
                                      ACCESSES many or few: --accesses-many/--accesses-few)
    thrashlab_runner.py case1-pair   --run-id ID --pair A
    thrashlab_runner.py bench-start  --run-id ID --machine NAME [--rounds R --processes 1,8,32 ...]
    thrashlab_runner.py bench-idle   --run-id ID
    thrashlab_runner.py bench-round  --run-id ID --round K
    thrashlab_runner.py case-finish  --run-id ID --case case1|case2|bench
    thrashlab_runner.py facts        --run-id ID --machine NAME
    thrashlab_runner.py plan-case2   --mem-available-mb A --swap-mb S [plan options]   (prints, writes nothing)

Results follow docs/results-format.md under <results dir>/<run id>/ (default
/var/lib/thrashlab/results). A case's start reads the machine's facts after
letting it settle, resolves the parameters that are `auto` and writes
<case>/params.json; every later step reads its parameters from there, so the
file always says what really ran.

One run (a Case Study 2 point, or a Case Study 1 pair):
  1. settle: wait until earlier work/monitor processes are gone (kill them after
     a bound), `sync`, drop the page cache, wait until swap-in/out is quiet;
  2. copy /proc/vmstat, /proc/pressure/memory, /proc/meminfo (and pfprof's stats);
  3. start `monitor -o profile.csv --until-idle` and wait until it has
     /dev/pfprof open, then start the work processes (Case Study 2: with
     `--barrier`, so that all of them fill their memory first and start their
     timed phase together);
  4. sample PSI memory every --psi-interval s into psi-samples.csv while they
     run; everything is bounded by --timeout: leftovers are killed and the
     run says so (timed_out, killed);
  5. each work's JSON line -> work-K.json; the copies after; run.json.
A run is built in a hidden directory (.r-1.partial) and renamed into place
after its run.json is written; each file is written to a temporary name and
renamed. So an interrupted run never leaves anything that looks complete.
A case is complete when <case>/DONE exists (case-finish writes it last).

Output: progress on stderr; the last line on stdout is
`THRASHLAB-RESULT <one JSON object>` (what the playbooks read), preceded by
`THRASHLAB-SUMMARY <one line for humans>`. Exit status 0 when the step was
done and recorded (a run with an OOM kill or a timeout is recorded, not an
error), 1 on an error (message on stderr and in the RESULT line), 2 on bad
arguments.
"""
from __future__ import annotations

import argparse
import datetime
import errno
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

RUNNER_VERSION = 1
DEFAULT_RESULTS_DIR = "/var/lib/thrashlab/results"
DEFAULT_REMOTE_DIR = "/opt/thrashlab"
TIMEOUT_EXIT = 124           # exit code recorded for a process stopped at the run's timeout
# A work process stopped at the timeout gets this long after SIGTERM to print its JSON
# (partial counts, "interrupted": true) before SIGKILL: a thrashing process may first
# have to fault its code and stack back in.
WORK_STOP_GRACE = 10.0
RESULT_MARK = "THRASHLAB-RESULT "
SUMMARY_MARK = "THRASHLAB-SUMMARY "
PSI_HEADER = "t_s,some_avg10,full_avg10,some_total_us,full_total_us"

# Planning constants (see plan_work_mb, plan_n_values, plan_case1_mb).
BOOT_OVERHEAD_MB = 100       # RAM a booted Debian guest does not have available (measured: 97-113 MiB)
EDGE_CLEARANCE = 0.3         # auto case2_work_mb keeps MemAvailable / work_mb this far from an integer
SIZE_LATITUDE = 0.15         # ... moving the lab's common size by at most this share either way
CASE1_SHARE = 0.30           # each Case Study 1 process gets this share of MemAvailable
CASE1_COURSE_MB = 1024       # the course's size, used when the machine has room for it

RUNNER_STARTED = None        # UTC time this runner process started (set by main)
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
PAIR_RE = re.compile(r"^[A-Za-z0-9]{1,8}$")


class RunnerError(Exception):
    """An error that stops the step; the message says what and where."""


class Interrupted(Exception):
    pass


# ---------------------------------------------------------------------------- small helpers

def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def log(msg: str) -> None:
    print("runner: " + msg, file=sys.stderr, flush=True)


def read_text(path: str, default: str | None = None) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def atomic_write(path: str, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``path`` so that it either does not exist or is complete: a temporary
    name in the same directory, fsync, rename."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, ".%s.tmp-%d" % (os.path.basename(path), os.getpid()))
    b = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_json(path: str, obj, indent: int | None = 1) -> None:
    atomic_write(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Remove a directory: first renamed to a hidden name, so that it vanishes at once."""
    if not os.path.lexists(path):
        return
    parent, base = os.path.split(path.rstrip("/"))
    trash = os.path.join(parent, ".%s.old-%d-%d" % (base, os.getpid(), time.monotonic_ns()))
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def exit_code(returncode: int | None) -> int | None:
    """Popen's return code as a shell would show it: a death by signal S is 128+S."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def tail(path: str, limit: int = 1500) -> str:
    text = read_text(path, "") or ""
    return text[-limit:]


# ---------------------------------------------------------------------------- /proc parsers (pure)

def parse_meminfo(text: str) -> dict:
    """``/proc/meminfo`` -> {key: value in kB (or a plain count)}."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key.strip()] = int(fields[0])
    return out


def parse_vmstat(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("-").isdigit():
            out[fields[0]] = int(fields[1])
    return out


def parse_psi(text: str) -> dict:
    """``/proc/pressure/memory`` -> {"some": {"avg10": f, "avg60": f, "avg300": f, "total": int}, "full": {...}}."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] not in ("some", "full"):
            continue
        entry = {}
        for kv in fields[1:]:
            k, _, v = kv.partition("=")
            try:
                entry[k] = int(v) if k == "total" else float(v)
            except ValueError:
                continue
        out[fields[0]] = entry
    return out


def psi_row(t_s: float, psi: dict) -> str:
    some, full = psi.get("some", {}), psi.get("full", {})

    def f(d, k, fmt):
        return fmt % d[k] if k in d else ""
    return ",".join([
        "%.3f" % t_s, f(some, "avg10", "%.2f"), f(full, "avg10", "%.2f"),
        f(some, "total", "%d"), f(full, "total", "%d")])


def vmstat_delta(before: dict, after: dict, key: str) -> int | None:
    if key in before and key in after:
        return after[key] - before[key]
    return None


def overlap_s(works: list) -> float | None:
    """How long all timed phases ran together: max of starts to min of ends (0 if
    they never overlapped). None when a work JSON or its timestamps are missing."""
    starts, ends = [], []
    for w in works:
        if not isinstance(w, dict):
            return None
        s, e = w.get("start_mono_ns"), w.get("end_mono_ns")
        if not isinstance(s, int) or not isinstance(e, int) or isinstance(s, bool) or isinstance(e, bool):
            return None
        starts.append(s)
        ends.append(e)
    if not starts:
        return None
    return round(max(0, min(ends) - max(starts)) / 1e9, 3)


def parse_work_output(text: str) -> dict | None:
    """The JSON object a work process printed at exit: its last stdout line that parses as one."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


# ---------------------------------------------------------------------------- planning (pure)

def plan_work_mb(lab_min_memory_mb: int) -> int:
    """Case Study 2's common per-process size for a lab (auto moves it a little per
    machine: :func:`plan_case2_work_mb`).

    A quarter of what the lab's smallest machine has available after boot
    (estimated as its RAM minus BOOT_OVERHEAD_MB), rounded down to a multiple of
    4 MiB (8 MiB from 64 MiB up): the smallest machine then thrashes from about
    N = 4-5, and every machine's knee is at N = its available RAM / this size,
    on the same scale. Computed from the lab file, not measured, so that every
    run of a lab uses the same size. 256 MiB -> 36; 192 -> 20; 1 GiB -> 224.
    """
    est = max(int(lab_min_memory_mb) - BOOT_OVERHEAD_MB, 32)
    quarter = est / 4.0
    step = 8 if quarter >= 64 else 4
    return max(8, int(quarter // step) * step)


def edge_distance(p: float) -> float:
    """How far the prediction p is from the nearest integer (0: on the edge, 0.5: midway)."""
    return abs(p - round(p))


def plan_case2_work_mb(avail_mb: float, lab_min_memory_mb: int) -> dict:
    """``case2_work_mb: auto`` on one machine, from its MemAvailable measured after it settled.

    Start from the lab's common size (:func:`plan_work_mb`) and take the whole
    MiB closest to it, within SIZE_LATITUDE of it (twice that when whole MiB
    step over the window: small sizes at large p), for which the working-set
    prediction p = avail_mb / work_mb is at least EDGE_CLEARANCE from an
    integer.  With p near an integer, N = round(p) fills memory to within a
    few MiB and whether it thrashes is a coin toss, so N* flips between runs
    (issue 16: 4 x 36 MiB against 145.5 MiB).  The machines of a lab then get
    sizes a few MiB apart (default lab: 34-36 MiB against a common 36);
    each machine's prediction uses its own size (case2/params.json), so the
    comparison stays exact.  If no size within the latitude clears the edge
    (p below about 1.3, or beyond about 40 processes of a few MiB, where one
    MiB moves p by more than the window), the one farthest from it is taken,
    with a warning.
    """
    if avail_mb <= 0:
        raise RunnerError("plan: available memory must be positive (got %r)" % avail_mb)
    common = plan_work_mb(lab_min_memory_mb)
    warnings = []
    for latitude in (SIZE_LATITUDE, 2 * SIZE_LATITUDE):
        low = max(4, int(math.ceil(common * (1 - latitude))))
        high = int(math.floor(common * (1 + latitude)))
        candidates = sorted(range(low, high + 1), key=lambda w: (abs(w - common), -w))
        clear = [w for w in candidates if edge_distance(avail_mb / w) >= EDGE_CLEARANCE - 1e-9]
        if clear:
            work_mb = clear[0]
            break
    else:
        work_mb = max(candidates, key=lambda w: (round(edge_distance(avail_mb / w), 6), -abs(w - common)))
        warnings.append("no size within %d%% of %d MiB puts the prediction %.1f or more from an integer: "
                        "%d MiB (prediction %.2f)" % (round(2 * SIZE_LATITUDE * 100), common, EDGE_CLEARANCE,
                                                      work_mb, avail_mb / work_mb))
    return {"work_mb": work_mb, "common_mb": common, "predicted_n": round(avail_mb / work_mb, 3),
            "edge_distance": round(edge_distance(avail_mb / work_mb), 3), "warnings": warnings}


def plan_n_values(avail_mb: float, swap_mb: float, work_mb: float, points: int = 6,
                  max_factor: float = 1.5, swap_fraction: float = 0.8) -> dict:
    """The N values of a Case Study 2 sweep: from 1 to about max_factor times the
    working-set prediction p = avail_mb / work_mb, at most ``points`` values,
    dense (steps of 1) around the first N that does not fit, capped so that
    N * work_mb stays below avail_mb + swap_fraction * swap_mb (no OOM kill).

    Priority: 1, k = floor(p) + 1 (first N past the available memory), k - 1,
    k + 1, the top, about k/2, halfway between k + 1 and the top; then the
    largest gaps are split until ``points`` values are chosen.
    """
    if work_mb <= 0 or avail_mb <= 0:
        raise RunnerError("plan: available memory and work_mb must be positive (got %r, %r)" % (avail_mb, work_mb))
    points = max(1, int(points))
    p = avail_mb / work_mb
    k = int(math.floor(p)) + 1
    cap = int(math.floor((avail_mb + swap_fraction * max(swap_mb, 0)) / work_mb))
    top = max(int(math.ceil(max_factor * p)), k + 1)
    warnings = []
    if cap < top:
        if cap < k:
            warnings.append("swap too small for the sweep to pass the prediction: N <= %d keeps "
                            "N x %g MiB below %g MiB available + %d%% of %g MiB swap, the first N "
                            "past the available memory is %d" % (cap, work_mb, avail_mb,
                                                                  round(swap_fraction * 100), swap_mb, k))
        top = cap
    top = max(top, 1)
    chosen: list[int] = []
    for n in (1, k, k - 1, k + 1, top, int(k / 2.0 + 0.5), int((k + 1 + top) / 2.0 + 0.5)):
        if 1 <= n <= top and n not in chosen and len(chosen) < points:
            chosen.append(n)
    while len(chosen) < points:
        s = sorted(chosen)
        gaps = [(b - a, a, b) for a, b in zip(s, s[1:]) if b - a > 1]
        if not gaps:
            break
        width, a, b = max(gaps, key=lambda g: (g[0], g[1]))
        chosen.append(a + width // 2)
    # the knee is only located when the sweep has an N on each side of the prediction
    if not (any(n <= p for n in chosen) and any(n > p for n in chosen)):
        warnings.append("the sweep %s does not bracket the prediction %.2f (an N at or below it and "
                        "one above it)" % (sorted(chosen), p))
    return {"n_values": sorted(chosen), "predicted_n": round(p, 3), "first_n_past_available": k,
            "n_cap": cap, "warnings": warnings}


def plan_case1_mb(avail_mb: float) -> int:
    """Case Study 1's per-process size: the course's 1024 MiB when two of them
    take at most 60% of MemAvailable, else 30% of MemAvailable each, rounded down
    to a multiple of 8 MiB (a pair then fits in memory: no major faults)."""
    each = avail_mb * CASE1_SHARE
    if each >= CASE1_COURSE_MB:
        return CASE1_COURSE_MB
    return max(8, int(each // 8) * 8)


def parse_n_values(text: str) -> list[int]:
    vals = []
    for part in re.split(r"[,\s]+", text.strip().strip("[]")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise RunnerError("n_values: %r is not a positive integer (in %r)" % (part, text))
        vals.append(int(part))
    if not vals:
        raise RunnerError("n_values: empty list")
    if len(set(vals)) != len(vals):
        raise RunnerError("n_values: duplicates in %r" % text)
    return vals


COURSE_ACCESSES = {"many": 50000, "few": 10000}   # the course's, for 1024 MiB processes


def case1_accesses(value, name: str, mb: int) -> int:
    """Accesses per iteration of Case Study 1's busier ('many') or quieter ('few')
    process: an integer, or auto: the course's 50000 / 10000 scaled by mb / 1024 MiB,
    so that accesses per page, and so the share of the region the 20 iterations
    touch (P x (1 - exp(-A/P))), are the course's at any size."""
    if str(value) == "auto":
        return max(1, int(round(COURSE_ACCESSES[name] * mb / float(CASE1_COURSE_MB))))
    return _positive_int(value, "case1_accesses_%s" % name)


def parse_work_spec(spec: str, default_mb: int | None, iterations: int | None,
                    named_accesses: dict | None = None) -> dict:
    """'MB MODE ACCESSES [ITERATIONS]' (the course's `work` arguments; MB may be
    'auto', ACCESSES 'many' or 'few' (case1_accesses_*)) -> {"mb", "mode",
    "accesses_per_iteration", "iterations"}."""
    fields = spec.split()
    if len(fields) not in (3, 4):
        raise RunnerError("work spec %r: expected 'MB MODE ACCESSES [ITERATIONS]'" % spec)
    mb, mode, acc = fields[:3]
    if mb == "auto":
        if default_mb is None:
            raise RunnerError("work spec %r: 'auto' size but no planned size" % spec)
        mb = default_mb
    elif mb.isdigit() and int(mb) > 0:
        mb = int(mb)
    else:
        raise RunnerError("work spec %r: size %r is not a positive integer (MiB) or 'auto'" % (spec, mb))
    if mode not in ("R", "L"):
        raise RunnerError("work spec %r: mode must be R or L" % spec)
    if named_accesses and acc in named_accesses:
        acc = str(named_accesses[acc](mb))
    if not acc.isdigit() or int(acc) < 1:
        raise RunnerError("work spec %r: accesses %r is not a positive integer%s" % (
            spec, acc, " or one of " + ", ".join(sorted(named_accesses)) if named_accesses else ""))
    it = fields[3] if len(fields) == 4 else iterations
    if it is not None:
        if not str(it).isdigit() or int(it) < 1:
            raise RunnerError("work spec %r: iterations %r is not a positive integer" % (spec, it))
        it = int(it)
    return {"mb": mb, "mode": mode, "accesses_per_iteration": int(acc), "iterations": it}


def case2_points(n_values: list[int], repeats: int) -> list[dict]:
    """The order of a sweep: repeat 1 over every N (ascending), then repeat 2, ...
    so that a drift of the machine over time does not line up with N."""
    return [{"n": n, "repeat": r} for r in range(1, repeats + 1) for n in sorted(n_values)]


def point_dir_name(n: int, repeat: int) -> str:
    return os.path.join("n-%02d" % n, "r-%d" % repeat)


# ---------------------------------------------------------------------------- the machine

class Machine:
    """Where the runner reads and writes the kernel's files (tests point it elsewhere)."""

    def __init__(self, proc_root="/proc", sys_root="/sys", device="/dev/pfprof", run_dir="/run/thrashlab"):
        self.proc = proc_root
        self.sys = sys_root
        self.device = device
        self.run_dir = run_dir

    def p(self, *parts):
        return os.path.join(self.proc, *parts)

    def read(self, *parts) -> str:
        text = read_text(self.p(*parts))
        if text is None:
            raise RunnerError("cannot read %s" % self.p(*parts))
        return text

    def vmstat(self) -> dict:
        return parse_vmstat(self.read("vmstat"))

    def meminfo(self) -> dict:
        return parse_meminfo(self.read("meminfo"))

    def psi_text(self) -> str | None:
        return read_text(self.p("pressure", "memory"))

    def pfprof_status_path(self):
        return self.p("pfprof", "status")

    def check_pfprof(self) -> None:
        status = self.pfprof_status_path()
        if not os.path.exists(status):
            raise RunnerError("pfprof is not loaded on this machine (no %s): run "
                              "`ansible-playbook playbooks/setup.yml`, which builds and loads it" % status)
        if not os.path.exists(self.device):
            raise RunnerError("pfprof is loaded but %s is missing: reload the module "
                              "(ansible-playbook playbooks/setup.yml)" % self.device)

    def registered(self) -> list[str]:
        text = read_text(self.pfprof_status_path(), "") or ""
        # one line per registered process, its pid first (a header line may precede them)
        return [line for line in text.splitlines() if line.split()[:1] and line.split()[0].isdigit()]

    def drop_caches(self) -> None:
        os.sync()
        path = self.p("sys", "vm", "drop_caches")
        try:
            with open(path, "w") as f:
                f.write("3\n")
        except OSError as e:
            raise RunnerError("cannot drop caches (%s: %s): the runner must run as root" % (path, e.strerror))

    def swap_io(self) -> int:
        v = self.vmstat()
        return v.get("pswpin", 0) + v.get("pswpout", 0)

    def module_params(self) -> dict:
        d = os.path.join(self.sys, "module", "pfprof", "parameters")
        out = {}
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return out
        for name in names:
            v = (read_text(os.path.join(d, name), "") or "").strip()
            out[name] = int(v) if v.isdigit() else v
        return out


def processes_of(executables: list[str]) -> list[int]:
    """PIDs (from the real /proc) of live processes running one of ``executables``
    (matched on /proc/PID/exe, or on argv[0]/argv[1] for scripts)."""
    want = {os.path.realpath(e) for e in executables if e}
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            stat = read_text("/proc/%d/stat" % pid, "") or ""
            if stat.rpartition(")")[2].split()[:1] == ["Z"]:
                continue
            try:
                exe = os.readlink("/proc/%d/exe" % pid)
            except OSError:
                exe = ""
            if exe.endswith(" (deleted)"):
                exe = exe[:-10]
            argv = (read_text("/proc/%d/cmdline" % pid, "") or "").split("\0")[:2]
        except OSError:
            continue
        cands = {exe} | {os.path.realpath(a) for a in argv if a.startswith("/")}
        if cands & want:
            found.append(pid)
    return found


def pid_alive(pid: int) -> bool:
    stat = read_text("/proc/%d/stat" % pid)
    if stat is None:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def has_open(pid: int, path: str) -> bool:
    target = os.path.realpath(path)
    d = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(d)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.path.realpath(os.readlink(os.path.join(d, fd))) == target:
                return True
        except OSError:
            continue
    return False


def settle(machine: Machine, executables: list[str], timeout: float = 30.0, quiet_pages: int | None = None,
           window: float = 0.25) -> dict:
    """Let the machine calm down between runs; returns what was done, for run.json."""
    t0 = time.monotonic()
    info = {"leftover_killed": [], "swap_quiet": False}
    # 1. earlier processes gone (they exit on their own; killed after half the bound)
    deadline = t0 + timeout / 2
    while True:
        left = processes_of(executables)
        if not left:
            break
        if time.monotonic() > deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                    info["leftover_killed"].append(pid)
                except OSError:
                    pass
            kill_deadline = time.monotonic() + 10
            while processes_of(executables) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            log("killed leftover processes %s" % info["leftover_killed"])
            break
        time.sleep(0.2)
    # 2. clean page cache
    machine.drop_caches()
    # 3. swap traffic quiet over one window: at most 64 pages a second (a short
    # window: every run pays for it, and a sweep's overhead is mostly such waits)
    if quiet_pages is None:
        quiet_pages = max(4, round(64 * window))
    deadline = t0 + timeout
    last = machine.swap_io()
    delta = None
    while True:
        time.sleep(window)
        now = machine.swap_io()
        delta = now - last
        last = now
        if delta <= quiet_pages:
            info["swap_quiet"] = True
            break
        if time.monotonic() > deadline:
            log("swap still busy after %.0f s (%d pages in the last %.1f s); going on" % (timeout, delta, window))
            break
    info["swap_pages_last_window"] = delta
    info["settle_s"] = round(time.monotonic() - t0, 3)
    return info


# ---------------------------------------------------------------------------- facts

def read_facts(machine: Machine, args) -> dict:
    mem = machine.meminfo()
    uname = platform.uname()
    facts = {
        "machine": args.machine,
        "kernel": uname.release,
        "memory_mb": args.memory_mb,
        "mem_total_kb": mem.get("MemTotal"),
        "mem_available_kb": mem.get("MemAvailable"),
        "mem_free_kb": mem.get("MemFree"),
        "swap_total_kb": mem.get("SwapTotal"),
        "swap_free_kb": mem.get("SwapFree"),
        "swap_mb": args.swap_mb,
        "cpus": args.cpus if args.cpus is not None else os.cpu_count(),
        "online_cpus": os.cpu_count(),
        "accelerator": args.accelerator,
        "hostname": socket.gethostname(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "arch": uname.machine,
        "kernel_version": uname.version,
        "python": platform.python_version(),
        "read_at": utc_now(),
        "pfprof_params": machine.module_params(),
        "runner_version": RUNNER_VERSION,
    }
    for key, rel in (("swappiness", ("sys", "vm", "swappiness")),
                     ("min_free_kbytes", ("sys", "vm", "min_free_kbytes")),
                     ("overcommit_memory", ("sys", "vm", "overcommit_memory"))):
        v = (read_text(machine.p(*rel), "") or "").strip()
        if v.lstrip("-").isdigit():
            facts[key] = int(v)
    thp = read_text(os.path.join(machine.sys, "kernel", "mm", "transparent_hugepage", "enabled"))
    if thp:
        m = re.search(r"\[(\w+)\]", thp)
        facts["transparent_hugepage"] = m.group(1) if m else thp.strip()
    if args.backend:
        facts["backend"] = args.backend
    facts.update(read_memory_setup(machine))
    return facts


def read_memory_setup(machine: Machine, etc: str = "/etc") -> dict:
    """What the machine's memory set-up is, read from it (never from the lab
    file): Debian suite, swap areas, zswap, MGLRU and every vm.* sysctl."""
    swaps = []
    for line in (read_text(machine.p("swaps"), "") or "").splitlines()[1:]:
        f = line.split()
        if len(f) >= 5 and f[2].isdigit():
            swaps.append({"name": f[0].replace("\\040", " "), "type": f[1], "size_kb": int(f[2]),
                          "priority": int(f[4]) if f[4].lstrip("-").isdigit() else None})
    zswap = (read_text(os.path.join(machine.sys, "module", "zswap", "parameters", "enabled")) or "").strip()
    compressor = (read_text(os.path.join(machine.sys, "module", "zswap", "parameters", "compressor")) or "").strip()
    lru_gen = (read_text(os.path.join(machine.sys, "kernel", "mm", "lru_gen", "enabled")) or "").strip()
    if any(a["name"].startswith("/dev/zram") for a in swaps):
        swap_type = "zram"
    elif not swaps:
        swap_type = None
    else:
        swap_type = "zswap" if zswap == "Y" else "file"
    try:
        mglru = ("on" if int(lru_gen, 16) else "off") if lru_gen else None
    except ValueError:
        mglru = None
    vm = {}
    vm_dir = machine.p("sys", "vm")
    for name in sorted(os.listdir(vm_dir)) if os.path.isdir(vm_dir) else []:
        value = read_text(os.path.join(vm_dir, name))
        if value is not None and "\n" not in value.strip():
            vm["vm." + name] = " ".join(value.split())
    debian_version = (read_text(os.path.join(etc, "debian_version")) or "").strip()
    suite = "sid" if debian_version.endswith("/sid") else None
    for line in (read_text(os.path.join(etc, "os-release")) or "").splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and suite is None:
            suite = value.strip().strip('"') or None
    return {"suite": suite, "debian_version": debian_version or None, "swaps": swaps,
            "swap_type": swap_type, "zswap_enabled": zswap or None, "zswap_compressor": compressor or None,
            "lru_gen": lru_gen or None, "mglru": mglru, "vm_sysctl": vm}


# ---------------------------------------------------------------------------- one run

class RunSpec:
    def __init__(self, works: list[list[str]], timeout: float, psi_interval: float,
                 monitor_argv_head: list[str], monitor_grace: float = 15.0, work_env=None):
        self.works = works
        self.timeout = timeout
        self.psi_interval = psi_interval
        self.monitor_argv_head = monitor_argv_head
        self.monitor_grace = monitor_grace
        self.work_env = work_env


def _reset_oom_score():
    # The runner protects itself from the OOM killer; the work processes must not
    # inherit that (they are the processes under test).
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("0\n")
    except OSError:
        pass


def _stop(procs: list, grace: float = 3.0) -> list[int]:
    """SIGTERM the live ones, then SIGKILL what is left after ``grace``; returns the
    indexes of those that had to be stopped."""
    stopped = [i for i, p in enumerate(procs) if p.poll() is None]
    for i in stopped:
        try:
            procs[i].send_signal(signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(procs[i].poll() is None for i in stopped):
        time.sleep(0.05)
    for i in stopped:
        if procs[i].poll() is None:
            try:
                procs[i].kill()
            except OSError:
                pass
    for i in stopped:
        try:
            procs[i].wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    return stopped


def execute_run(machine: Machine, spec: RunSpec, out: str) -> dict:
    """Snapshots, monitor, work processes, PSI sampling, work JSONs, snapshots.
    Writes into ``out`` (the run's hidden directory); returns the facts of the run
    for run.json."""
    info: dict = {}
    snap_names = (("vmstat", ("vmstat",)), ("psi", ("pressure", "memory")), ("meminfo", ("meminfo",)))

    def snapshot(when):
        for name, rel in snap_names:
            text = read_text(machine.p(*rel))
            if text is not None:
                atomic_write(os.path.join(out, "%s-%s.txt" % (name, when)), text)
        stats = read_text(machine.p("pfprof", "stats"))
        if stats is not None:
            atomic_write(os.path.join(out, "pfprof-stats-%s.txt" % when), stats)

    registered_before = machine.registered()
    if registered_before:
        info["pfprof_registered_before"] = registered_before
    vm_before = machine.vmstat()
    snapshot("before")

    started = utc_now()
    profile_tmp = os.path.join(out, ".profile.csv.partial")
    monitor_log = os.path.join(out, "monitor.log")
    monitor_argv = spec.monitor_argv_head + ["-o", profile_tmp, "--until-idle"]
    procs: list = []
    monitor = None
    logs = []
    sigchld_blocked = False
    try:
        mlog = open(monitor_log, "wb")
        logs.append(mlog)
        monitor = subprocess.Popen(monitor_argv, stdin=subprocess.DEVNULL, stdout=mlog, stderr=subprocess.STDOUT)
        # Wait until the monitor has the ring open: records written before that could be missed.
        ready_deadline = time.monotonic() + 10
        ready = False
        while time.monotonic() < ready_deadline:
            if monitor.poll() is not None:
                raise RunnerError("the monitor exited at start with status %s: %s"
                                  % (exit_code(monitor.returncode), tail(monitor_log, 600).strip()))
            if has_open(monitor.pid, machine.device):
                ready = True
                break
            time.sleep(0.02)
        if not ready:
            log("the monitor has not opened %s after 10 s; starting the work processes anyway" % machine.device)
        info["monitor_ready"] = ready

        t0 = time.monotonic()
        t0_ns = time.monotonic_ns()
        outs = []
        for k, argv in enumerate(spec.works, start=1):
            fo = open(os.path.join(out, ".work-%d.out" % k), "wb")
            fe = open(os.path.join(out, ".work-%d.err" % k), "wb")
            logs += [fo, fe]
            outs.append((fo.name, fe.name))
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                          preexec_fn=_reset_oom_score, env=spec.work_env))
        ends: list = [None] * len(procs)
        samples = [PSI_HEADER]
        deadline = t0 + spec.timeout
        next_sample = t0
        timed_out = False
        # Sleep until the next PSI sample or a child's exit (SIGCHLD, blocked and
        # waited for), not in a polling loop: on one emulated vCPU a busy runner
        # would take CPU time from the processes it measures.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        sigchld_blocked = True
        while True:
            now = time.monotonic()
            if now >= next_sample:
                text = machine.psi_text()
                if text is not None:
                    samples.append(psi_row(now - t0, parse_psi(text)))
                next_sample += spec.psi_interval
                if next_sample < now:
                    next_sample = now + spec.psi_interval
            for i, p in enumerate(procs):
                if ends[i] is None and p.poll() is not None:
                    ends[i] = time.monotonic()
            if all(e is not None for e in ends):
                break
            if now > deadline:
                timed_out = True
                break
            wait = min(next_sample, deadline + 0.01) - time.monotonic()
            if wait > 0:
                signal.sigtimedwait({signal.SIGCHLD}, wait)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        sigchld_blocked = False
        killed = []
        if timed_out:
            log("timeout after %.0f s: stopping %d work process(es)"
                % (spec.timeout, sum(1 for p in procs if p.poll() is None)))
            killed = [i + 1 for i in _stop(procs, grace=WORK_STOP_GRACE)]
            for i, p in enumerate(procs):
                if ends[i] is None:
                    ends[i] = time.monotonic()
        t_end = max(ends) if ends else time.monotonic()
        text = machine.psi_text()
        if text is not None:
            samples.append(psi_row(time.monotonic() - t0, parse_psi(text)))
        atomic_write(os.path.join(out, "psi-samples.csv"), "\n".join(samples) + "\n")

        # The monitor exits by itself once the last registered process is gone and
        # the ring is drained (--until-idle); it is stopped after a grace period.
        mon_deadline = time.monotonic() + spec.monitor_grace
        while monitor.poll() is None and time.monotonic() < mon_deadline:
            time.sleep(0.05)
        monitor_stopped = False
        if monitor.poll() is None:
            monitor_stopped = True
            monitor.send_signal(signal.SIGINT)
            try:
                monitor.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _stop([monitor], grace=2)
        ended = utc_now()
    finally:
        if sigchld_blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        # Whatever happened (an exception, a signal), leave no process behind.
        alive = [p for p in procs + ([monitor] if monitor else []) if p.poll() is None]
        if alive:
            _stop(alive, grace=2)
        for f in logs:
            try:
                f.close()
            except OSError:
                pass

    info["monitor"] = {"argv": monitor_argv[:-3] + ["-o", "profile.csv", "--until-idle"],
                       "exit_code": exit_code(monitor.returncode), "stopped": monitor_stopped}
    mtail = tail(monitor_log, 800).strip()
    if mtail:
        info["monitor"]["log_tail"] = mtail
    else:
        os.unlink(monitor_log)
    if os.path.exists(profile_tmp):
        os.replace(profile_tmp, os.path.join(out, "profile.csv"))
    else:
        info["monitor"]["no_profile"] = True

    works, missing = [], []
    for k, (o, e) in enumerate(outs, start=1):
        w = parse_work_output(read_text(o, "") or "")
        err = read_text(e, "") or ""
        os.unlink(o)
        if err.strip():
            atomic_write(os.path.join(out, "work-%d.log" % k), err)
        os.unlink(e)
        if w is None:
            missing.append(k)
        else:
            atomic_write(os.path.join(out, "work-%d.json" % k), json.dumps(w) + "\n")
        works.append(w)

    vm_after = machine.vmstat()
    snapshot("after")
    raw_codes = [exit_code(p.returncode) for p in procs]
    # A process the runner had to stop at the timeout did not finish its run, whatever
    # it exited with (work exits 0 after SIGTERM, with "interrupted": true): 124, as
    # timeout(1) says; the real codes are in exit_codes_raw.
    codes = [TIMEOUT_EXIT if (i + 1) in killed else c for i, c in enumerate(raw_codes)]
    info.update({
        "started": started, "ended": ended,
        "wall_s": round(t_end - t0, 3),
        "overlap_s": overlap_s(works),
        "exit_codes": codes, "exit_codes_raw": raw_codes,
        "oom_killed": max(0, vmstat_delta(vm_before, vm_after, "oom_kill") or 0),
        "timed_out": timed_out, "killed": killed, "missing_json": missing,
        "timeout_s": spec.timeout,
        "t0_mono_ns": t0_ns,
        "commands": {"monitor": " ".join(info["monitor"]["argv"]), "work": [" ".join(a) for a in spec.works]},
        "vmstat_delta": {k: vmstat_delta(vm_before, vm_after, k)
                         for k in ("pgmajfault", "pgfault", "pswpin", "pswpout", "oom_kill",
                                   "pgscan_direct", "pgsteal_direct", "allocstall_normal", "allocstall_movable")
                         if k in vm_before and k in vm_after},
    })
    fills = [w.get("fill_s") for w in works if isinstance(w, dict) and isinstance(w.get("fill_s"), (int, float))]
    if fills:
        info["fill_s_max"] = max(fills)
    throughputs = [w.get("accesses_per_s") for w in works if isinstance(w, dict)]
    if throughputs and all(isinstance(t, (int, float)) for t in throughputs) and not missing:
        info["accesses_per_s_sum"] = sum(throughputs)
        # Past the available memory Linux does not slow every process alike: the
        # processes that stay resident run at full speed while the others starve
        # (measured: the sum hardly drops while the slowest process falls 100-1000x).
        # The spread says so; starved = processes under 1% of the fastest one.
        ordered = sorted(throughputs)
        info["accesses_per_s_min"] = ordered[0]
        info["accesses_per_s_median"] = ordered[len(ordered) // 2] if len(ordered) % 2 else \
            (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
        info["accesses_per_s_max"] = ordered[-1]
        info["starved"] = sum(1 for t in ordered if t < 0.01 * ordered[-1])
    majs = [w.get("majflt") for w in works if isinstance(w, dict)]
    if majs and all(isinstance(m, int) for m in majs) and not missing:
        info["majflt_sum"] = sum(majs)
    return info, works


def commit_dir(tmp: str, final: str) -> None:
    """Rename the finished hidden directory into place (replacing an older one)."""
    if os.path.lexists(final):
        remove_tree(final)
    os.rename(tmp, final)
    fsync_dir(os.path.dirname(final))


def fresh_tmp_dir(final: str) -> str:
    parent, base = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, ".%s.partial" % base)
    if os.path.lexists(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def check_every_work_failed(info: dict, works: list, out_hint: str) -> None:
    """A run where no work process produced its JSON, with neither a timeout nor an
    OOM kill to explain it, is a broken setup (bad binary, bad arguments): an error."""
    if works and all(w is None for w in works) and not info["timed_out"] and not info["oom_killed"]:
        raise RunnerError("every work process failed without its JSON line (exit codes %s); "
                          "see the work-K.log files of %s" % (info["exit_codes"], out_hint))


# ---------------------------------------------------------------------------- the steps

class Ctx:
    def __init__(self, args):
        self.args = args
        if not RUN_ID_RE.match(args.run_id or ""):
            raise RunnerError("bad run id %r (letters, digits, '.', '_', '-')" % args.run_id)
        self.run_root = os.path.join(args.results_dir, args.run_id)
        self.machine = Machine(args.proc_root, args.sys_root, args.pfprof_device, args.run_dir)
        self.work_bin = args.work_bin or os.path.join(args.remote_dir, "workloads", "work")
        self.monitor_bin = args.monitor_bin or os.path.join(args.remote_dir, "workloads", "monitor")

    def case_dir(self, case):
        return os.path.join(self.run_root, case)

    def check_tools(self):
        self.machine.check_pfprof()
        for name, path in (("work", self.work_bin), ("monitor", self.monitor_bin)):
            if not os.access(path, os.X_OK):
                raise RunnerError("%s is not an executable at %s: run `ansible-playbook playbooks/setup.yml`, "
                                  "which builds the workloads" % (name, path))

    def programs(self) -> list[str]:
        """The programs a run starts: a settle waits until none of them is left."""
        return [self.work_bin, self.monitor_bin]

    def settle(self):
        return settle(self.machine, self.programs(), timeout=self.args.settle_timeout,
                      window=self.args.swap_window)

    def read_params(self, case):
        path = os.path.join(self.case_dir(case), "params.json")
        text = read_text(path)
        if text is None:
            raise RunnerError("%s is missing: run %s-start first" % (path, case))
        try:
            return json.loads(text)
        except ValueError as e:
            raise RunnerError("%s: corrupt (%s)" % (path, e))

    def write_facts(self, case):
        facts = read_facts(self.machine, self.args)
        atomic_json(os.path.join(self.run_root, "facts.json"), facts)
        atomic_json(os.path.join(self.case_dir(case), "facts.json"), facts)
        return facts

    def start_case_dir(self, case):
        os.makedirs(self.run_root, exist_ok=True)
        d = self.case_dir(case)
        if os.path.lexists(d):
            log("replacing the earlier %s of run %s" % (case, self.args.run_id))
            remove_tree(d)
        os.makedirs(d)


def cmd_facts(ctx: Ctx) -> dict:
    os.makedirs(ctx.run_root, exist_ok=True)
    facts = read_facts(ctx.machine, ctx.args)
    atomic_json(os.path.join(ctx.run_root, "facts.json"), facts)
    return facts


def resolve_case2_work_mb(requested, avail_mb: float, lab_min_memory_mb) -> tuple:
    """``case2_work_mb`` as run: an integer as given, or auto (:func:`plan_case2_work_mb`).
    Returns (work_mb, sizing facts or None, warnings)."""
    if requested != "auto":
        return _positive_int(requested, "case2_work_mb"), None, []
    if lab_min_memory_mb is None:
        raise RunnerError("case2_work_mb is auto but --lab-min-memory-mb is not given")
    sizing = plan_case2_work_mb(avail_mb, lab_min_memory_mb)
    return sizing["work_mb"], sizing, sizing.pop("warnings")


def cmd_plan_case2(args) -> dict:
    work_mb, sizing, warnings = resolve_case2_work_mb(args.work_mb, args.mem_available_mb,
                                                      args.lab_min_memory_mb)
    plan = plan_n_values(args.mem_available_mb, args.swap_mb, work_mb, args.points, args.max_factor,
                         args.swap_fraction)
    plan["work_mb"] = work_mb
    plan["sizing"] = sizing
    plan["warnings"] = warnings + plan["warnings"]
    return plan


def cmd_case2_start(ctx: Ctx) -> dict:
    a = ctx.args
    ctx.check_tools()
    ctx.start_case_dir("case2")
    settle_info = ctx.settle()
    facts = ctx.write_facts("case2")
    avail_mb = facts["mem_available_kb"] / 1024.0
    swap_mb = (facts.get("swap_total_kb") or 0) / 1024.0
    work_mb, sizing, size_warnings = resolve_case2_work_mb(a.work_mb, avail_mb, a.lab_min_memory_mb)
    plan = plan_n_values(avail_mb, swap_mb, work_mb, a.points, a.max_factor, a.swap_fraction)
    plan["warnings"] = size_warnings + plan["warnings"]
    if sizing is not None:
        plan["sizing"] = sizing
    if a.n_values == "auto":
        n_values = plan["n_values"]
    else:
        n_values = parse_n_values(a.n_values)
        limit = avail_mb + 0.95 * swap_mb
        over = [n for n in n_values if n * work_mb > limit]
        if over:
            plan["warnings"].append("N = %s need more than the available memory plus 95%% of swap "
                                    "(%.0f MiB): expect OOM kills" % (over, limit))
    repeats = _positive_int(a.repeats, "case2_repeats")
    seconds = _positive_float(a.seconds, "case2_seconds")
    accesses = _positive_int(a.accesses, "case2_accesses")
    timeout = _positive_float(a.timeout, "case2_timeout")
    if a.mode not in ("R", "L"):
        raise RunnerError("case2_mode must be R or L, not %r" % a.mode)
    fill_data = parse_fill(a.fill, "case2_fill", allow_phase=False)[1]
    points = case2_points(n_values, repeats)
    variables = {"case2_work_mb": work_mb, "case2_n_values": sorted(n_values), "case2_repeats": repeats,
                 "case2_seconds": seconds, "case2_accesses": accesses, "case2_mode": a.mode,
                 "case2_timeout": timeout, "case2_fill": fill_data}
    params = {
        "case": 2, "run_id": a.run_id, "machine": a.machine,
        "work_mb": work_mb, "mode": a.mode, "accesses": accesses, "seconds": seconds, "fill_data": fill_data,
        "n_values": sorted(n_values), "repeats": repeats, "timeout_s": timeout,
        "order": [[p["n"], p["repeat"]] for p in points],
        "mem_available_kb": facts["mem_available_kb"], "swap_total_kb": facts.get("swap_total_kb"),
        "predicted_n": round(avail_mb / work_mb, 3), "plan": plan,
        "requested": {"work_mb": a.work_mb, "n_values": a.n_values, "points": a.points,
                      "max_factor": a.max_factor, "swap_fraction": a.swap_fraction,
                      "lab_min_memory_mb": a.lab_min_memory_mb},
        "variables": variables, "work_bin": ctx.work_bin, "monitor_bin": ctx.monitor_bin,
        "psi_interval_s": a.psi_interval, "started": utc_now(), "settle": settle_info,
        "runner_version": RUNNER_VERSION,
    }
    atomic_json(os.path.join(ctx.case_dir("case2"), "params.json"), params)
    for w in plan["warnings"]:
        log("warning: " + w)
    summary = "case2 on %s: %d MiB per process, N = %s x %d repeat(s), %gs each; predicted knee N = %.1f" % (
        a.machine, work_mb, ",".join(map(str, sorted(n_values))), repeats, seconds, avail_mb / work_mb)
    return {"summary": summary, "work_mb": work_mb, "n_values": sorted(n_values), "repeats": repeats,
            "points": points, "predicted_n": params["predicted_n"], "mem_available_kb": facts["mem_available_kb"],
            "warnings": plan["warnings"], "variables": variables}


def earlier_failure(ctx: Ctx, case: str) -> None:
    """A step of this case failed before: the case cannot complete, so the later
    steps stop at once (one quick error each) instead of running for nothing."""
    text = read_text(os.path.join(ctx.case_dir(case), "FAILED"))
    if text is not None:
        try:
            err = json.loads(text).get("error", text.strip())
        except ValueError:
            err = text.strip()
        raise RunnerError("an earlier step of %s failed (%s); not running this one" % (case, err))


def record_failure(ctx: Ctx, case: str, step: str, error: str) -> None:
    d = ctx.case_dir(case)
    if os.path.isdir(d) and not os.path.exists(os.path.join(d, "FAILED")):
        try:
            atomic_json(os.path.join(d, "FAILED"), {"step": step, "error": error, "at": utc_now()})
        except OSError:
            pass


def finish_run(run: dict, info: dict, works: list, settle_info: dict, tmp: str, final: str) -> None:
    """Both cases end a run alike: run.json (the case's own keys first, then
    what execute_run measured) written last, the directory committed, and a
    run whose every work process failed reported as an error."""
    run.update({k: info[k] for k in ("wall_s", "overlap_s", "started", "ended", "exit_codes", "oom_killed")})
    run.update({k: v for k, v in info.items() if k not in run})
    run["settle"] = settle_info
    run["runner_started"] = RUNNER_STARTED
    run["runner_version"] = RUNNER_VERSION
    atomic_json(os.path.join(tmp, "run.json"), run)
    commit_dir(tmp, final)
    check_every_work_failed(info, works, final)


def cmd_case2_point(ctx: Ctx) -> dict:
    a = ctx.args
    params = ctx.read_params("case2")
    earlier_failure(ctx, "case2")
    n, r = a.n, a.repeat
    if n < 1 or r < 1:
        raise RunnerError("--n and --repeat must be at least 1")
    ctx.check_tools()
    work_mb = params["work_mb"]
    final = os.path.join(ctx.case_dir("case2"), point_dir_name(n, r))
    settle_info = ctx.settle()
    tmp = fresh_tmp_dir(final)
    os.makedirs(ctx.machine.run_dir, exist_ok=True)
    barrier = os.path.join(ctx.machine.run_dir, "barrier-%s-n%02d-r%d" % (a.run_id, n, r))
    if os.path.lexists(barrier):
        os.unlink(barrier)
    work_argv = [ctx.work_bin, str(work_mb), params["mode"], str(params["accesses"]),
                 "--seconds", _fmt_num(params["seconds"]), "--barrier", barrier, str(n),
                 *work_fill_args(True, params.get("fill_data"))]
    spec = RunSpec([list(work_argv) for _ in range(n)], timeout=float(params["timeout_s"]),
                   psi_interval=float(params.get("psi_interval_s", a.psi_interval)),
                   monitor_argv_head=[ctx.monitor_bin], monitor_grace=a.monitor_grace)
    try:
        info, works = execute_run(ctx.machine, spec, tmp)
    finally:
        try:
            os.unlink(barrier)
        except OSError:
            pass
    finish_run({"case": 2, "n": n, "repeat": r, "work_mb": work_mb, "mode": params["mode"],
                "accesses": params["accesses"], "seconds": params["seconds"]},
               info, works, settle_info, tmp, final)
    thr = info.get("accesses_per_s_sum")
    maj = info.get("majflt_sum")
    notes = []
    if info["timed_out"]:
        notes.append("TIMEOUT (killed %s)" % info["killed"])
    if info["oom_killed"]:
        notes.append("OOM kills %d" % info["oom_killed"])
    if info["missing_json"]:
        notes.append("no JSON from work %s" % info["missing_json"])
    if info.get("starved"):
        notes.append("%d of %d starved (slowest %s/s)" % (info["starved"], n, _human(info["accesses_per_s_min"])))
    summary = "N=%d r=%d: %s accesses/s, %s major faults, wall %.1fs, overlap %s%s" % (
        n, r, _human(thr), _human(maj), info["wall_s"],
        ("%.1fs" % info["overlap_s"]) if info["overlap_s"] is not None else "n/a",
        (", " + ", ".join(notes)) if notes else "")
    return {"summary": summary, "n": n, "repeat": r, "dir": final, "wall_s": info["wall_s"],
            "overlap_s": info["overlap_s"], "accesses_per_s": thr, "majflt": maj,
            "oom_killed": info["oom_killed"], "timed_out": info["timed_out"], "exit_codes": info["exit_codes"]}


def _parse_pair_option(values: list[str]) -> dict:
    pairs = {}
    for v in values or []:
        name, sep, specs = v.partition("=")
        name = name.strip()
        if not sep or not PAIR_RE.match(name):
            raise RunnerError("--pair %r: expected NAME=SPEC,SPEC (NAME letters/digits, e.g. A)" % v)
        if name in pairs:
            raise RunnerError("--pair %s given twice" % name)
        pairs[name] = [s.strip() for s in specs.split(",") if s.strip()]
        if not pairs[name]:
            raise RunnerError("--pair %s: no work spec" % name)
    if not pairs:
        raise RunnerError("case1-start needs at least one --pair NAME=SPEC,SPEC")
    return pairs


def cmd_case1_start(ctx: Ctx) -> dict:
    a = ctx.args
    ctx.check_tools()
    raw_pairs = _parse_pair_option(a.pair)
    ctx.start_case_dir("case1")
    settle_info = ctx.settle()
    facts = ctx.write_facts("case1")
    avail_mb = facts["mem_available_kb"] / 1024.0
    work_mb = plan_case1_mb(avail_mb) if a.work_mb == "auto" else _positive_int(a.work_mb, "case1_work_mb")
    fill, fill_data = parse_fill(a.fill, "case1_fill", allow_phase=True)
    iterations = _positive_int(a.iterations, "case1_iterations") if a.iterations not in (None, "", "default") else None
    pairs = {}
    warnings = []
    for name, specs in raw_pairs.items():
        named = {"many": lambda mb: case1_accesses(a.accesses_many, "many", mb),
                 "few": lambda mb: case1_accesses(a.accesses_few, "few", mb)}
        procs = [parse_work_spec(s, work_mb, iterations, named) for s in specs]
        total = sum(p["mb"] for p in procs)
        if total > 0.9 * avail_mb:
            warnings.append("pair %s needs %d MiB of %.0f MiB available: it will not fit in memory "
                            "(major faults expected)" % (name, total, avail_mb))
        pairs["pair-%s" % name] = procs
    timeout = _positive_float(a.timeout, "case1_timeout")
    extra = a.work_arg or []
    params = {
        "case": 1, "run_id": a.run_id, "machine": a.machine, "work_mb": work_mb,
        "pairs": {name: ["%s %d %d" % (p["mode"], p["mb"], p["accesses_per_iteration"]) for p in procs]
                  for name, procs in pairs.items()},
        "processes": pairs, "iterations": iterations, "fill": fill, "fill_data": fill_data,
        "extra_work_args": extra,
        "timeout_s": timeout,
        "mem_available_kb": facts["mem_available_kb"],
        "variables": {"case1_work_mb": work_mb, "case1_iterations": iterations, "case1_timeout": timeout,
                      "case1_accesses_many": case1_accesses(a.accesses_many, "many", work_mb),
                      "case1_accesses_few": case1_accesses(a.accesses_few, "few", work_mb),
                      "case1_fill": fill_data if fill else False,
                      "case1_pairs": {name: specs for name, specs in raw_pairs.items()},
                      "case1_extra_work_args": extra},
        "work_bin": ctx.work_bin, "monitor_bin": ctx.monitor_bin, "psi_interval_s": a.psi_interval,
        "started": utc_now(), "settle": settle_info, "warnings": warnings, "runner_version": RUNNER_VERSION,
    }
    atomic_json(os.path.join(ctx.case_dir("case1"), "params.json"), params)
    for w in warnings:
        log("warning: " + w)
    summary = "case1 on %s: %s" % (a.machine, "; ".join(
        "%s = %s" % (name, " + ".join("%d %s %d" % (p["mb"], p["mode"], p["accesses_per_iteration"]) for p in procs))
        for name, procs in pairs.items()))
    return {"summary": summary, "work_mb": work_mb, "pairs": sorted(n[len("pair-"):] for n in pairs),
            "warnings": warnings, "mem_available_kb": facts["mem_available_kb"], "variables": params["variables"]}


def cmd_case1_pair(ctx: Ctx) -> dict:
    a = ctx.args
    params = ctx.read_params("case1")
    earlier_failure(ctx, "case1")
    name = "pair-%s" % a.pair_name
    procs = params["processes"].get(name)
    if procs is None:
        raise RunnerError("no %s in %s/params.json (pairs: %s)"
                          % (name, ctx.case_dir("case1"), ", ".join(sorted(params["processes"]))))
    ctx.check_tools()
    final = os.path.join(ctx.case_dir("case1"), name)
    settle_info = ctx.settle()
    tmp = fresh_tmp_dir(final)
    works = []
    for p in procs:
        argv = [ctx.work_bin, str(p["mb"]), p["mode"], str(p["accesses_per_iteration"])]
        if p.get("iterations"):
            argv.append(str(p["iterations"]))
        argv += work_fill_args(params.get("fill", False), params.get("fill_data"))
        works.append(argv + list(params.get("extra_work_args") or []))
    spec = RunSpec(works, timeout=float(params["timeout_s"]),
                   psi_interval=float(params.get("psi_interval_s", a.psi_interval)),
                   monitor_argv_head=[ctx.monitor_bin], monitor_grace=a.monitor_grace)
    info, wjson = execute_run(ctx.machine, spec, tmp)
    finish_run({"case": 1, "pair": name, "processes": procs}, info, wjson, settle_info, tmp, final)
    minf = [w.get("minflt") for w in wjson if isinstance(w, dict)]
    majf = [w.get("majflt") for w in wjson if isinstance(w, dict)]
    notes = []
    if info["timed_out"]:
        notes.append("TIMEOUT (killed %s)" % info["killed"])
    if info["oom_killed"]:
        notes.append("OOM kills %d" % info["oom_killed"])
    summary = "%s: minor faults %s, major faults %s, wall %.1fs%s" % (
        name, "+".join(_human(m) for m in minf) or "n/a", "+".join(_human(m) for m in majf) or "n/a",
        info["wall_s"], (", " + ", ".join(notes)) if notes else "")
    return {"summary": summary, "pair": name, "dir": final, "wall_s": info["wall_s"], "minflt": minf,
            "majflt": majf, "oom_killed": info["oom_killed"], "timed_out": info["timed_out"],
            "exit_codes": info["exit_codes"]}


def cmd_case_finish(ctx: Ctx) -> dict:
    case = ctx.args.case
    params = ctx.read_params(case)
    earlier_failure(ctx, case)
    d = ctx.case_dir(case)
    if case == "case2":
        expected = [point_dir_name(n, r) for n, r in params["order"]]
    elif case == "bench":
        expected = ["idle"] + ["overhead/r-%02d" % r for r in range(1, params["rounds"] + 1)]
    else:
        expected = sorted(params["processes"])
    # a run's record: run.json (a bench round: r-NN.json beside its directory)
    missing = [e for e in expected
               if not os.path.isfile(os.path.join(d, e + ".json") if e.startswith("overhead/")
                                     else os.path.join(d, e, "run.json"))]
    if missing:
        raise RunnerError("%s is incomplete: no %s" % (d, ", ".join(missing)))
    params["ended"] = utc_now()
    atomic_json(os.path.join(d, "params.json"), params)
    done = {"case": case, "run_id": ctx.args.run_id, "completed": params["ended"], "runs": expected,
            "runner_version": RUNNER_VERSION}
    atomic_json(os.path.join(d, "DONE"), done)
    fsync_dir(d)
    return {"summary": "%s complete: %d run(s) in %s" % (case, len(expected), d), "case": case,
            "runs": len(expected), "dir": d}


# ---------------------------------------------------------------------------- benchmarks
#
# What does profiling cost, and how faithful are pfprof's ticks? One fixed,
# in-memory work load (N processes of a few MiB, the same seeds every time)
# runs under four conditions, interleaved in a shuffled order in every round:
#   none    work --no-register, nothing watching
#   pfprof  work registered, monitor streaming the ring to a file
#   perf    perf stat -I <interval> -e minor-faults,major-faults -p <pids>
#   poller  procpoll -i <interval> <pids> (/proc/<pid>/stat at the same rate)
# Each profiler is attached while the processes wait at their barrier, and the
# runner releases them once it is watching: wall_s covers only the timed phases
# (max end - min start), all of them under observation. Idle fidelity: one
# registered sleeping process, the monitor streaming, for --idle-seconds.

BENCH_CONDITIONS = ("none", "pfprof", "perf", "poller")
PERF_EVENTS = "minor-faults,major-faults"


def parse_stats(text: str) -> dict:
    """/proc/pfprof/stats: "key value" lines, as /proc/vmstat's."""
    return parse_vmstat(text)


def parse_int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise RunnerError("%s: %r is not a comma-separated list of integers" % (name, text))
    if not values or any(v < 1 for v in values):
        raise RunnerError("%s: %r needs positive integers" % (name, text))
    return sorted(set(values))


def bench_order(processes: list[int], rounds: int, seed: int) -> list[list[list]]:
    """Per round, every (N, condition) cell once, in a shuffled order: drifts of
    the machine (caches, the host's load) spread over all conditions alike."""
    import random
    plan = []
    for r in range(1, rounds + 1):
        cells = [[n, c] for n in processes for c in BENCH_CONDITIONS]
        random.Random(seed * 1000 + r).shuffle(cells)
        plan.append(cells)
    return plan


def perf_version(perf: str) -> str | None:
    try:
        out = subprocess.run([perf, "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def wait_for(predicate, timeout: float, what: str, proc=None, interval: float = 0.01) -> None:
    """Poll until predicate() is true; a RunnerError after ``timeout`` or when
    ``proc`` (the process that should make it true) has exited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise RunnerError("%s: the process exited with status %s first" % (what, exit_code(proc.returncode)))
        if time.monotonic() > deadline:
            raise RunnerError("%s: not after %.0f s" % (what, timeout))
        time.sleep(interval)


def barrier_count(path: str) -> int:
    try:
        with open(path, "rb") as f:
            data = f.read(4)
    except OSError:
        return 0
    return int.from_bytes(data, "little") if len(data) == 4 else 0


# futex(2)'s number where the runner knows it (the workloads' waits time out
# after 100 ms anyway, so another architecture only starts a little later).
FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98, "riscv64": 98, "i686": 240}
FUTEX_WAKE = 1


def release_barrier(path: str, value: int) -> None:
    """Raise the barrier's counter to ``value`` and wake its waiters: every work
    process has arrived and sleeps on a futex at the counter (work.c)."""
    import ctypes
    import mmap
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 64)
    finally:
        os.close(fd)
    try:
        m[0:4] = value.to_bytes(4, "little")
        nr = FUTEX_SYSCALL.get(platform.machine())
        if nr is not None:
            word = ctypes.c_uint32.from_buffer(m)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall(ctypes.c_long(nr), ctypes.byref(word), ctypes.c_int(FUTEX_WAKE),
                         ctypes.c_int(2 ** 31 - 1), None, None, ctypes.c_int(0))
            del word  # no exported pointer may be left when the mapping closes
    finally:
        m.close()


def has_data_line(path: str) -> bool:
    """True once ``path`` holds a line that starts with a digit (after blanks):
    perf's first interval line, procpoll's first row after its header."""
    text = read_text(path, "") or ""
    return any(line.strip()[:1].isdigit() for line in text.splitlines())


def wait_reaping(proc, timeout: float) -> float | None:
    """Wait for ``proc`` and return its user+system CPU seconds (from wait4),
    or None if it had to be killed after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.02)
    _stop([proc], grace=2)
    return None


def runtime_ns(pid: int) -> int | None:
    """CPU time of every thread of ``pid`` so far, in ns (the scheduler's own
    sum, /proc/PID/task/*/schedstat: finer than utime/stime's clock ticks)."""
    total, found = 0, False
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        text = read_text("/proc/%d/task/%s/schedstat" % (pid, tid))
        if text and text.split()[0].isdigit():
            total += int(text.split()[0])
            found = True
    return total if found else None


def perf_totals(path: str) -> dict:
    """Sums of perf stat -x, interval lines: {"minor-faults": n, "major-faults": n}."""
    totals: dict = {}
    for line in (read_text(path, "") or "").splitlines():
        f = line.strip().split(",")
        if len(f) >= 4 and f[0][:1].isdigit() and f[1].isdigit():
            totals[f[3]] = totals.get(f[3], 0) + int(f[1])
    return totals


def csv_rows(path: str) -> list[dict]:
    lines = (read_text(path, "") or "").splitlines()
    if not lines:
        return []
    head = lines[0].split(",")
    return [dict(zip(head, line.split(","))) for line in lines[1:] if line.count(",") == len(head) - 1]


def poller_totals(path: str) -> tuple[int, int, int]:
    """(samples, minflt, majflt) of a procpoll CSV: totals of each pid's last row."""
    last, stamps = {}, set()
    for row in csv_rows(path):
        last[row["pid"]] = row
        stamps.add(row["ts_ns"])
    return (len(stamps), sum(int(r["minflt"]) for r in last.values()),
            sum(int(r["majflt"]) for r in last.values()))


def profile_totals(path: str, pids: set) -> tuple[int, int, int]:
    """(ticks, minflt, majflt) of a monitor CSV, for the given pids."""
    ticks, minflt, majflt = set(), 0, 0
    for row in csv_rows(path):
        if row["pid"] in pids:
            minflt += int(row["minflt"])
            majflt += int(row["majflt"])
            if not int(row["flags"]) & 4:
                ticks.add(row["ts_ns"])
    return len(ticks), minflt, majflt


class BenchCtx(Ctx):
    def __init__(self, args):
        super().__init__(args)
        self.procpoll_bin = args.procpoll_bin or os.path.join(args.remote_dir, "workloads", "procpoll")

    def check_bench_tools(self, perf: str):
        self.check_tools()
        if not os.access(self.procpoll_bin, os.X_OK):
            raise RunnerError("procpoll is not an executable at %s: run `ansible-playbook playbooks/setup.yml`, "
                              "which builds the workloads" % self.procpoll_bin)
        if perf_version(perf) is None:
            raise RunnerError("`%s version` does not run: install perf (Debian: linux-perf; the bench "
                              "playbook installs it when missing)" % perf)

    def stats(self) -> dict:
        return parse_stats(self.machine.read("pfprof", "stats"))

    def programs(self) -> list[str]:
        return super().programs() + [self.procpoll_bin]


def start_monitor(ctx: BenchCtx, out: str) -> tuple:
    mlog = open(os.path.join(out, "monitor.log"), "wb")
    mon = subprocess.Popen([ctx.monitor_bin, "-o", os.path.join(out, "profile.csv"), "--until-idle"],
                           stdin=subprocess.DEVNULL, stdout=mlog, stderr=subprocess.STDOUT)
    # Records written before the monitor has the ring open could be missed.
    wait_for(lambda: has_open(mon.pid, ctx.machine.device), 10, "the monitor opening %s" % ctx.machine.device, mon)
    return mon, mlog


def finish_monitor(mon, mlog, out: str, grace: float) -> dict:
    """The monitor exits by itself once the registered processes are gone and the
    ring is drained (--until-idle); its CPU time and last words are returned."""
    cpu = wait_reaping(mon, grace)
    mlog.close()
    log_tail = tail(os.path.join(out, "monitor.log"), 400).strip()
    return {"exit_code": exit_code(mon.returncode), "cpu_s": cpu, "log_tail": log_tail,
            "stopped": cpu is None}


def cmd_bench_start(ctx: BenchCtx) -> dict:
    a = ctx.args
    ctx.check_bench_tools(a.perf)
    ctx.start_case_dir("bench")
    settle_info = ctx.settle()
    facts = ctx.write_facts("bench")
    stats = ctx.stats()
    processes = parse_int_list(a.processes, "bench_processes")
    rounds = _positive_int(a.rounds, "bench_rounds")
    work_mb = _positive_int(a.work_mb, "bench_work_mb")
    total = _positive_int(a.accesses_total, "bench_accesses_total")
    per_iteration = _positive_int(a.accesses_per_iteration, "bench_accesses_per_iteration")
    idle_seconds = _positive_float(a.idle_seconds, "bench_idle_seconds")
    need_mb = max(processes) * work_mb
    avail_mb = facts["mem_available_kb"] / 1024.0
    if need_mb > 0.6 * avail_mb:
        raise RunnerError("bench: %d processes x %d MiB = %d MiB is more than 60%% of the %.0f MiB available: "
                          "the overhead runs must not page (lower bench_work_mb)" % (max(processes), work_mb,
                                                                                      need_mb, avail_mb))
    params = {
        "case": "bench", "run_id": a.run_id, "machine": a.machine, "rounds": rounds, "processes": processes,
        "conditions": list(BENCH_CONDITIONS),
        "work": {"mb": work_mb, "mode": "R", "accesses_total": total, "accesses_per_iteration": per_iteration,
                 "iterations": {str(n): max(1, total // (n * per_iteration)) for n in processes}},
        "interval_ms": stats.get("interval_ms"), "hz": stats.get("hz"), "idle_seconds": idle_seconds,
        "perf": a.perf, "perf_version": perf_version(a.perf), "perf_events": PERF_EVENTS,
        "seed": a.seed, "order": bench_order(processes, rounds, a.seed),
        "work_bin": ctx.work_bin, "monitor_bin": ctx.monitor_bin, "procpoll_bin": ctx.procpoll_bin,
        "started": utc_now(), "settle": settle_info, "runner_version": RUNNER_VERSION,
    }
    atomic_json(os.path.join(ctx.case_dir("bench"), "params.json"), params)
    summary = "bench on %s: %d round(s) of N = %s x %s, %d MiB per process, %s accesses per cell; idle %gs" % (
        a.machine, rounds, ",".join(map(str, processes)), "/".join(BENCH_CONDITIONS), work_mb, _human(total),
        idle_seconds)
    return {"summary": summary, "rounds": list(range(1, rounds + 1)), "accelerator": facts.get("accelerator"),
            "perf_version": params["perf_version"]}


def cmd_bench_idle(ctx: BenchCtx) -> dict:
    """One registered process that sleeps: the ticks of an idle machine."""
    params = ctx.read_params("bench")
    earlier_failure(ctx, "bench")
    ctx.check_tools()
    settle_info = ctx.settle()
    final = os.path.join(ctx.case_dir("bench"), "idle")
    tmp = fresh_tmp_dir(final)
    seconds = float(params["idle_seconds"])
    before = ctx.stats()
    started = utc_now()
    mon, mlog = start_monitor(ctx, tmp)
    sleeper = subprocess.Popen(["sleep", str(int(seconds) + 60)], stdin=subprocess.DEVNULL)
    try:
        with open(ctx.machine.pfprof_status_path(), "w") as f:
            f.write("R %d\n" % sleeper.pid)
        time.sleep(seconds)
    finally:
        _stop([sleeper], grace=2)
    monitor = finish_monitor(mon, mlog, tmp, ctx.args.monitor_grace)
    after = ctx.stats()
    ticks, _, _ = profile_totals(os.path.join(tmp, "profile.csv"), {str(sleeper.pid)})
    run = {"seconds": seconds, "started": started, "ended": utc_now(), "pid": sleeper.pid, "monitor": monitor,
           "pfprof_stats_before": before, "pfprof_stats_after": after, "settle": settle_info,
           "runner_started": RUNNER_STARTED, "runner_version": RUNNER_VERSION}
    atomic_json(os.path.join(tmp, "run.json"), run)
    commit_dir(tmp, final)
    dropped = after.get("records_dropped", 0) - before.get("records_dropped", 0)
    return {"summary": "idle: %d ticks in %gs, %d records dropped" % (ticks, seconds, dropped),
            "ticks": ticks, "dropped": dropped}


def run_bench_cell(ctx: BenchCtx, params: dict, n: int, condition: str, out: str, position: int) -> dict:
    """One cell: N work processes under one condition. Returns its summary."""
    w = params["work"]
    iterations = w["iterations"][str(n)]
    interval = int(params["interval_ms"])
    os.makedirs(ctx.machine.run_dir, exist_ok=True)
    barrier = os.path.join(ctx.machine.run_dir, "bench-barrier-%s" % ctx.args.run_id)
    if os.path.lexists(barrier):
        os.unlink(barrier)
    cell = {"n": n, "condition": condition, "position": position, "ok": False, "profiler": None}
    phases, t_phase = {}, [time.monotonic()]

    def phase(name):  # where a cell's time goes, beside the measured work
        now = time.monotonic()
        phases[name] = round(now - t_phase[0], 3)
        t_phase[0] = now
    works, outs, files = [], [], []
    monitor = mlog = profiler = None
    try:
        if condition == "pfprof":
            monitor, mlog = start_monitor(ctx, out)
        for k in range(1, n + 1):
            argv = [ctx.work_bin, "--sleep-ms", "0", "--seed", str(params["seed"] * 100 + k),
                    "--barrier", barrier, str(n + 1)]
            if condition != "pfprof":
                argv.append("--no-register")
            argv += [str(w["mb"]), w["mode"], str(w["accesses_per_iteration"]), str(iterations)]
            fo = open(os.path.join(out, ".work-%d.out" % k), "wb")
            files.append(fo)
            outs.append(fo.name)
            works.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo,
                                          stderr=subprocess.STDOUT, preexec_fn=_reset_oom_score))
        # Everyone filled its memory and waits: attach the profiler now.
        wait_for(lambda: barrier_count(barrier) >= n, 120, "%d work processes reaching the barrier" % n)
        phase("start_s")
        pids = [str(p.pid) for p in works]
        if condition == "perf":
            argv = [params["perf"], "stat", "-I", str(interval), "-x", ",", "-e", PERF_EVENTS,
                    "-p", ",".join(pids), "-o", os.path.join(out, "perf.csv")]
            profiler = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(out, "perf.log"), "wb"))
            wait_for(lambda: has_data_line(os.path.join(out, "perf.csv")), 60, "perf's first interval", profiler)
        elif condition == "poller":
            argv = [ctx.procpoll_bin, "-i", str(interval), "-o", os.path.join(out, "poll.csv")] + pids
            profiler = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(out, "procpoll.log"), "wb"))
            wait_for(lambda: has_data_line(os.path.join(out, "poll.csv")), 60, "procpoll's first sample", profiler)
        before = ctx.stats() if condition == "pfprof" else None
        watcher = profiler or monitor
        # The profiler's CPU while the work runs (its start-up, before, is not
        # on the clock of the measured wall time).
        cpu_at_release = runtime_ns(watcher.pid) if watcher is not None else None
        phase("attach_s")
        release_barrier(barrier, n + 1)
        for p in works:
            p.wait()
        cpu_at_end = runtime_ns(watcher.pid) if watcher is not None else None
        after = ctx.stats() if condition == "pfprof" else None
        phase("run_s")

        def cpu_during(total_s):
            # perf and procpoll may have exited already: then their total from wait4
            end = cpu_at_end if cpu_at_end is not None else (total_s * 1e9 if total_s is not None else None)
            return round((end - cpu_at_release) / 1e9, 6) if end is not None and cpu_at_release is not None \
                else None
        if profiler is not None:
            # perf stat -p and procpoll end once their processes are gone.
            cpu = wait_reaping(profiler, 30)
            cell["profiler"] = {"argv": " ".join(argv), "cpu_s": cpu, "cpu_during_s": cpu_during(cpu),
                                "exit_code": exit_code(profiler.returncode)}
        if monitor is not None:
            m = finish_monitor(monitor, mlog, out, ctx.args.monitor_grace)
            cell["profiler"] = {"argv": "%s -o profile.csv --until-idle" % ctx.monitor_bin, "cpu_s": m["cpu_s"],
                                "cpu_during_s": cpu_during(m["cpu_s"]), "exit_code": m["exit_code"],
                                "log_tail": m["log_tail"]}
            monitor = None
    finally:
        alive = [p for p in works + [x for x in (profiler, monitor) if x is not None] if p.poll() is None]
        if alive:
            _stop(alive, grace=2)
        for f in files:
            f.close()
        if mlog is not None:
            mlog.close()
        try:
            os.unlink(barrier)
        except OSError:
            pass
    results = []
    for k, path in enumerate(outs, start=1):
        text = read_text(path, "") or ""
        os.unlink(path)
        parsed = parse_work_output(text)
        if parsed is None:
            atomic_write(os.path.join(out, "work-%d.log" % k), text)
        results.append(parsed)
    phase("finish_s")
    cell["phases"] = phases
    cell["exit_codes"] = [exit_code(p.returncode) for p in works]
    if any(r is None for r in results) or any(c != 0 for c in cell["exit_codes"]):
        cell["error"] = "work processes failed (exit codes %s; see work-K.log)" % cell["exit_codes"]
        return cell
    atomic_write(os.path.join(out, "works.json"), json.dumps(results) + "\n")
    cell["wall_s"] = round((max(r["end_mono_ns"] for r in results) - min(r["start_mono_ns"] for r in results)) / 1e9,
                           6)
    cell["accesses"] = sum(r["accesses"] for r in results)
    cell["work_minflt"] = sum(r["minflt"] for r in results)
    cell["work_majflt"] = sum(r["majflt"] for r in results)
    cell["work_cpu_s"] = round(sum(r["utime_s"] + r["stime_s"] for r in results), 6)
    prof = cell["profiler"]
    if condition == "perf":
        t = perf_totals(os.path.join(out, "perf.csv"))
        prof.update({"samples": sum(1 for line in (read_text(os.path.join(out, "perf.csv"), "") or "").splitlines()
                                    if line.strip()[:1].isdigit() and "minor-faults" in line),
                     "minflt": t.get("minor-faults"), "majflt": t.get("major-faults")})
    elif condition == "poller":
        samples, minflt, majflt = poller_totals(os.path.join(out, "poll.csv"))
        prof.update({"samples": samples, "minflt": minflt, "majflt": majflt})
    elif condition == "pfprof":
        ticks, minflt, majflt = profile_totals(os.path.join(out, "profile.csv"), set(pids))
        prof.update({"samples": ticks, "minflt": minflt, "majflt": majflt})
        cell["pfprof"] = {k: after.get(k, 0) - before.get(k, 0)
                          for k in ("ticks", "work_ns_sum", "records_dropped", "ticks_merged", "ticks_resync")}
    cell["ok"] = True
    return cell


def cmd_bench_round(ctx: BenchCtx) -> dict:
    params = ctx.read_params("bench")
    earlier_failure(ctx, "bench")
    ctx.check_tools()
    r = ctx.args.round
    if not 1 <= r <= params["rounds"]:
        raise RunnerError("--round %d: the plan has rounds 1-%d" % (r, params["rounds"]))
    settle_info = ctx.settle()
    final = os.path.join(ctx.case_dir("bench"), "overhead", "r-%02d" % r)
    tmp = fresh_tmp_dir(final)
    started = utc_now()
    cells = []
    for position, (n, condition) in enumerate(params["order"][r - 1], start=1):
        cdir = os.path.join(tmp, "n-%02d-%s" % (n, condition))
        os.makedirs(cdir)
        # Only the processes of the cell before: no cache drop or swap wait
        # inside a round (nothing pages here).
        wait_for(lambda: not processes_of(ctx.programs()), 30,
                 "the previous cell's processes exiting")
        cell = run_bench_cell(ctx, params, n, condition, cdir, position)
        log("round %d %d/%d: N=%d %s %s" % (r, position, len(params["order"][r - 1]), n, condition,
                                             ("%.3fs" % cell["wall_s"]) if cell["ok"] else cell.get("error")))
        cells.append(cell)
    doc = {"round": r, "started": started, "ended": utc_now(), "settle": settle_info, "cells": cells,
           "runner_started": RUNNER_STARTED, "runner_version": RUNNER_VERSION}
    atomic_json(os.path.join(tmp, "round.json"), doc)
    commit_dir(tmp, final)
    atomic_json(final + ".json", doc)
    failed = [c for c in cells if not c["ok"]]
    if len(failed) == len(cells):
        raise RunnerError("every cell of round %d failed: %s" % (r, failed[0].get("error")))
    walls = {(c["n"], c["condition"]): c.get("wall_s") for c in cells}
    parts = []
    for n in params["processes"]:
        base = walls.get((n, "none"))
        ratios = ["%s %s" % (c, ("%.3f" % (walls[(n, c)] / base)) if base and walls.get((n, c)) else "n/a")
                  for c in BENCH_CONDITIONS[1:]]
        parts.append("N=%d: %s" % (n, ", ".join(ratios)))
    return {"summary": "round %d: %s%s" % (r, "; ".join(parts),
                                           (" (%d cell(s) failed)" % len(failed)) if failed else ""),
            "round": r, "failed": len(failed)}


# ---------------------------------------------------------------------------- CLI

FILL_DATA = ("random", "zero", "text")


def parse_fill(value, name: str, allow_phase: bool) -> tuple:
    """A fill variable as (fill phase?, data): random, zero or text (what
    work's fill writes: what a compressing swap sees); with allow_phase also
    true/false (case1_fill: first-touch the region or not; true means random).
    """
    v = str(value).strip().lower()
    if v in FILL_DATA:
        return True, v
    if allow_phase and v in ("true", "yes", "on", "1"):
        return True, "random"
    if allow_phase and v in ("false", "no", "off", "0", "none", ""):
        return False, None
    raise RunnerError("%s must be %s, not %r" % (
        name, ("false, true, " if allow_phase else "") + ", ".join(FILL_DATA[:-1]) + " or " + FILL_DATA[-1], value))


def work_fill_args(fill: bool, fill_data) -> list:
    """work's options for a fill phase writing ``fill_data`` (default random), or none."""
    return ["--fill", fill_data or "random"] if fill else ["--no-fill"]


def _positive_int(v, name) -> int:
    try:
        i = int(str(v))
    except ValueError:
        raise RunnerError("%s: %r is not an integer" % (name, v))
    if i < 1:
        raise RunnerError("%s: %r must be at least 1" % (name, v))
    return i


def _positive_float(v, name) -> float:
    try:
        f = float(str(v))
    except ValueError:
        raise RunnerError("%s: %r is not a number" % (name, v))
    if not f > 0 or math.isinf(f):
        raise RunnerError("%s: %r must be positive" % (name, v))
    return f


def _fmt_num(x) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _human(x) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return "%.1f%s" % (x / div, unit)
    return "%d" % x if x.is_integer() else "%.1f" % x


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="thrashlab_runner.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common_machine(p):
        p.add_argument("--machine", required=True, help="the machine's name in the lab")
        p.add_argument("--memory-mb", type=int, help="the machine's RAM in the lab file")
        p.add_argument("--swap-mb", type=int, help="the machine's swap in the lab file")
        p.add_argument("--cpus", type=int)
        p.add_argument("--accelerator", default="unknown", help="kvm, tcg, ... (from the testbed)")
        p.add_argument("--backend", help="localvm, vagrant, static")

    def common(p, machine=False):
        p.add_argument("--run-id", required=True)
        p.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR)
        p.add_argument("--remote-dir", default=DEFAULT_REMOTE_DIR,
                       help="where setup built the workloads (<dir>/workloads/{work,monitor})")
        p.add_argument("--work-bin")
        p.add_argument("--monitor-bin")
        p.add_argument("--settle-timeout", type=float, default=30.0,
                       help="bound of the wait between runs (s)")
        p.add_argument("--psi-interval", type=float, default=0.5, help="PSI sampling period (s)")
        p.add_argument("--monitor-grace", type=float, default=15.0,
                       help="how long the monitor may take to drain and exit after the last work (s)")
        p.add_argument("--swap-window", type=float, default=0.25,
                       help="swap is quiet when it moved at most 64 pages a second over this window (s)")
        # For tests on a host: where the kernel's files are.
        p.add_argument("--proc-root", default="/proc", help=argparse.SUPPRESS)
        p.add_argument("--sys-root", default="/sys", help=argparse.SUPPRESS)
        p.add_argument("--pfprof-device", default="/dev/pfprof", help=argparse.SUPPRESS)
        p.add_argument("--run-dir", default="/run/thrashlab", help=argparse.SUPPRESS)
        if machine:
            common_machine(p)

    p = sub.add_parser("facts", help="write facts.json of the run and print it")
    common(p, machine=True)

    def plan_opts(p):
        p.add_argument("--work-mb", default="auto", help="MiB per process, or auto")
        p.add_argument("--lab-min-memory-mb", type=int, help="RAM of the lab's smallest machine (for auto)")
        p.add_argument("--points", type=int, default=6, help="number of N values when auto")
        p.add_argument("--max-factor", type=float, default=1.5, help="largest N / predicted N, when auto")
        p.add_argument("--swap-fraction", type=float, default=0.8,
                       help="share of swap the largest N may use, when auto")

    p = sub.add_parser("plan-case2", help="print the automatic Case Study 2 plan (writes nothing)")
    plan_opts(p)
    p.add_argument("--mem-available-mb", type=float, required=True)
    p.add_argument("--swap-mb", type=float, required=True)

    p = sub.add_parser("case2-start", help="settle, facts, plan; write case2/params.json")
    common(p, machine=True)
    plan_opts(p)
    p.add_argument("--n-values", default="auto", help="comma-separated N values, or auto")
    p.add_argument("--repeats", default="1")
    p.add_argument("--seconds", default="8")
    p.add_argument("--accesses", default="10000")
    p.add_argument("--mode", default="R")
    p.add_argument("--fill", default="random", help="what the fill writes: random, zero or text")
    p.add_argument("--timeout", default="120", help="bound of one run (s)")

    p = sub.add_parser("case2-point", help="one run of N processes (parameters from case2/params.json)")
    common(p)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--repeat", type=int, required=True)

    p = sub.add_parser("case1-start", help="settle, facts, sizes; write case1/params.json")
    common(p, machine=True)
    p.add_argument("--work-mb", default="auto", help="MiB per process for specs of size 'auto'")
    p.add_argument("--pair", action="append", metavar="NAME=SPEC,SPEC",
                   help="a pair: NAME=MB MODE ACCESSES[ ITERATIONS],... (MB may be auto)")
    p.add_argument("--iterations", help="iterations of each work (default: work's own)")
    p.add_argument("--accesses-many", default="auto",
                   help="accesses per iteration for specs saying 'many' (auto: 50000 x MB / 1024)")
    p.add_argument("--accesses-few", default="auto",
                   help="accesses per iteration for specs saying 'few' (auto: 10000 x MB / 1024)")
    p.add_argument("--fill", default="false",
                   help="false (the course's behaviour: first touches show in the profile), or let work "
                        "first-touch its region before the iterations with random (also: true), zero or text data")
    p.add_argument("--work-arg", action="append", help="extra argument for every work process")
    p.add_argument("--timeout", default="180", help="bound of one pair (s)")

    p = sub.add_parser("case1-pair", help="run one pair (parameters from case1/params.json)")
    common(p)
    p.add_argument("--pair", dest="pair_name", required=True)

    p = sub.add_parser("case-finish", help="check the case is complete and write its DONE marker")
    common(p)
    p.add_argument("--case", choices=("case1", "case2", "bench"), required=True)

    def bench_common(p):
        common(p)
        p.add_argument("--procpoll-bin")
        p.add_argument("--perf", default="perf", help="the perf program (default: perf from PATH)")

    p = sub.add_parser("bench-start", help="check the tools, settle, facts; write bench/params.json (the plan)")
    bench_common(p)
    common_machine(p)
    p.add_argument("--rounds", default="5", help="rounds of interleaved cells")
    p.add_argument("--processes", default="1,8,32", help="comma-separated numbers of processes")
    p.add_argument("--work-mb", default="2", help="MiB per work process (must stay in memory)")
    p.add_argument("--accesses-total", default="50000000", help="accesses of a cell, split over its processes")
    p.add_argument("--accesses-per-iteration", default="10000")
    p.add_argument("--idle-seconds", default="60", help="length of the idle fidelity run (s)")
    p.add_argument("--seed", type=int, default=1, help="seeds the order of the cells and the work processes")

    p = sub.add_parser("bench-idle", help="idle fidelity: one registered sleeping process, streamed")
    bench_common(p)

    p = sub.add_parser("bench-round", help="one round: every (N, condition) cell once, in the planned order")
    bench_common(p)
    p.add_argument("--round", type=int, required=True)
    return ap


# The case whose FAILED marker a failing step writes (the steps after it then stop at once).
STEP_CASE = {"case2-point": "case2", "case1-pair": "case1", "bench-idle": "bench", "bench-round": "bench"}


def _on_signal(signum, frame):
    raise Interrupted("interrupted by signal %d" % signum)


def protect_self() -> None:
    """Keep the runner out of the OOM killer's way (it records the run); root only."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000\n")
    except OSError:
        pass


def main(argv=None) -> int:
    global RUNNER_STARTED
    RUNNER_STARTED = utc_now()
    t_start = time.monotonic()
    args = build_parser().parse_args(argv)
    os.umask(0o022)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, _on_signal)
    ctx = None
    handlers = {"facts": cmd_facts, "case2-start": cmd_case2_start, "case2-point": cmd_case2_point,
                "case1-start": cmd_case1_start, "case1-pair": cmd_case1_pair, "case-finish": cmd_case_finish,
                "bench-start": cmd_bench_start, "bench-idle": cmd_bench_idle, "bench-round": cmd_bench_round}
    try:
        if args.cmd == "plan-case2":
            result = cmd_plan_case2(args)
            result["summary"] = "N = %s (predicted %.1f)" % (result["n_values"], result["predicted_n"])
        else:
            protect_self()
            ctx = BenchCtx(args) if args.cmd.startswith("bench-") else Ctx(args)
            result = handlers[args.cmd](ctx)
    except (RunnerError, Interrupted, OSError) as e:
        if isinstance(e, OSError):
            msg = "%s: %s" % (getattr(e, "filename", None) or "I/O error", e.strerror or e)
            if e.errno == errno.ENOSPC:
                msg += " (the disk is full)"
        else:
            msg = str(e)
        log("error: %s" % msg)
        if ctx is not None and args.cmd in STEP_CASE and not msg.startswith("an earlier step"):
            record_failure(ctx, STEP_CASE[args.cmd], args.cmd, msg)
        print(RESULT_MARK + json.dumps({"error": msg}), flush=True)
        return 1
    summary = result.pop("summary", "") if isinstance(result, dict) else ""
    if isinstance(result, dict):
        result["runner_s"] = round(time.monotonic() - t_start, 2)
    if summary:
        log(summary)
        print(SUMMARY_MARK + summary)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
