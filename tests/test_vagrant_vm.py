"""`vagrant up` for real: the Vagrantfile with the loopback layer (vagrant/loopback.rb).

Runs after the shared local testbed is stopped (teardown_last), on
tests/labs/vagrant-one.yml (one machine: Vagrant boots a lab's machines one
after the other, a whole boot each under emulation): starts libvirt's daemons itself (no systemd
here) unless one already answers, adds the box (`python -m localvm box`,
cached in a persistent VAGRANT_HOME under the cache dir), `vagrant up` with
the Ansible provisioner, checks `vagrant ssh-config`, `ansible all -m ping`
through the inventory and `run-case1.yml` with tiny sizes, then `vagrant
destroy -f`, and checks that no VM, storage pool, forwarded port or daemon is
left. Installs nothing: test.sh brings vagrant, vagrant-libvirt, libvirt's
daemons and clients, and QEMU.

Its own Vagrant dotfile directory and state directory (temporary), so that a
developer's own `vagrant up` of this checkout is never touched.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tool
from thrashlab.lab import load_lab
from thrashlab.paths import cache_root, state_root

# The VM tests run after the shared local testbed is stopped; the few static
# checks at the end run anywhere in seconds.
vm = [pytest.mark.vm, pytest.mark.teardown_last]


def _vm(test):
    for mark in vm:
        test = mark(test)
    return test

URI = "qemu:///system"
# Tiny Case Study 1: the point is that it runs end to end on Vagrant's machines.
CASE1_TINY = ["-e", "case1_work_mb=8", "-e", "case1_iterations=2", "-e", "case1_timeout=90"]
NEEDED = {"vagrant": "vagrant", "libvirtd": "libvirt-daemon-system", "virtlogd": "libvirt-daemon-system",
          "virsh": "libvirt-clients", "qemu-system-x86_64": "qemu-system-x86"}
DEFAULT_NET_AUTOSTART = Path("/etc/libvirt/qemu/networks/autostart/default.xml")
TIMINGS: dict[str, float] = {}


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/sbin")
                                       if (p := Path(d, name)).exists()), None)


def _unavailable() -> str | None:
    missing = [f"{cmd} ({pkg})" for cmd, pkg in NEEDED.items() if _which(cmd) is None]
    if missing:
        return "missing: " + ", ".join(missing) + "; ./test.sh installs them"
    if not Path("/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json").exists() and \
            "vagrant-libvirt" not in subprocess.run(["vagrant", "plugin", "list"], capture_output=True,
                                                     text=True, env=_base_env()).stdout:
        return "the vagrant-libvirt plugin is missing (Debian package vagrant-libvirt)"
    if os.geteuid() != 0:
        return "starting libvirt's system daemons needs root"
    return None


def _base_env() -> dict:
    return {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"}


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _virsh(*args, check=True) -> str:
    proc = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"virsh {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on TCP ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if fields[3] == "0A" and int(hexport, 16) == port:
                found.append(addr)
    return found


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _pid_alive(int(entry.name)):
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class LibvirtDaemons:
    """virtlogd and libvirtd started here (pidfiles in a temp dir), stopped by PID."""

    def __init__(self, rundir: Path, hide_kvm: bool):
        self.rundir = rundir
        self.hide_kvm = hide_kvm
        self.pids: dict[str, int] = {}
        self.reused = False

    def answers(self) -> bool:
        return subprocess.run(["virsh", "-c", URI, "uri"], capture_output=True, timeout=30).returncode == 0

    def start(self) -> None:
        if self.answers():
            self.reused = True  # a daemon of the host (systemd, a developer's): used, never stopped
            return
        if DEFAULT_NET_AUTOSTART.exists():
            pytest.fail(f"{DEFAULT_NET_AUTOSTART} exists: starting libvirtd would start libvirt's "
                        "'default' network (a bridge on a private range); refusing")
        self.rundir.mkdir(parents=True, exist_ok=True)
        for daemon in ("virtlogd", "libvirtd"):
            pidfile = self.rundir / f"{daemon}.pid"
            cmd = [_which(daemon), "--daemon", "--pid-file", str(pidfile)]
            if daemon == "libvirtd" and self.hide_kvm:
                # A /dev/kvm that libvirt's QEMU user may not open (root-only here, and
                # unusable anyway: nested KVM hangs) makes libvirtd find its cached QEMU
                # capabilities stale at every call and probe QEMU again: about 30 s per
                # domain definition. The VMs run under TCG; this libvirtd, in a mount
                # namespace of its own, sees a root-only null device there instead (a device,
                # so that libvirt can carry the mount into each domain's own /dev).
                cover = self.rundir / "no-kvm"
                os.mknod(cover, stat.S_IFCHR | 0o600, os.makedev(1, 3))
                cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                       f'mount --bind "$0" /dev/kvm && exec "$@"', str(cover), *cmd]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, f"{daemon} did not start: {proc.stderr}"
            deadline = time.monotonic() + 30
            while not pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.pids[daemon] = int(pidfile.read_text().strip())
        deadline = time.monotonic() + 60
        while not self.answers():
            assert time.monotonic() < deadline, "libvirtd started but does not answer on qemu:///system"
            time.sleep(0.5)

    def stop(self) -> None:
        for daemon in ("libvirtd", "virtlogd"):  # libvirtd first: it writes through virtlogd
            pid = self.pids.get(daemon)
            if pid is None:
                continue
            for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
                if _pid_alive(pid):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                end = time.monotonic() + wait_s
                while _pid_alive(pid) and time.monotonic() < end:
                    time.sleep(0.1)
            assert not _pid_alive(pid), f"{daemon} (pid {pid}) is still running"

    def left(self) -> list[int]:
        return [pid for pid in self.pids.values() if _pid_alive(pid)]


class VagrantLab:
    def __init__(self, env: dict, logdir: Path):
        self.env = env
        self.logdir = logdir
        self.lab = load_lab(Path(env["THRASHLAB_LAB"]))
        self.state = Path(env["THRASHLAB_STATE_DIR"]) / "vagrant"

    def run(self, name: str, cmd: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
        """Run ``cmd`` from the repository root; its output, each line with the seconds
        since the start, goes to <logdir>/<name>.log (where the time went, in CI too)."""
        started = time.monotonic()
        log = self.logdir / f"{name}.log"
        lines = []
        with log.open("w") as out, subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, errors="replace") as child:
            for line in child.stdout:
                lines.append(line)
                out.write(f"[{time.monotonic() - started:6.1f}s] {line}")
                out.flush()
                if time.monotonic() - started > timeout:
                    child.kill()
                    raise AssertionError(f"{name}: no end after {timeout}s; see {log}")
            rc = child.wait()
        TIMINGS[name] = round(time.monotonic() - started, 1)
        proc = subprocess.CompletedProcess(cmd, rc, "".join(lines))
        print(f"{name}: {TIMINGS[name]}s (rc {proc.returncode}, log {log})")
        return proc

    def accelerator(self) -> str:
        """What the layer uses: THRASHLAB_ACCEL, else localvm's probe of this boot, else TCG."""
        forced = self.env.get("THRASHLAB_ACCEL", "").strip().lower()
        if forced in ("kvm", "tcg"):
            return forced
        try:
            probe = json.loads((self.state.parent / "accel-probe.json").read_text())
            boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            return probe["accel"] if probe.get("boot_id") == boot_id else "tcg"
        except (OSError, ValueError, KeyError):
            return "tcg"

    def libvirt_state(self) -> dict:
        return json.loads((self.state / "libvirt.json").read_text())

    def ports(self) -> dict:
        try:
            return json.loads((self.state / "ports.json").read_text())
        except FileNotFoundError:
            return {}

    def domains(self, prefix: str) -> list[str]:
        return [n for n in _virsh("list", "--all", "--name").split() if n.startswith(prefix)]


def _tail(text: str, n: int = 6000) -> str:
    return text[-n:]


VAGRANT_LAB = REPO / "tests" / "labs" / "vagrant-one.yml"


@pytest.fixture(scope="module")
def vlab(tmp_path_factory):
    """The environment of every command, and the box (added once per image, cached)."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"Vagrant test cannot run in CI: {reason}")
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("vagrant")
    state = base / "state"
    (state / "vagrant").mkdir(parents=True)
    probe = state_root() / "accel-probe.json"  # localvm's KVM verdict of this host boot, if any
    if probe.exists():
        shutil.copy(probe, state / "accel-probe.json")
    env = {
        **_base_env(),
        "THRASHLAB_LAB": str(VAGRANT_LAB),
        "THRASHLAB_VAGRANT_LOOPBACK": "1",
        # Persistent, so that the 1 GB box is added once per image, not once per run.
        "VAGRANT_HOME": str(cache_root() / "vagrant.d"),
        "VAGRANT_DOTFILE_PATH": str(base / "dotvagrant"),
        "THRASHLAB_STATE_DIR": str(state),
        "THRASHLAB_RESULTS_DIR": str(base / "results"),
    }
    env.pop("THRASHLAB_VAGRANT_LIBVIRT_DIR", None)
    v = VagrantLab(env, base)
    box = v.run("box", [sys.executable, "-m", "localvm", "box"], timeout=1800)
    assert box.returncode == 0, _tail(box.stdout)
    yield v
    print("timings: " + ", ".join(f"{k} {t}s" for k, t in TIMINGS.items()))


@pytest.fixture(scope="module")
def daemons(vlab):
    d = LibvirtDaemons(vlab.logdir / "libvirt-run", hide_kvm=vlab.accelerator() == "tcg")
    started = time.monotonic()
    d.start()
    TIMINGS["libvirt daemons"] = round(time.monotonic() - started, 1)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def upped(vlab, daemons):
    proc = vlab.run("vagrant up", ["vagrant", "up"], timeout=1500)
    yield proc
    # Whatever failed: no VM, pool or port of this run is left behind (before the daemons stop).
    if (vlab.state / "libvirt.json").exists() or vlab.ports():
        vlab.run("destroy (cleanup)", ["vagrant", "destroy", "-f"], timeout=300)
    try:
        info = vlab.libvirt_state()
    except (OSError, ValueError):
        info = {}
    if info:
        for name in vlab.domains(info["domain_prefix"]):
            _virsh("destroy", name, check=False)
            _virsh("undefine", name, "--remove-all-storage", check=False)
        _virsh("pool-destroy", info["pool"], check=False)
        _virsh("pool-undefine", info["pool"], check=False)
        shutil.rmtree(info["work_dir"], ignore_errors=True)


@pytest.fixture
def up_ok(upped):
    assert upped.returncode == 0, _tail(upped.stdout)
    return upped


def _recap(output: str) -> dict:
    recap = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        m = re.match(r"^\s*(\S+)\s+:\s+(ok=.*)$", line)
        if m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return recap


def _adhoc(vlab, name: str, args: list[str]) -> dict[str, str]:
    """`ansible all ARGS -o` through the project's inventory -> {host: one-line result}."""
    proc = vlab.run(name, [tool("ansible"), "all", "-o", *args], timeout=300)
    assert proc.returncode == 0, _tail(proc.stdout)
    out = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+) \| (SUCCESS|CHANGED)\b(.*)$", line)
        if m:
            out[m.group(1)] = m.group(3)
    return out


@_vm
def test_vagrant_up_boots_and_provisions_every_machine(vlab, up_ok):
    upped = up_ok
    names = vlab.lab.names
    info = vlab.libvirt_state()
    assert sorted(vlab.domains(info["domain_prefix"])) == sorted(info["domain_prefix"] + n for n in names)
    running = _virsh("list", "--name").split()
    assert all(info["domain_prefix"] + n in running for n in names)
    # TCG here (nested KVM hangs), KVM where the probe found it usable.
    for n in names:
        xml = _virsh("dumpxml", info["domain_prefix"] + n)
        assert re.search(r"<domain type='(qemu|kvm)'", xml)
        assert "<interface type='network'" not in xml and "<interface type='bridge'" not in xml
    # The Ansible provisioner ran once, for every machine, without a failure.
    recap = _recap(upped.stdout)
    assert set(recap) == set(names), _tail(upped.stdout)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    # No libvirt network was started, libvirt's 'default' above all; no bridge was made.
    assert _virsh("net-list", "--name").split() == []
    assert not [p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("virbr")]
    # The module is built and loaded on every machine.
    out = _adhoc(vlab, "pfprof check", ["-m", "ansible.builtin.shell", "-a",
                                         "grep -c '^pfprof ' /proc/modules; test -r /proc/pfprof/status "
                                         "&& head -1 /proc/pfprof/status >/dev/null && echo loaded"])
    assert set(out) == set(names), out
    for host, line in out.items():
        assert "rc=0" in line and "loaded" in line and "(stdout) 1" in line, (host, line)


@_vm
def test_ssh_config_is_loopback_on_the_ports_chosen_for_this_run(vlab, up_ok):
    proc = vlab.run("vagrant ssh-config", ["vagrant", "ssh-config"], timeout=120)
    assert proc.returncode == 0, proc.stdout
    hosts = {}
    for block in re.split(r"(?m)^Host ", proc.stdout)[1:]:
        name, _, body = block.partition("\n")
        hosts[name.strip()] = dict(re.findall(r"(?m)^\s+(\w+) (.+)$", body))
    ports = vlab.ports()
    assert set(hosts) == set(vlab.lab.names) == set(ports)
    assert len(set(ports.values())) == len(ports)
    for name, conf in hosts.items():
        assert conf["HostName"] == "127.0.0.1"
        assert int(conf["Port"]) == ports[name] and ports[name] != 2222
        assert conf["User"] == "root"
        assert Path(conf["IdentityFile"].strip('"')) == vlab.state / "id_ed25519"
        # QEMU's forward listens on loopback only.
        assert _listening(ports[name]) == ["0100007F"], (name, _listening(ports[name]))


@_vm
def test_inventory_reaches_every_machine_through_vagrant(vlab, up_ok):
    out = _adhoc(vlab, "ansible ping", ["-m", "ansible.builtin.ping"])
    assert set(out) == set(vlab.lab.names), out
    assert all('"pong"' in line for line in out.values()), out
    inv = vlab.run("ansible-inventory", [tool("ansible-inventory"), "--list"], timeout=120)
    hostvars = json.loads(inv.stdout[inv.stdout.index("{"):])["_meta"]["hostvars"]
    for m in vlab.lab.machines:
        # ansible-inventory marks strings {"__ansible_unsafe": value}
        hv = {k: v.get("__ansible_unsafe", v) if isinstance(v, dict) else v
              for k, v in hostvars[m.name].items()}
        assert hv["thrashlab_backend"] == "vagrant"
        assert hv["ansible_port"] == vlab.ports()[m.name]
        assert hv["memory_mb"] == m.memory_mb
        # Host keys are verified against the ones pinned after `vagrant up`.
        assert str(vlab.state / "known_hosts") in hv["ansible_ssh_common_args"]


@_vm
def test_run_case1_tiny_on_the_vagrant_machines(vlab, up_ok):
    if not (REPO / "run-case1.yml").exists():
        pytest.skip("run-case1.yml is not there yet")
    run_id = "vagrant-case1"
    proc = vlab.run("run-case1.yml", [tool("ansible-playbook"), "run-case1.yml",
                                      "-e", f"thrashlab_run_id={run_id}", *CASE1_TINY], timeout=900)
    assert proc.returncode == 0, _tail(proc.stdout)
    results = Path(vlab.env["THRASHLAB_RESULTS_DIR"]) / run_id
    for name in vlab.lab.names:
        for pair in ("pair-A", "pair-B"):
            run = results / name / "case1" / pair / "run.json"
            assert run.is_file(), f"{run} missing; {sorted(p.name for p in results.glob('*'))}"


@_vm
def test_destroy_leaves_no_vm_pool_port_or_daemon(vlab, up_ok, daemons):
    info = vlab.libvirt_state()
    ports = vlab.ports()
    assert ports
    proc = vlab.run("vagrant destroy", ["vagrant", "destroy", "-f"], timeout=300)
    assert proc.returncode == 0, _tail(proc.stdout)
    assert "cleaning up after" not in proc.stdout, _tail(proc.stdout)
    # No VM: not in libvirt, no QEMU process of ours.
    assert vlab.domains(info["domain_prefix"]) == []
    if not daemons.reused:
        assert _virsh("list", "--all", "--name").split() == []
    assert _processes_naming(info["domain_prefix"]) == []
    # No pool, no disk, no staged kernel.
    assert info["pool"] not in _virsh("pool-list", "--all", "--name").split()
    assert not Path(info["work_dir"]).exists()
    assert not Path(info["work_dir"]).parent.exists() or any(Path(info["work_dir"]).parent.iterdir())
    # No forwarded port, and none reserved any more.
    for name, port in ports.items():
        assert _listening(port) == [], (name, port)
    assert vlab.ports() == {}
    assert not (vlab.state / "libvirt.json").exists()
    assert (vlab.state / "known_hosts").read_text().strip() == ""
    # libvirt's 'default' network was never started.
    assert _virsh("net-list", "--name").split() == []
    # No daemon: the ones started here stop by PID.
    daemons.stop()
    assert daemons.left() == []


# ---- static checks (no VM, no libvirt) ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (./test.sh installs it)")
@pytest.mark.parametrize("loopback", ["0", "1"])
def test_vagrantfile_validates_with_and_without_the_layer(tmp_path, loopback):
    env = {**_base_env(), "THRASHLAB_VAGRANT_LOOPBACK": loopback, "THRASHLAB_STATE_DIR": str(tmp_path / "state"),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "VAGRANT_HOME": str(tmp_path / "home")}
    # The provider's own checks need a running libvirtd (the layer's NIC is checked against
    # the host's interfaces through it): Vagrant's and the layer's settings only.
    proc = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The layer makes this checkout's own key; without it nothing is made.
    assert (tmp_path / "state" / "vagrant" / "id_ed25519").exists() == (loopback == "1")


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (./test.sh installs it)")
def test_layer_refuses_up_without_a_box_and_names_the_command(tmp_path):
    env = {**_base_env(), "THRASHLAB_VAGRANT_LOOPBACK": "1", "THRASHLAB_STATE_DIR": str(tmp_path / "state"),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "VAGRANT_HOME": str(tmp_path / "home"),
           "THRASHLAB_VAGRANT_LIBVIRT_DIR": str(tmp_path / "libvirt")}
    proc = subprocess.run(["vagrant", "up", "--no-provision"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert "python -m localvm box" in proc.stdout + proc.stderr
    assert not (tmp_path / "libvirt").exists()  # nothing made in libvirt's name


def test_box_packs_disk_metadata_kernel_and_initrd(tmp_path):
    import tarfile

    from localvm import box as boxmod
    from localvm.image import Image

    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    img = Image(tmp_path / "image")
    img.dir.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img.disk), "3G"], check=True)
    img.kernel.write_bytes(b"kernel")
    img.initrd.write_bytes(b"initrd")
    img.info_path.write_text(json.dumps({"key": "0123456789abcdef", "kernel_release": "6.1.0-test"}))
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "test.box"
    boxmod._pack(img, out, work)
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == sorted(["box.img", "metadata.json", "vmlinuz", "initrd.img",
                                                 "thrashlab-box.json"])
        meta = json.loads(tar.extractfile("metadata.json").read())
        info = json.loads(tar.extractfile("thrashlab-box.json").read())
    assert meta == {"provider": "libvirt", "format": "qcow2", "virtual_size": 3}
    assert info["image_key"] == "0123456789abcdef" and info["format"] == boxmod.BOX_FORMAT
    assert "root=/dev/vda" in info["cmdline"]
    assert boxmod.box_name("0123456789abcdef") == "thrashlab/bookworm-0123456789abcdef"
    assert boxmod.box_dir("thrashlab/bookworm-x", tmp_path).parts[-4:] == (
        "boxes", "thrashlab-VAGRANTSLASH-bookworm-x", "0", "libvirt")
