"""The pfprof module, work and monitor, proven inside VMs on every kernel
the project claims: bookworm (6.1), trixie (6.12) and sid (7.x).

Every test runs once per suite of THRASHLAB_PFPROF_SUITES (default bookworm;
the ``guest`` fixture's parameter; ``-k sid`` picks one): bookworm on the first machine of the shared
provisioned testbed, trixie and sid each on its machine of the session's
second testbed (tests/labs/newer-kernels.yml, conftest.newer_kernels: booted
and set up with the same playbook once, shared with test_machines_vm.py,
stopped at the end of the session). The fixture copies the working tree's kmod/,
workloads/ and tests/pfprof/ to /opt/thrashlab when they differ from what
setup installed, rebuilds them with -Werror, and reloads the module; each
test checks that the kernel log got no warning, BUG or oops while it ran.
Helpers that must run fast or as another user live in tests/pfprof/ and run
inside the guest.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[1]
REMOTE = "/opt/thrashlab"
KO = f"{REMOTE}/kmod/pfprof.ko"
WORK = f"{REMOTE}/workloads/work"
MONITOR = f"{REMOTE}/workloads/monitor"
HELPERS = f"{REMOTE}/tests/pfprof"
SOURCES = {"kmod": ["Kbuild", "Makefile", "dkms.conf", "*.c", "*.h"],
           "workloads": ["Makefile", "*.c"]}
KERNEL_PROBLEMS = re.compile(
    r"\bWARNING:|\bBUG:|kernel BUG|\bOops|general protection|Call Trace|list_(add|del) corruption|"
    r"refcount_t:|UBSAN|KASAN|kernel BUG|blocked for more than|possible circular locking|"
    r"sleeping function called from invalid context|scheduling while atomic|RCU stall|"
    r"soft lockup|hard LOCKUP")
STAT_MINFLT, STAT_MAJFLT, STAT_UTIME, STAT_STIME = 7, 9, 11, 12  # after "pid (comm)"
# The kernels the module's tests run on. The test command runs bookworm's
# (6.1); the matrix over all three is on demand (44 minutes here, dkms included):
#   THRASHLAB_PFPROF_SUITES=bookworm,trixie,sid ./test.sh tests/test_pfprof_vm.py
SUITES = [s.strip() for s in os.environ.get("THRASHLAB_PFPROF_SUITES", "bookworm").split(",") if s.strip()]


class Guest:
    """The first VM, with the shell helpers the tests share."""

    def __init__(self, bed, name: str):
        self.bed, self.name = bed, name
        # CPU time measured between two moments: under emulation (TCG) the
        # guest charges the running task for the time the host took its vCPU
        # away, tens of ms when the host is busy; with KVM, steal time is not.
        self.cpu_slack = 0.002 + (0.05 if bed.state().get("accelerator") == "tcg" else 0)

    def sh(self, cmd: str, timeout: float = 600, check: bool = True, input: str | None = None):
        return self.bed.ssh(self.name, cmd, timeout=timeout, check=check, input=input)

    def out(self, cmd: str, **kw) -> str:
        return self.sh(cmd, **kw).stdout

    def json(self, cmd: str, **kw) -> dict:
        text = self.out(cmd, **kw).strip().splitlines()
        assert text, f"no output from {cmd}"
        return json.loads(text[-1])

    def reload(self, params: str = "") -> None:
        self.sh(f"if [ -d /sys/module/pfprof ]; then rmmod pfprof; fi; insmod {KO} {params}")

    def status(self) -> dict[int, tuple[int, int, int]]:
        lines = self.out("cat /proc/pfprof/status").splitlines()
        assert lines[0].split() == ["pid", "minflt", "majflt", "cpu_ns"], lines
        return {int(p[0]): (int(p[1]), int(p[2]), int(p[3])) for p in map(str.split, lines[1:])}

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in map(str.split, self.out("cat /proc/pfprof/stats").splitlines())}

    def mark(self) -> str:
        marker = f"pfprof-test-{uuid.uuid4().hex[:12]}"
        self.sh(f"echo {marker} > /dev/kmsg")
        return marker

    def kernel_log_since(self, marker: str) -> list[str]:
        lines = self.out("dmesg").splitlines()
        idx = max((i for i, line in enumerate(lines) if marker in line), default=-1)
        return lines[idx + 1:]

    def background(self, cmd: str, out: str, err: str | None = None) -> int:
        """Start cmd detached from the SSH session; its pid."""
        err = err or out + ".err"
        pid = self.out(f"nohup {cmd} >{out} 2>{err} </dev/null & echo $!").strip()
        return int(pid)

    def wait_gone(self, pid: int, timeout: float = 600) -> None:
        self.sh(f"for i in $(seq {int(timeout * 10)}); do kill -0 {pid} 2>/dev/null || exit 0; "
                f"sleep 0.1; done; exit 1", timeout=timeout + 30)

    def wait_for(self, shell_test: str, timeout: float = 600) -> None:
        self.sh(f"for i in $(seq {int(timeout * 10)}); do {shell_test} && exit 0; sleep 0.1; done; "
                f"echo 'timeout: {shell_test}' >&2; exit 1", timeout=timeout + 30)

    def start_monitor(self, path: str, args: str = "") -> int:
        pid = self.background(f"{MONITOR} {args} -o {path}", path + ".log", path + ".err")
        self.wait_for("grep -qx 'reader 1' /proc/pfprof/stats", timeout=60)
        return pid

    def stop_monitor(self, pid: int) -> str:
        self.sh(f"kill -TERM {pid} 2>/dev/null || true")
        self.wait_gone(pid, timeout=60)
        return self.out(f"cat /proc/{pid}/status 2>/dev/null; true")

    def csv_rows(self, path: str) -> list[dict[str, int]]:
        text = self.out(f"cat {path}")
        reader = csv.DictReader(io.StringIO(text))
        assert reader.fieldnames == ["ts_ns", "jiffies", "pid", "minflt", "majflt", "cpu_ns", "flags"]
        return [{k: int(v) for k, v in row.items()} for row in reader]

    def meminfo(self) -> dict[str, int]:
        return {line.split(":")[0]: int(line.split()[1])
                for line in self.out("cat /proc/meminfo").splitlines()}


def _source_files() -> list[str]:
    """The sources setup copies, relative to the repository (build products
    such as kbuild's pfprof.mod.c left out: the guest has its own)."""
    return sorted(f"{tree}/{path.name}" for tree, patterns in SOURCES.items() for pattern in patterns
                  for path in (REPO / tree).glob(pattern) if not path.name.endswith(".mod.c"))


def _local_digest() -> str:
    h = hashlib.sha256()
    for rel in _source_files():
        h.update(f"{rel}\n".encode() + (REPO / rel).read_bytes())
    return h.hexdigest()


def _remote_digest(g: Guest) -> str:
    """The same files' digest on the guest (a missing file gives another)."""
    script = r"""
import hashlib, os
h = hashlib.sha256()
for rel in %r:
    path = os.path.join(%r, rel)
    h.update(("%%s\n" %% rel).encode() + (open(path, "rb").read() if os.path.exists(path) else b"\0missing"))
print(h.hexdigest())
""" % (_source_files(), REMOTE)
    return g.out("python3 -", input=script).strip()


@pytest.fixture(scope="module", params=SUITES)
def guest(request):
    """One machine per suite: bookworm's is the first of the shared provisioned
    testbed; trixie's and sid's are the machines of those names in the
    session's second testbed (conftest.newer_kernels, tests/labs/newer-kernels.yml)."""
    if request.param == "bookworm":
        bed = request.getfixturevalue("provisioned")
        g = Guest(bed, bed.names[0])
    else:
        bed = request.getfixturevalue("newer_kernels").bed
        g = Guest(bed, request.param)
    yield from _prepared(g, bed, request.param)


def _prepared(g: Guest, bed, suite: str):
    release = g.out("uname -r").strip()
    print(f"\n[pfprof] {suite}: kernel {release}", file=sys.stderr)
    if _remote_digest(g) != _local_digest():
        # The working tree differs from what setup installed: test ours.
        for tree in SOURCES:
            bed.put(g.name, REPO / tree, f"{REMOTE}/{tree}")
        g.sh(f"make -C {REMOTE}/kmod clean >/dev/null && make -C {REMOTE}/kmod WERROR=1 2>&1 && "
             f"make -C {REMOTE}/workloads clean >/dev/null && make -C {REMOTE}/workloads WERROR=1",
             timeout=1200)
    bed.put(g.name, REPO / "tests" / "pfprof", HELPERS)
    for helper in ("storm", "leaderexit"):
        g.sh(f"gcc -O2 -Wall -Wextra -Werror -pthread -o {HELPERS}/{helper} {HELPERS}/{helper}.c")
    g.sh("id student")
    g.reload()
    yield g
    g.reload()  # leave the module as setup loaded it: default parameters


@pytest.fixture(autouse=True)
def kernel_log_clean(guest):
    marker = guest.mark()
    yield
    problems = [line for line in guest.kernel_log_since(marker) if KERNEL_PROBLEMS.search(line)]
    assert not problems, "kernel log:\n" + "\n".join(problems)


def _work_rows(rows, pid):
    return [r for r in rows if r["pid"] == pid]


def _sums(rows):
    return tuple(sum(r[k] for r in rows) for k in ("minflt", "majflt", "cpu_ns"))


def test_interface_files_and_modes(guest):
    out = guest.out("stat -c '%a %U %F' /dev/pfprof /proc/pfprof/status /proc/pfprof/stats; "
                    "cat /sys/module/pfprof/parameters/interval_ms "
                    "/sys/module/pfprof/parameters/buffer_pages "
                    "/sys/module/pfprof/parameters/max_processes "
                    "/sys/module/pfprof/parameters/max_per_user").splitlines()
    assert out[0] == "600 root character special file"
    assert out[1].startswith("666 root")
    assert out[2].startswith("444 root")
    assert out[3:] == ["50", "128", "1024", "256"]
    stats = guest.stats()
    for key in ("ticks", "records_written", "records_dropped", "work_ns_sum", "work_ns_mean", "work_ns_max",
                "lateness_ns_mean", "lateness_ns_max", "timer_late_ns_sum", "timer_late_ns_max",
                "queue_delay_ns_sum", "queue_delay_ns_max", "timer_late_ticks_over_jiffy",
                "queue_delay_ticks_over_jiffy", "registered", "ending", "max_per_user"):
        assert key in stats, key
    assert guest.status() == {}


def _pressure_mb(guest) -> int:
    mem = guest.meminfo()
    if mem["SwapFree"] < 128 * 1024:
        pytest.skip("the guest has no swap: no major faults to count")
    avail = mem["MemAvailable"] // 1024
    return avail + min(96, mem["SwapFree"] // 1024 // 3)


@pytest.mark.parametrize("load", ["idle", "pressure"])
def test_counts_equal_getrusage_and_proc_stat(guest, load):
    """A work run registered from its start: the module's totals equal its own
    getrusage and /proc/<pid>/stat (minor, major exactly; CPU within a tick),
    and the monitor's records sum to them.

    work --hold sleeps at the end of its run, before its last getrusage();
    while it sleeps nothing of it changes, so /proc/<pid>/stat, the status
    line, a "U <pid>" written by the test (the module's last record) and the
    getrusage() right after the wake-up all see the same counters.
    """
    hz = guest.stats()["hz"]
    if load == "idle":
        args = "16 R 20000 10 --sleep-ms 50"
    else:
        args = f"{_pressure_mb(guest)} R 20000 2 --sleep-ms 0"
        if "/dev/zram" in guest.out("cat /proc/swaps"):
            # zram keeps swapped pages in RAM: random (incompressible) data would
            # not fit and the work would be OOM-killed; text compresses ~2.5:1
            args += " --fill text"

    mon = guest.start_monitor("/tmp/pft-counts.csv", "--until-idle")
    wpid = guest.background(f"{WORK} --hold {args}", "/tmp/pft-hold.json")
    guest.wait_for("grep -q holding /tmp/pft-hold.json.err", timeout=900)
    snap = guest.out(f"cat /proc/{wpid}/stat; grep '^{wpid} ' /proc/pfprof/status; "
                     f"echo 'U {wpid}' > /proc/pfprof/status").splitlines()
    guest.sh(f"kill -USR1 {wpid}")
    guest.wait_gone(wpid)
    guest.wait_gone(mon, timeout=120)
    j = json.loads(guest.out("cat /tmp/pft-hold.json"))
    stat = snap[0].rpartition(")")[2].split()
    st_min, st_maj = int(stat[STAT_MINFLT]), int(stat[STAT_MAJFLT])
    st_cpu = (int(stat[STAT_UTIME]) + int(stat[STAT_STIME])) / 100  # USER_HZ
    mod_min, mod_maj, mod_cpu = (int(x) for x in snap[1].split()[1:])
    assert j["pid"] == wpid and j["registered"] is True
    assert j["minflt_before_register"] == j["minflt_after_register"]

    # The module against the kernel's own per-process accounting: exact.
    assert mod_min == st_min - j["minflt_after_register"]
    assert mod_maj == st_maj - j["majflt_after_register"]
    assert abs(mod_cpu / 1e9 + j["cpu_before_register_s"] - st_cpu) <= 2 / 100 + guest.cpu_slack
    # The process's own getrusage() right after it wakes up. Under memory
    # pressure the few instructions between the wake-up and getrusage() can
    # fault again (their pages were reclaimed while it slept).
    if load == "idle":
        assert (j["minflt"], j["majflt"]) == (st_min, st_maj)
    else:
        assert 0 <= j["minflt"] - st_min <= 16 and 0 <= j["majflt"] - st_maj <= 16
        assert mod_maj > 0, "no major fault under memory pressure"
    own_cpu = j["utime_s"] + j["stime_s"] - j["cpu_before_register_s"]
    assert abs(mod_cpu / 1e9 - own_cpu) <= 1 / hz + guest.cpu_slack, (mod_cpu, own_cpu)

    # The monitor's records sum to the totals.
    rows = _work_rows(guest.csv_rows("/tmp/pft-counts.csv"), wpid)
    minflt, majflt, cpu_ns = _sums(rows)
    assert (minflt, majflt) == (mod_min, mod_maj)
    assert abs(cpu_ns - mod_cpu) <= 1e9 / hz
    assert rows[0]["flags"] & 2 and not any(r["flags"] & 2 for r in rows[1:])
    assert rows[-1]["flags"] & 5 == 5  # last record, ended by unregistration
    assert not any(r["flags"] & 1 for r in rows[:-1])
    assert [r["ts_ns"] for r in rows] == sorted(r["ts_ns"] for r in rows)
    assert "dropped 0" in guest.out("cat /tmp/pft-counts.csv.err")


def test_counts_of_a_plain_run(guest):
    """Without --hold, work unregisters right after its last getrusage():
    its records sum exactly to minflt - minflt_after_register."""
    hz = guest.stats()["hz"]
    mon = guest.start_monitor("/tmp/pft-run.csv", "--until-idle")
    guest.sh(f"{WORK} 16 L 20000 10 --sleep-ms 50 > /tmp/pft-run.json", timeout=900)
    guest.wait_gone(mon, timeout=120)
    j = json.loads(guest.out("cat /tmp/pft-run.json"))
    rows = _work_rows(guest.csv_rows("/tmp/pft-run.csv"), j["pid"])
    minflt, majflt, cpu_ns = _sums(rows)
    assert minflt == j["minflt"] - j["minflt_after_register"]
    assert majflt == j["majflt"] - j["majflt_after_register"]
    own_cpu = j["utime_s"] + j["stime_s"] - j["cpu_before_register_s"]
    assert abs(cpu_ns / 1e9 - own_cpu) <= 1 / hz + guest.cpu_slack
    assert rows[-1]["flags"] & 5 == 5


def test_mp3_format_sums_per_tick(guest):
    mon = guest.start_monitor("/tmp/pft-mp3.txt", "--until-idle --format mp3")
    guest.sh(f"{WORK} 16 R 20000 6 --sleep-ms 50 > /tmp/pft-mp3.json")
    guest.wait_gone(mon, timeout=120)
    j = json.loads(guest.out("cat /tmp/pft-mp3.json"))
    lines = [list(map(int, line.split())) for line in guest.out("cat /tmp/pft-mp3.txt").splitlines()]
    assert lines and all(len(x) == 4 for x in lines)
    jiffies = [x[0] for x in lines]
    assert jiffies == sorted(jiffies)
    assert sum(x[1] for x in lines) == j["minflt"] - j["minflt_after_register"]
    assert sum(x[2] for x in lines) == j["majflt"] - j["majflt_after_register"]


@pytest.mark.parametrize("accesses", [4096, 16384, 49152])
def test_first_touch_arithmetic(guest, accesses):
    """R mode over a fresh region of P pages with A accesses touches about
    P*(1-exp(-A/P)) pages: the first-touch minor faults, within 2%."""
    mb = 64
    pages = mb * 256
    expected = pages * (1 - math.exp(-accesses / pages))
    mon = guest.start_monitor("/tmp/pft-arith.csv", "--until-idle")
    guest.sh(f"{WORK} --no-fill {mb} R {accesses} 1 --sleep-ms 0 > /tmp/pft-arith.json")
    guest.wait_gone(mon, timeout=120)
    j = json.loads(guest.out("cat /tmp/pft-arith.json"))
    measured = _sums(_work_rows(guest.csv_rows("/tmp/pft-arith.csv"), j["pid"]))[0]
    print(f"P={pages} A={accesses}: expected {expected:.0f}, module {measured}")
    assert abs(measured - expected) <= 0.02 * expected, (measured, expected)


def test_bad_input_root(guest):
    r = guest.json(f"python3 {HELPERS}/badinput.py --count 10000 --seed 11", check=False)
    assert r["mismatch_count"] == 0, r["mismatches"]
    assert r["writes"] >= 10000
    for name in ("EINVAL", "ESRCH", "EEXIST", "ENOENT", "EFAULT", "OK"):
        assert r["counts"].get(name, 0) > 0, (name, r["counts"])
    assert guest.status() == {}


def test_bad_input_unprivileged(guest):
    """As the user student: other users' processes (root's, nobody's) are EPERM."""
    runuser = guest.background("runuser -u nobody -- sleep 600", "/dev/null", "/dev/null")
    try:
        guest.wait_for(f"pgrep -P {runuser} -x sleep >/dev/null", timeout=30)
        foreign = guest.out(f"pgrep -P {runuser} -x sleep").split()
        args = " ".join(f"--foreign {p}" for p in foreign)
        r = guest.json(f"runuser -u student -- python3 {HELPERS}/badinput.py --count 10000 "
                       f"--seed 12 {args}", check=False)
    finally:
        guest.sh(f"pkill -P {runuser} -x sleep; true")
    assert r["root"] is False
    assert r["mismatch_count"] == 0, r["mismatches"]
    assert r["writes"] >= 10000
    for name in ("EINVAL", "ESRCH", "EEXIST", "ENOENT", "EPERM", "EFAULT", "OK"):
        assert r["counts"].get(name, 0) > 0, (name, r["counts"])
    assert guest.status() == {}


def test_unprivileged_user_registers_only_own_processes(guest):
    rootpid = guest.background("sleep 600", "/dev/null", "/dev/null")
    try:
        guest.sh(f"echo 'R {rootpid}' > /proc/pfprof/status")
        out = guest.out(
            "runuser -u student -- python3 -c '\n"
            "import os, errno\n"
            "fd = os.open(\"/proc/pfprof/status\", os.O_WRONLY)\n"
            f"for cmd in (b\"R 1\", b\"R {rootpid}\", b\"U {rootpid}\"):\n"
            "    try:\n"
            "        os.write(fd, cmd); print(\"OK\")\n"
            "    except OSError as e:\n"
            "        print(errno.errorcode[e.errno])\n"
            "try:\n"
            "    os.open(\"/dev/pfprof\", os.O_RDWR); print(\"OK\")\n"
            "except OSError as e:\n"
            "    print(errno.errorcode[e.errno])\n"
            "'")
        assert out.split() == ["EPERM", "EPERM", "EPERM", "EACCES"]
        assert rootpid in guest.status()  # the root registration survived
        j = guest.json(f"runuser -u student -- {WORK} 8 R 1000 2 --sleep-ms 0")
        assert j["registered"] is True
    finally:
        guest.sh(f"echo 'U {rootpid}' > /proc/pfprof/status; kill {rootpid}; true")
    assert guest.status() == {}


@pytest.mark.parametrize("reap", ["now", "late"])
def test_exit_without_unregister(guest, reap):
    """A multi-threaded registered process exits without "U": one last record
    with the EXIT flag, removed automatically, records sum to its wait4()
    rusage (dead threads included)."""
    hz = guest.stats()["hz"]
    mon = guest.start_monitor("/tmp/pft-exit.csv")
    r = guest.json(f"python3 {HELPERS}/exitcheck.py --reap {reap}")
    guest.stop_monitor(mon)
    rows = _work_rows(guest.csv_rows("/tmp/pft-exit.csv"), r["pid"])
    _assert_one_registration(rows, r, hz, guest.cpu_slack, unregistered=False)
    assert r["listed_after"] is False
    if reap == "late":
        # The zombie path: the tick saw the exit of a process not yet reaped,
        # wrote its EXIT record and dropped it while it was still a zombie.
        assert r["listed_as_zombie"] is False
        assert rows[-1]["ts_ns"] <= r["reaped_ns"]


def _assert_one_registration(rows, r, hz, cpu_slack, unregistered):
    """The records of one registration: FIRST, then none, then EXIT (with
    UNREG if unregistered); their sums within the getrusage taken just
    before and after the "R" and the final wait4() rusage."""
    assert rows, "no record"
    assert rows[0]["flags"] & 2 and not any(x["flags"] & 2 for x in rows[1:])
    assert rows[-1]["flags"] & 1 and not any(x["flags"] & 1 for x in rows[:-1])
    assert bool(rows[-1]["flags"] & 4) is unregistered
    minflt, majflt, cpu_ns = _sums(rows)
    assert r["minflt"] - r["minflt_after"] <= minflt <= r["minflt"] - r["minflt_before"]
    assert r["majflt"] - r["majflt_after"] <= majflt <= r["majflt"] - r["majflt_before"]
    assert minflt >= 3072  # 4 threads x 512 pages + 1024 pages
    assert abs(cpu_ns / 1e9 - (r["cpu_s"] - r["cpu_before_s"])) <= 1 / hz + cpu_slack


def test_first_and_exit_with_a_reader_opened_after_registration(guest):
    """Registered and faulting while nobody has /dev/pfprof open: nothing is
    written then, and nothing is lost either. The reader that opens later
    gets FIRST with everything since the registration, then EXIT."""
    hz = guest.stats()["hz"]
    guest.sh("rm -f /tmp/pft-late-go /tmp/pft-late-go.ready")
    assert guest.stats()["reader"] == 0
    no_reader = guest.stats()["records_no_reader"]
    job = guest.background(f"python3 {HELPERS}/exitcheck.py --wait-file /tmp/pft-late-go",
                           "/tmp/pft-late.json")
    guest.wait_for("test -e /tmp/pft-late-go.ready", timeout=300)
    pid = int(guest.out(f"pgrep -P {job}").split()[0])
    guest.wait_for(f"test $(awk '/^records_no_reader/ {{print $2}}' /proc/pfprof/stats) -gt {no_reader + 3}",
                   timeout=60)
    assert pid in guest.status()  # sampled, not written, still registered
    mon = guest.start_monitor("/tmp/pft-late.csv")
    guest.sh("sleep 0.3; touch /tmp/pft-late-go")
    guest.wait_gone(job)
    guest.stop_monitor(mon)
    r = json.loads(guest.out("cat /tmp/pft-late.json"))
    assert r["pid"] == pid
    rows = _work_rows(guest.csv_rows("/tmp/pft-late.csv"), pid)
    # Every fault happened before the reader opened: the FIRST record carries them.
    assert rows[0]["minflt"] >= 3072
    _assert_one_registration(rows, r, hz, guest.cpu_slack, unregistered=False)


def test_exit_with_the_reader_closed_ends_the_registration(guest):
    """No reader, no stream: a process that exits while /dev/pfprof is closed
    is dropped at the next tick (it cannot wait for a reader forever)."""
    assert guest.stats()["reader"] == 0
    r = guest.json(f"python3 {HELPERS}/exitcheck.py --reap late")
    assert r["listed_as_zombie"] is False and r["listed_after"] is False
    stats = guest.stats()
    assert stats["registered"] == 0 and stats["ending"] == 0


def test_pid_reuse_is_never_profiled(guest):
    """The old registration keeps the old process's numbers even when a new
    process gets the same pid before the tick notices the exit."""
    guest.reload("interval_ms=4000")  # a slow emulated guest still reuses the pid between two ticks
    try:
        mon = guest.start_monitor("/tmp/pft-reuse.csv")
        r = guest.json(f"python3 {HELPERS}/pidreuse.py --interval-ms 4000")
        guest.stop_monitor(mon)
        rows = _work_rows(guest.csv_rows("/tmp/pft-reuse.csv"), r["pid"])
    finally:
        guest.reload()
    assert r["reused"] is True
    # Forced, not hoped for: the new process had faulted while the old
    # registration was still listed (no tick in between).
    assert r["ticks_between"] == 0, r
    assert r["before_tick"] is not None and r["before_tick"][0] < r["touched_pages"] // 4
    assert r["after_tick"] is None  # the old registration is gone
    assert r["reregister_errno"] == 0 and r["unregister_errno"] == 0
    # Old registration: records up to its EXIT record, none with the new faults.
    end_old = next(i for i, x in enumerate(rows) if x["flags"] & 1)
    old = rows[: end_old + 1]
    assert old[0]["flags"] & 2 and not old[-1]["flags"] & 4
    assert _sums(old)[0] < r["touched_pages"] // 4
    # Then only the new, explicit registration (FIRST ... EXIT|UNREG).
    new = rows[end_old + 1:]
    assert new and new[0]["flags"] & 2 and new[-1]["flags"] & 5 == 5


def _vmalloc_total(guest) -> int:
    return int(guest.out("awk '{s += $2} END {print s}' /proc/vmallocinfo"))


def _slab_active(guest) -> dict[str, int]:
    """Active objects of the caches a leaked task or pid reference would keep."""
    out = guest.out("sync; sleep 1; grep -E '^(task_struct|pid) ' /proc/slabinfo")
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}


def test_load_unload_100_cycles_leaks_nothing(guest):
    """100 load/unload cycles with processes registered, exited and the timer
    running. While loaded: exactly one vmalloc area named after the module,
    of the ring's size. After: vmalloc bytes and the task_struct/pid slabs
    back at their baseline (a leaked ring of any cycle is >= 256 KiB, 100 of
    them tens of MiB; a leaked reference keeps a task_struct per cycle)."""
    guest.sh("rmmod pfprof")
    try:
        vm_before, slab_before = _vmalloc_total(guest), _slab_active(guest)
        assert "task_struct" in slab_before, slab_before
        script = f"""
set -e
for i in $(seq 100); do
    pages=$((64 + i * 37 % 300))
    insmod {KO} interval_ms=$((i % 7 + 1)) buffer_pages=$pages
    areas=$(grep '\\[pfprof\\]' /proc/vmallocinfo)
    echo "$areas" | grep -q "pages=$pages " || {{ echo "cycle $i: no area of $pages pages: $areas"; exit 1; }}
    test "$(echo "$areas" | wc -l)" = 1 || {{ echo "cycle $i: areas: $areas"; exit 1; }}
    sleep 600 & s=$!
    sh -c 'exit 0' & e=$!
    echo "R $s" > /proc/pfprof/status
    echo "R $$" > /proc/pfprof/status
    echo "R $e" > /proc/pfprof/status 2>/dev/null || true  # may have exited already
    if [ $((i % 3)) = 0 ]; then exec 3</dev/pfprof; exec 3<&-; fi
    if [ $((i % 2)) = 0 ]; then echo "U $s" > /proc/pfprof/status; fi
    sleep 0.0$((i % 10))
    wait $e
    rmmod pfprof  # with processes registered and the timer running
    kill $s; wait $s || true
done
test ! -e /proc/pfprof && test ! -e /dev/pfprof && test ! -d /sys/module/pfprof
echo "named $(grep -c pfprof /proc/vmallocinfo || true)"
"""
        out = guest.out(script, timeout=1200)
        vm_after, slab_after = _vmalloc_total(guest), _slab_active(guest)
    finally:
        guest.reload()
    print(f"leak check: vmalloc {vm_before} -> {vm_after} bytes; slabs {slab_before} -> {slab_after}")
    assert out.split()[-2:] == ["named", "0"], out
    assert vm_after - vm_before < 2 << 20, (vm_before, vm_after)
    for cache, before in slab_before.items():
        assert slab_after[cache] - before < 40, (cache, before, slab_after[cache])


@pytest.mark.parametrize("params", ["interval_ms=0", "interval_ms=60001", "buffer_pages=1",
                                    "buffer_pages=65537", "max_processes=0", "max_processes=65537",
                                    "max_per_user=0", "max_per_user=65537"])
def test_invalid_parameters_refused(guest, params):
    r = guest.sh(f"rmmod pfprof; insmod {KO} {params}", check=False)
    try:
        assert r.returncode != 0
        assert "Invalid" in r.stderr or "invalid" in r.stderr.lower()
        assert guest.out("test -d /sys/module/pfprof && echo loaded; test -e /proc/pfprof && "
                         "echo proc; true").strip() == ""
    finally:
        guest.reload()


def test_enospc_at_max_processes(guest):
    guest.reload("max_processes=3")
    try:
        out = guest.out("""
pids=""; for i in 1 2 3 4 5; do sleep 600 & pids="$pids $!"; done
set -- $pids
for p in $1 $2 $3 $4; do echo "R $p" > /proc/pfprof/status 2>&1 && echo ok || echo fail; done
echo "U $1" > /proc/pfprof/status && echo unreg
echo "R $4" > /proc/pfprof/status && echo ok4
python3 -c 'import os, errno, sys
try:
    os.write(os.open("/proc/pfprof/status", os.O_WRONLY), b"R " + sys.argv[1].encode())
except OSError as e:
    print(errno.errorcode[e.errno])' $5
grep -c . /proc/pfprof/status
kill $pids
""")
        assert out.split() == ["ok", "ok", "ok", "fail", "unreg", "ok4", "ENOSPC", "4"], out
    finally:
        guest.reload()


REGISTER_SCRIPT = r"""
import errno, os, sys
fd = os.open("/proc/pfprof/status", os.O_WRONLY)
for pid in sys.argv[1:]:
    try:
        os.write(fd, b"R " + pid.encode()); print("OK")
    except OSError as e:
        print(errno.errorcode[e.errno])
"""


def test_per_user_limit_and_status_visibility(guest):
    """max_per_user=3: the fourth "R" of one user is ENOSPC, while another
    user and root still register; the limit counts registrations by who
    registers (root's registration of a student process is root's). An
    unprivileged reader of the status file sees only the processes it may
    profile (its own, whoever registered them); root sees every one."""
    guest.reload("max_per_user=3")
    guest.sh(f"cat > /tmp/pft-register.py <<'EOF'\n{REGISTER_SCRIPT}\nEOF\nchmod 644 /tmp/pft-register.py")

    def as_user(user: str) -> str:
        return f"setpriv --reuid={user} --regid=$(id -g {user}) --clear-groups"

    pids: dict[str, list[int]] = {}
    try:
        for user, n in (("student", 4), ("nobody", 2), ("root", 3)):
            pids[user] = [guest.background(f"{as_user(user)} sleep 600", "/dev/null", "/dev/null")
                          for _ in range(n)]

        def register(user, targets):
            return guest.out(f"{as_user(user)} python3 /tmp/pft-register.py "
                             + " ".join(map(str, targets))).split()

        student, nobody, root = pids["student"], pids["nobody"], pids["root"]
        assert register("student", student) == ["OK", "OK", "OK", "ENOSPC"]
        assert register("nobody", nobody) == ["OK", "OK"]
        assert register("root", [root[0], root[1], student[3], root[2]]) == ["OK", "OK", "OK", "ENOSPC"]

        def visible(user):
            lines = guest.out(f"{as_user(user)} cat /proc/pfprof/status").splitlines()
            assert lines[0].split() == ["pid", "minflt", "majflt", "cpu_ns"]
            return sorted(int(line.split()[0]) for line in lines[1:])

        assert visible("student") == sorted(student)
        assert visible("nobody") == sorted(nobody)
        assert visible("root") == sorted(student + nobody + root[:2])
        stats = guest.stats()
        assert stats["registered"] == 8 and stats["max_per_user"] == 3
    finally:
        every = " ".join(str(p) for group in pids.values() for p in group)
        if every:
            guest.sh(f"kill {every}; true")
        guest.reload()


def test_register_storm_while_sampling(guest):
    guest.reload("interval_ms=1")
    try:
        mon = guest.start_monitor("/tmp/pft-storm.csv")
        r = guest.json(f"{HELPERS}/storm 8 16 15", timeout=300)
        guest.stop_monitor(mon)
        time.sleep(0.5)
        stats, status = guest.stats(), guest.status()
        err = guest.out("cat /tmp/pft-storm.csv.err")
    finally:
        guest.reload()
    print(f"storm: {r}; stats: {stats}")
    assert r["errors"] == 0, r
    assert r["ok"] > 1000 and r["respawns"] > 10 and r["status_reads"] > 10
    assert status == {} and stats["registered"] == 0
    assert stats["ticks"] > 100
    assert "records" in err and "protocol error" not in err


def test_unload_while_mapped_is_refused(guest):
    r = guest.json(f"python3 {HELPERS}/ringcheck.py unload --ko {KO}")
    assert r == {"second_open_errno": 16, "open_while_mapped_errno": 16,
                 "rmmod_while_mapped_rc": 1, "loaded_while_mapped": True, "magic_ok": True,
                 "reopen_after_munmap_errno": 0, "rmmod_after_munmap_rc": 0, "unloaded": True,
                 "insmod_rc": 0}


def test_mmap_bounds(guest):
    r = guest.json(f"python3 {HELPERS}/ringcheck.py bounds")
    assert r["too_large"] == r["offset"] == r["private"] == 22  # EINVAL
    assert r["exact"] == r["header_only"] == 0
    assert r["exec"] == 1 and r["mprotect_exec"] == 13  # EPERM, EACCES: never code
    assert r["layout_ok"], r["header"]


def test_open_resets_the_whole_header(guest):
    r = guest.json(f"python3 {HELPERS}/ringcheck.py reset")
    assert r["header_restored"] and r["rest_zero"], r


def test_full_ring_drops_and_never_overwrites(guest):
    guest.reload("buffer_pages=2 interval_ms=1")
    try:
        r = guest.json(f"python3 {HELPERS}/ringcheck.py full", timeout=300)
        stats = guest.stats()
    finally:
        guest.reload()
    assert r["head"] == r["capacity"] and r["tail"] == 0  # full, nothing overwritten
    assert r["dropped"] > 0 and stats["records_dropped"] >= r["dropped"]
    assert r["ts_sorted"] and r["first_flag_ok"]
    assert r["head_after_consume"] > r["head"] and r["resumed_pids_ok"]
    assert r["bogus_tail"]["head_moved"] == 0 and r["bogus_tail"]["dropped_more"] > 0


def test_monitor_reports_drops(guest):
    """A stalled reader loses records: the monitor says how many, on stderr."""
    guest.reload("buffer_pages=2 interval_ms=1")
    try:
        mon = guest.start_monitor("/tmp/pft-drop.csv")
        sleepers = guest.out("for i in $(seq 8); do nohup sleep 600 >/dev/null 2>&1 </dev/null & "
                             "echo $!; echo \"R $!\" > /proc/pfprof/status; done").split()
        guest.sh(f"kill -STOP {mon}; sleep 1; kill -CONT {mon}; sleep 0.5")
        guest.stop_monitor(mon)
        err = guest.out("cat /tmp/pft-drop.csv.err")
        dropped = guest.stats()["records_dropped"]
        guest.sh(f"kill {' '.join(sleepers)}")
    finally:
        guest.reload()
    assert dropped > 0
    assert re.search(r"\d+ records dropped \(ring full\)", err), err
    total = int(re.search(r"records \d+ dropped (\d+)", err).group(1))
    assert total == dropped


def test_sums_exact_across_drops_with_a_stalled_reader(guest, capsys):
    """The smallest ring (buffer_pages=2), a 1 ms tick and a reader stopped
    before six processes register, fault and end (three by exit, three by
    "U"), all of them ended and reaped while it is stopped: records are
    dropped, yet
    every registration's records sum to its getrusage since registration
    and end with EXIT (held, listed, until the reader made room)."""
    hz = guest.stats()["hz"]
    guest.reload("buffer_pages=2 interval_ms=1")
    try:
        mon = guest.start_monitor("/tmp/pft-dropsum.csv", "--until-idle")
        # Stopped before the first registration: the ring (85 slots) fills
        # within tens of ticks and stays full for the children's whole lives.
        guest.sh(f"kill -STOP {mon}")
        job = guest.background(f"python3 {HELPERS}/dropsum.py --procs 6 --seconds 3",
                               "/tmp/pft-dropsum.json")
        guest.wait_gone(job, timeout=300)  # every child ended and reaped, the reader still stopped
        stalled = guest.stats()
        listed = guest.status()
        guest.sh(f"kill -CONT {mon}")
        guest.wait_gone(mon, timeout=120)  # --until-idle: every EXIT seen, nothing registered
        after = guest.stats()
        err = guest.out("cat /tmp/pft-dropsum.csv.err")
        rows = guest.csv_rows("/tmp/pft-dropsum.csv")
    finally:
        guest.reload()
    r = json.loads(guest.out("cat /tmp/pft-dropsum.json"))
    dropped = int(re.search(r"records \d+ dropped (\d+)", err).group(1))
    with capsys.disabled():
        print(f"\n[pfprof drops] capacity {after['ring_capacity']}, records written "
              f"{after['records_written']}, dropped {dropped}; while stalled: "
              f"{stalled['ending']} ended registrations waiting for room")
    assert dropped > 0 and dropped == after["records_dropped"]
    assert stalled["ending"] == len(r["children"]) and len(listed) == len(r["children"])
    assert after["registered"] == 0 and after["ending"] == 0
    for c in r["children"]:
        mine = _work_rows(rows, c["pid"])
        assert mine and mine[0]["flags"] & 2 and not any(x["flags"] & 2 for x in mine[1:]), c["pid"]
        assert mine[-1]["flags"] & 1 and not any(x["flags"] & 1 for x in mine[:-1]), c["pid"]
        assert bool(mine[-1]["flags"] & 4) is c["unregistered"]
        minflt, majflt, cpu_ns = _sums(mine)
        # "U": the counts at the "U", bounded by getrusage just before and after it;
        # exit: the final counts of wait4(). Both minus the counts at the "R".
        lo, hi = (c["before_u"], c["after_u"]) if c["unregistered"] else (c["final"], c["final"])
        with capsys.disabled():
            print(f"  pid {c['pid']}: {len(mine)} records, minflt {minflt} in "
                  f"[{lo[0] - c['after_r'][0]}, {hi[0] - c['before_r'][0]}], "
                  f"cpu {cpu_ns / 1e9:.4f} s vs getrusage {hi[2] - c['before_r'][2]:.4f} s")
        assert lo[0] - c["after_r"][0] <= minflt <= hi[0] - c["before_r"][0], c
        assert lo[1] - c["after_r"][1] <= majflt <= hi[1] - c["before_r"][1], c
        assert minflt > 300  # it faulted (64 pages a loop) while records were dropped
        assert lo[2] - c["after_r"][2] - 1 / hz - guest.cpu_slack <= cpu_ns / 1e9 \
            <= hi[2] - c["before_r"][2] + 1 / hz + guest.cpu_slack, c


def test_leader_pthread_exit_is_not_an_exit(guest):
    """The leader calls pthread_exit() while two threads run on: a zombie
    leader of a live group. Records go on without EXIT until the last thread
    ends; then one EXIT, and the sums are the group's wait4() rusage."""
    hz = guest.stats()["hz"]
    mon = guest.start_monitor("/tmp/pft-leader.csv")
    r = guest.json(f"{HELPERS}/leaderexit 2", timeout=300)
    guest.stop_monitor(mon)
    rows = _work_rows(guest.csv_rows("/tmp/pft-leader.csv"), r["pid"])
    assert r["exit_status"] == 0
    assert r["mid_state"] == "Z" and r["mid_listed"] is True  # zombie leader, still registered
    while_zombie = [x for x in rows if r["leader_exit_ns"] < x["ts_ns"] < r["threads_end_ns"]]
    assert len(while_zombie) >= 5 and not any(x["flags"] & 1 for x in while_zombie)
    assert sum(x["minflt"] for x in while_zombie) > 0  # the threads' faults, counted
    assert rows[-1]["flags"] & 1 and not rows[-1]["flags"] & 4
    assert rows[-1]["ts_ns"] >= r["threads_end_ns"]
    assert not any(x["flags"] & 1 for x in rows[:-1])
    minflt, majflt, cpu_ns = _sums(rows)
    assert r["minflt"] - r["minflt_after"] <= minflt <= r["minflt"] - r["minflt_before"]
    assert r["majflt"] - r["majflt_after"] <= majflt <= r["majflt"] - r["majflt_before"]
    assert abs(cpu_ns / 1e9 - (r["cpu_s"] - r["cpu_before_s"])) <= 1 / hz + guest.cpu_slack


def test_benchmark_tick_precision(guest, capsys):
    """Printed, not asserted: how regular the ticks are on an idle VM, and what
    the work handler costs (asserted: only the lateness split's invariants)."""
    guest.reload()
    sleeper = guest.background("sleep 600", "/dev/null", "/dev/null")
    try:
        mon = guest.start_monitor("/tmp/pft-bench.csv")
        guest.sh(f"echo 'R {sleeper}' > /proc/pfprof/status; sleep 10; "
                 f"echo 'U {sleeper}' > /proc/pfprof/status")
        guest.stop_monitor(mon)
        stats = guest.stats()
        rows = _work_rows(guest.csv_rows("/tmp/pft-bench.csv"), sleeper)
    finally:
        guest.sh(f"kill {sleeper} 2>/dev/null; true")
    ticks = [r["ts_ns"] for r in rows if not r["flags"] & 4]
    gaps = [(b - a) / 1e6 for a, b in zip(ticks, ticks[1:])]
    jiffy_ms = 1000 / stats["hz"]
    within = sum(abs(g - stats["interval_ms"]) <= jiffy_ms for g in gaps)
    with capsys.disabled():
        print(f"\n[pfprof benchmark] {len(gaps)} tick intervals, interval_ms={stats['interval_ms']}, "
              f"HZ={stats['hz']}: {100 * within / max(1, len(gaps)):.1f}% within one jiffy "
              f"({jiffy_ms:.1f} ms); interval min/mean/max "
              f"{min(gaps):.2f}/{sum(gaps) / len(gaps):.2f}/{max(gaps):.2f} ms; "
              f"work handler mean {stats['work_ns_mean'] / 1e3:.1f} us, "
              f"max {stats['work_ns_max'] / 1e3:.1f} us; lateness mean "
              f"{stats['lateness_ns_mean'] / 1e6:.2f} ms, max {stats['lateness_ns_max'] / 1e6:.2f} ms "
              f"(timer {stats['timer_late_ns_sum'] / max(1, stats['ticks']) / 1e6:.3f} ms + queue "
              f"{stats['queue_delay_ns_sum'] / max(1, stats['ticks']) / 1e6:.3f} ms per tick; over a jiffy: "
              f"{stats['timer_late_ticks_over_jiffy']} timer, {stats['queue_delay_ticks_over_jiffy']} queue)")
    assert len(gaps) > 50
    # each tick's parts, clamped at 0, cover its lateness (more only when the timer fired early)
    assert stats["timer_late_ns_sum"] + stats["queue_delay_ns_sum"] >= stats["lateness_ns_sum"]
    assert max(stats["timer_late_ticks_over_jiffy"], stats["queue_delay_ticks_over_jiffy"]) <= stats["ticks"]


# ~3-5 minutes per kernel under TCG (a full module build, signing, depmod twice):
# in the on-demand matrix only. CI checks dkms.conf with `dkms build` on the
# host (test_kmod_compile.py::test_dkms_build).
@pytest.mark.on_demand("THRASHLAB_PFPROF_SUITES")
def test_dkms_install(guest):
    if guest.sh("command -v dkms", check=False).returncode != 0:
        pytest.skip("dkms is not installed in the guest")
    out = guest.out(f"""
set -e
v=$(sed -n 's/^PACKAGE_VERSION="\\(.*\\)"/\\1/p' {REMOTE}/kmod/dkms.conf)
rm -rf /usr/src/pfprof-$v && cp -r {REMOTE}/kmod /usr/src/pfprof-$v
make -C /usr/src/pfprof-$v clean >/dev/null
dkms remove pfprof/$v --all >/dev/null 2>&1 || true
dkms install pfprof/$v
modinfo -n pfprof
dkms remove pfprof/$v --all
rm -rf /usr/src/pfprof-$v
""", timeout=1200)
    assert "pfprof.ko" in out
