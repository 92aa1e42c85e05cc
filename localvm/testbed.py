"""The local testbed: one QEMU VM per machine of the lab file.

State lives in ``<state>/testbeds/<lab name>/`` (see thrashlab.paths):

    id_ed25519, id_ed25519.pub   the testbed's SSH key (root's authorized key)
    known_hosts                  each guest's host key, pinned before it boots
    ssh_config                   for `ssh -F` (localvm ssh, tests)
    testbed.json                 what is running: ports, PIDs, accelerator
    machines/<name>/             overlay disk, host key, serial log, QMP socket, PID

Each VM is a copy-on-write overlay on the cached base image, booted directly
from the image's kernel, on QEMU user-mode networking with only SSH forwarded
to 127.0.0.1. A VM is ours only if its command line names this state
directory: `down` never touches another process.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from thrashlab import host as host_info
from thrashlab.lab import Lab, Machine
from thrashlab.paths import testbed_dir
from thrashlab.progress import Progress, format_duration

from . import placement, qemu
from .image import Image, build_image
from .qmp import QMPError, quit_vm

BOOT_TIMEOUT_S = 420  # a cold TCG boot of two VMs on two cores takes ~30-60 s
SERIAL_TAIL_LINES = 40


def host_available_mb() -> int | None:
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return int(meminfo["MemAvailable"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return None


def lab_fit(lab, host_cpus: int, host_available: int | None) -> dict:
    """Whether the lab's VMs fit the host: {"error", "warning", "host"}.
    Each VM needs its RAM and about 150 MiB for QEMU itself."""
    vcpus = sum(m.cpus for m in lab.machines)
    need = sum(m.memory_mb for m in lab.machines) + 150 * len(lab.machines)
    load = (host_info.load_averages() or [None])[0]
    host = {"cpus": host_cpus, "loadavg_1m": load, "available_mb": host_available,
            "vcpus": vcpus, "vcpus_over_cores": vcpus > host_cpus}
    error = warning = None
    if host_available is not None and need > host_available:
        error = (f"the lab needs about {need} MiB of host memory ({len(lab.machines)} VMs) "
                 f"but only {host_available} MiB are available")
    elif vcpus > host_cpus:
        warning = (f"the lab's {vcpus} vCPUs outnumber the host's {host_cpus} cores: the VMs share "
                   f"cores, so ticks and throughputs are slower and noisier than on a lab that fits")
    return {"error": error, "warning": warning, "host": host}


class TestbedError(RuntimeError):
    __test__ = False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped by a parent that
    may never reap it, e.g. in a container without an init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class VMStatus:
    name: str
    state: str  # running | stopped | dead (pid file left by a crash)
    pid: int | None
    port: int | None
    memory_mb: int
    cpus: int


class Testbed:
    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, lab: Lab, progress: Progress | None = None):
        self.lab = lab
        self.dir = testbed_dir(lab.name)
        self.progress = progress or Progress()
        self.key = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.ssh_config = self.dir / "ssh_config"
        self.state_file = self.dir / "testbed.json"

    # ------------------------------------------------------------ state
    @property
    def names(self) -> list[str]:
        return self.lab.names

    def vm_dir(self, name: str) -> Path:
        return self.dir / "machines" / name

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise TestbedError(f"{self.state_file}: corrupt testbed state ({e}); "
                               "run `python -m localvm down` to clean it") from None

    def _write_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def our_pid(self, name: str) -> int | None:
        """The PID of this testbed's QEMU for ``name``, if it is alive and really ours."""
        pid = _read_pid(self.vm_dir(name) / "qemu.pid")
        if pid and _pid_alive(pid) and str(self.vm_dir(name)) in _cmdline(pid):
            return pid
        return None

    def stray_pids(self) -> list[int]:
        """Every live process whose command line names this testbed's state dir."""
        marker = str(self.dir) + "/"
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                cmd = _cmdline(int(entry.name))
                if marker in cmd and "qemu-system" in cmd:
                    found.append(int(entry.name))
        return found

    def status(self) -> list[VMStatus]:
        state = self.state().get("machines", {})
        out = []
        for m in self.lab.machines:
            pid = self.our_pid(m.name)
            pidfile_left = (self.vm_dir(m.name) / "qemu.pid").exists()
            port = state.get(m.name, {}).get("port")
            st = "running" if pid else ("dead" if pidfile_left else "stopped")
            out.append(VMStatus(m.name, st, pid, port if pid else None, m.memory_mb, m.cpus))
        return out

    # ------------------------------------------------------------ keys
    def _ensure_keys(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                            f"thrashlab-{self.lab.name}", "-f", str(self.key)], check=True)
        for m in self.lab.machines:
            vdir = self.vm_dir(m.name)
            vdir.mkdir(parents=True, exist_ok=True)
            hk = vdir / "ssh_host_ed25519_key"
            if not hk.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                f"root@{m.name}", "-f", str(hk)], check=True)

    def _write_client_files(self, ports: dict[str, int]) -> None:
        lines = []
        for name, port in ports.items():
            pub = (self.vm_dir(name) / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
        self.known_hosts.write_text("".join(lines))
        cfg = []
        for name, port in ports.items():
            cfg.append(
                f"Host {name}\n"
                f"  HostName 127.0.0.1\n  Port {port}\n  User root\n"
                f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
                f"  ControlMaster auto\n  ControlPath /tmp/thrashlab-%C\n  ControlPersist 120s\n"
                f"  ServerAliveInterval 15\n  ServerAliveCountMax 8\n  LogLevel ERROR\n\n")
        self.ssh_config.write_text("".join(cfg))

    # ------------------------------------------------------------ ssh
    def ssh_argv(self, name: str, command: str | None = None, multiplex: bool = True,
                 options: tuple[str, ...] = ()) -> list[str]:
        argv = ["ssh", "-F", str(self.ssh_config)]
        if not multiplex:
            argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        for option in options:
            argv += ["-o", option]
        argv.append(name)
        if command is not None:
            argv += ["--", command]
        return argv

    def ssh(self, name: str, command: str, timeout: float = 600, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``command`` (a shell string) as root on ``name``."""
        self.lab.machine(name)
        proc = subprocess.run(self.ssh_argv(name, command), input=input, text=True,
                              capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise TestbedError(f"{name}: `{command}` exited {proc.returncode}\n"
                               f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
        return proc

    def put(self, name: str, local: str | os.PathLike, remote: str) -> None:
        """Copy a file or directory tree to ``remote`` on ``name`` (over tar, one round trip)."""
        local = Path(local)
        parent, base = local.parent, local.name
        tar = subprocess.Popen(["tar", "-C", str(parent), "-cf", "-", base], stdout=subprocess.PIPE)
        remote_q = shlex.quote(remote)
        cmd = (f"rm -rf {remote_q} && mkdir -p {remote_q} && "
               f"tar -C {remote_q} -xf - --strip-components=1 --no-same-owner"
               if local.is_dir() else
               f"mkdir -p $(dirname {remote_q}) && tar -xOf - > {remote_q}")
        proc = subprocess.run(self.ssh_argv(name, cmd), stdin=tar.stdout, capture_output=True,
                              text=True, timeout=600)
        tar.wait()
        if proc.returncode != 0 or tar.returncode != 0:
            raise TestbedError(f"{name}: copying {local} to {remote} failed: {proc.stderr.strip()}")

    def _wait_for_ssh(self, name: str, deadline: float) -> None:
        started = time.monotonic()
        last_report = started
        while True:
            if not self.our_pid(name):
                raise TestbedError(f"{name}: QEMU exited while booting\n{self.serial_tail(name)}")
            probe = subprocess.run(
                self.ssh_argv(name, "true", multiplex=False, options=("ConnectTimeout=10", "BatchMode=yes")),
                capture_output=True, text=True, timeout=60)
            if probe.returncode == 0:
                self.progress.say(f"SSH answers after {format_duration(time.monotonic() - started)}", name)
                return
            if "Host key verification failed" in probe.stderr or "REMOTE HOST IDENTIFICATION" in probe.stderr:
                raise TestbedError(f"{name}: the guest's host key does not match the pinned one "
                                   f"in {self.known_hosts}: refusing to connect\n{probe.stderr}")
            now = time.monotonic()
            if now > deadline:
                raise TestbedError(f"{name}: no SSH after {format_duration(now - started)}\n"
                                   f"{self.serial_tail(name)}")
            if now - last_report >= 15:
                self.progress.say(f"waiting for SSH ({format_duration(now - started)})", name)
                last_report = now
            time.sleep(2)

    def serial_tail(self, name: str, lines: int = SERIAL_TAIL_LINES) -> str:
        log = self.vm_dir(name) / "serial.log"
        try:
            text = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no serial log at {log})"
        return f"last {len(text)} lines of {log}:\n" + "\n".join(text)

    # ------------------------------------------------------------ up / down
    def _check_host_fit(self) -> dict:
        """The lab against the host: too little memory is an error before any
        VM starts; more vCPUs than host cores a warning (the VMs then share
        cores, and ticks and throughputs degrade). What was found goes into
        the state (host cores, load, vCPUs)."""
        fit = lab_fit(self.lab, len(host_info.cores()), host_available_mb())
        if fit["error"]:
            raise TestbedError(fit["error"])
        if fit["warning"]:
            self.progress.say(f"warning: {fit['warning']}")
        return fit["host"]

    def _launch(self, m: Machine, image: Image, accel: str, keep_disk: bool = False) -> int:
        vdir = self.vm_dir(m.name)
        disk = vdir / "disk.qcow2"
        for stale in ("qemu.pid", "qmp.sock", "serial.log") + (() if keep_disk else ("disk.qcow2",)):
            (vdir / stale).unlink(missing_ok=True)
        if not keep_disk:
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk),
                            "-F", "qcow2", str(disk)], check=True)
        authorized = vdir / "authorized_keys"
        authorized.write_text(Path(str(self.key) + ".pub").read_text())
        last_error = ""
        for _attempt in range(5):
            port = _free_port()
            cmd = qemu.vm_command(name=m.name, lab_name=self.lab.name, accel=accel,
                                  memory_mb=m.memory_mb, cpus=m.cpus, disk=disk,
                                  kernel=image.kernel, initrd=image.initrd, ssh_port=port,
                                  vm_dir=vdir, authorized_keys=authorized,
                                  host_key=vdir / "ssh_host_ed25519_key")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                return port
            last_error = proc.stderr.strip()
            if "host forwarding" not in last_error and "Address already in use" not in last_error:
                break  # not a port collision: retrying will not help
        raise TestbedError(f"{m.name}: QEMU did not start: {last_error}")

    def images(self) -> dict[str, Image]:
        """The cached image of every suite the lab's machines run, built where missing."""
        return {suite: build_image(progress=self.progress, suite=suite) for suite in self.lab.suites}

    def up(self, images: dict[str, Image] | None = None) -> dict:
        statuses = self.status()
        if all(s.state == "running" for s in statuses) and self.state_file.exists():
            self.progress.say(f"testbed {self.lab.name}: already running "
                              f"({', '.join(s.name for s in statuses)})")
            deadline = time.monotonic() + BOOT_TIMEOUT_S
            for s in statuses:
                self._wait_for_ssh(s.name, deadline)
            return self.state()
        if any(s.state != "stopped" for s in statuses) or self.stray_pids():
            self.progress.say(f"testbed {self.lab.name}: cleaning up a partial or crashed testbed first")
            self.down(quiet=True)
        host = self._check_host_fit()
        images = images or self.images()
        first = images[self.lab.machines[0].suite]
        accel = qemu.choose_accelerator(first.kernel, say=self.progress.say)
        self._ensure_keys()
        ports: dict[str, int] = {}
        try:
            for m in self.lab.machines:
                self.progress.say(f"booting ({m.memory_mb} MiB, {m.cpus} vCPU, {m.suite}, {accel})", m.name)
                ports[m.name] = self._launch(m, images[m.suite], accel)
            self._write_client_files(ports)
            cores = placement.host_cores()
            assignment, reason = placement.plan({m.name: m.cpus for m in self.lab.machines}, cores)
            placed = {m.name: self._pin(m.name, assignment[m.name]) for m in self.lab.machines} if assignment else {}
            self.progress.say(f"vCPUs {reason}")
            state = {
                "lab": str(self.lab.path), "lab_name": self.lab.name, "accelerator": accel,
                "image": str(first.dir), "kernel_release": first.info().get("kernel_release"),
                "ssh_key": str(self.key), "known_hosts": str(self.known_hosts),
                "ssh_config": str(self.ssh_config), "host": host,
                "placement": {"pinned": bool(assignment), "reason": reason, "host_cores": cores,
                              "machines": placed},
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machines": {m.name: {"host": "127.0.0.1", "port": ports[m.name], "user": "root",
                                      "pid": self.our_pid(m.name), "memory_mb": m.memory_mb,
                                      "cpus": m.cpus, "swap_mb": m.swap_mb, "suite": m.suite,
                                      "image": str(images[m.suite].dir),
                                      "kernel_release": images[m.suite].info().get("kernel_release")}
                             for m in self.lab.machines},
            }
            self._write_state(state)
            deadline = time.monotonic() + BOOT_TIMEOUT_S
            errors: dict[str, Exception] = {}

            def wait(name: str) -> None:
                try:
                    self._wait_for_ssh(name, deadline)
                except Exception as e:  # collected and reported together below
                    errors[name] = e
            threads = [threading.Thread(target=wait, args=(n,)) for n in ports]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise TestbedError("\n\n".join(str(e) for e in errors.values()))
        except BaseException:
            self.progress.say(f"testbed {self.lab.name}: boot failed, stopping what was started")
            self.down(quiet=True)
            raise
        self.progress.say(f"testbed {self.lab.name}: {len(ports)} VM(s) up ({accel}); "
                          f"`python -m localvm ssh NAME` or ansible-playbook reach them")
        return state

    def reboot(self, name: str, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Reboot one running VM and keep its disk: what a real machine does on
        `reboot`, so that settings meant to survive one can be checked. (QEMU
        runs with -no-reboot, so that a guest panic stops it: the guest's
        reboot ends QEMU, and the VM is started again on the same overlay.)"""
        m = self.lab.machine(name)
        state = self.state()
        pid = self.our_pid(name)
        if not pid or name not in state.get("machines", {}):
            raise TestbedError(f"{name}: not running; run `python -m localvm up` first")
        self.progress.say("rebooting", name)
        subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", name], capture_output=True, timeout=10)
        self.ssh(name, "systemctl reboot", check=False, timeout=60)
        end = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.5)
        if _pid_alive(pid):
            raise TestbedError(f"{name}: did not go down within {format_duration(timeout)} after "
                               f"`systemctl reboot`\n{self.serial_tail(name)}")
        machine_state = state["machines"][name]
        image = Image(Path(machine_state.get("image") or state["image"]))
        machine_state["port"] = self._launch(m, image, state["accelerator"], keep_disk=True)
        machine_state["pid"] = self.our_pid(name)
        placed = state.get("placement", {}).get("machines", {})
        if name in placed:  # the same cores as before the reboot
            placed[name] = self._pin(name, [c for v in placed[name] for c in v["cores"]])
        self._write_client_files({n: ms["port"] for n, ms in state["machines"].items()})
        self._write_state(state)
        self._wait_for_ssh(name, time.monotonic() + timeout)

    def _pin(self, name: str, cores: list[int]) -> list[dict]:
        try:
            return placement.pin(self.vm_dir(name) / "qmp.sock", cores)
        except (OSError, ValueError, QMPError) as e:
            raise TestbedError(f"{name}: could not pin its vCPUs to cores {cores}: {e}") from None

    def _stop_pid(self, pid: int, qmp: Path | None) -> None:
        if qmp is not None and qmp.exists():
            quit_vm(qmp)  # a clean quit lets QEMU remove its pidfile
        for sig, wait_s in ((None, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if sig is not None and _pid_alive(pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + wait_s
            while time.monotonic() < end and _pid_alive(pid):
                time.sleep(0.1)
            if not _pid_alive(pid):
                return

    def down(self, quiet: bool = False) -> None:
        """Stop every VM of this testbed, verify none is left, remove run state. Idempotent."""
        stopped = []
        for m in self.lab.machines:
            if self.ssh_config.exists():  # end this testbed's SSH master connections
                subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", m.name],
                               capture_output=True, timeout=10)
            pid = self.our_pid(m.name)
            if pid:
                self._stop_pid(pid, self.vm_dir(m.name) / "qmp.sock")
                stopped.append(m.name)
        for pid in self.stray_pids():  # e.g. a VM of a machine since removed from the lab file
            self._stop_pid(pid, None)
        left = self.stray_pids()
        if left:
            raise TestbedError(f"testbed {self.lab.name}: QEMU processes still running: {left}")
        for m in self.lab.machines:
            for f in ("qemu.pid", "qmp.sock", "disk.qcow2"):
                (self.vm_dir(m.name) / f).unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        if not quiet or stopped:
            what = f"stopped {', '.join(stopped)}" if stopped else "nothing was running"
            self.progress.say(f"testbed {self.lab.name}: {what}; no VM of it is left")
