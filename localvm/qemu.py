"""QEMU for the local testbed: the accelerator probe and the command line.

KVM is used only when it really works: /dev/kvm can exist and answer ioctls
while a guest under it hangs before printing anything (nested virtualization
on these build machines). So the probe boots the image's kernel for a few
seconds and looks for its first console line; the verdict is cached per host
boot. ``THRASHLAB_ACCEL=kvm|tcg`` overrides it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from thrashlab.paths import state_root

QEMU = "qemu-system-x86_64"
ACCEL_ENV = "THRASHLAB_ACCEL"
PROBE_SECONDS = 20


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if not path:
        raise RuntimeError(f"{QEMU} not found: install the Debian package qemu-system-x86")
    return path


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _kvm_boots(kernel: Path) -> tuple[bool, str]:
    """Boot ``kernel`` under KVM for a moment: did it print its banner?"""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="thrashlab-kvm-probe-") as tmp:
        serial = Path(tmp) / "serial.log"
        cmd = [qemu_binary(), "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults",
               "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
               "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1 earlyprintk=ttyS0"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + PROBE_SECONDS
        try:
            while time.monotonic() < deadline:
                if serial.exists() and b"Linux version" in serial.read_bytes():
                    return True, "a probe guest booted under KVM"
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
                    return False, "QEMU with KVM exited: " + (err[-1] if err else f"status {proc.returncode}")
                time.sleep(0.2)
            return False, f"a probe guest under KVM printed nothing in {PROBE_SECONDS}s"
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()


def choose_accelerator(kernel: Path, say=print) -> str:
    forced = os.environ.get(ACCEL_ENV, "").strip().lower()
    if forced in ("kvm", "tcg"):
        say(f"accelerator: {forced} (forced by {ACCEL_ENV})")
        return forced
    if forced not in ("", "auto"):
        raise RuntimeError(f"{ACCEL_ENV}={forced!r}: expected kvm, tcg or auto")
    cache = state_root() / "accel-probe.json"
    boot_id = _boot_id()
    try:
        cached = json.loads(cache.read_text())
        if cached.get("boot_id") == boot_id:
            say(f"accelerator: {cached['accel']} ({cached['reason']}; probed earlier this host boot)")
            return cached["accel"]
    except (OSError, ValueError, KeyError):
        pass
    say("accelerator: probing KVM by booting the kernel for a moment")
    works, reason = _kvm_boots(kernel)
    accel = "kvm" if works else "tcg"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"boot_id": boot_id, "accel": accel, "reason": reason}) + "\n")
    say(f"accelerator: {accel} ({reason})")
    return accel


def vm_command(*, name: str, lab_name: str, accel: str, memory_mb: int, cpus: int,
               disk: Path, kernel: Path, initrd: Path, ssh_port: int, vm_dir: Path,
               authorized_keys: Path, host_key: Path) -> list[str]:
    """The QEMU command line of one testbed VM (daemonized, pidfile in vm_dir)."""
    accel_args = (["-accel", "kvm", "-cpu", "host"] if accel == "kvm"
                  else ["-accel", "tcg,thread=multi" if cpus > 1 else "tcg"])
    return [
        qemu_binary(), "-name", f"thrashlab-{lab_name}-{name},process=thrashlab-{lab_name}-{name}",
        *accel_args, "-machine", "pc", "-m", str(memory_mb), "-smp", str(cpus),
        "-nodefaults", "-display", "none", "-no-reboot",
        "-serial", f"file:{vm_dir / 'serial.log'}",
        "-qmp", f"unix:{vm_dir / 'qmp.sock'},server=on,wait=off",
        "-pidfile", str(vm_dir / "qemu.pid"), "-daemonize",
        "-drive", f"file={disk},if=virtio,format=qcow2,cache=writeback",
        # Guest off every network: SLIRP, restricted, with only SSH forwarded on loopback.
        "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=1",
        "-fw_cfg", f"name=opt/thrashlab/hostname,string={name}",
        "-fw_cfg", f"name=opt/thrashlab/authorized_keys,file={authorized_keys}",
        "-fw_cfg", f"name=opt/thrashlab/ssh_host_ed25519_key,file={host_key}",
    ]
