"""localvm without VMs: apt sources, image cache key, QEMU command line, state handling."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localvm import image as image_mod
from localvm import qemu
from localvm.testbed import Testbed
from thrashlab import aptsources
from thrashlab.lab import load_lab

REPO = Path(__file__).resolve().parent.parent


def make_apt_dir(tmp_path: Path, sources: dict[str, str]) -> Path:
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    for name, text in sources.items():
        (d / name).write_text(text)
    return d


def test_deb822_sources_give_the_archive_not_security(tmp_path):
    apt = make_apt_dir(tmp_path, {"sources.list.d/debian.sources": """\
Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""})
    assert aptsources.debian_archive_uri(apt) == "http://mirror.example/debian"
    assert aptsources.sources_for_suite("sid", apt) == "deb http://mirror.example/debian sid main\n"


def test_one_line_sources_with_options(tmp_path):
    apt = make_apt_dir(tmp_path, {"sources.list": """\
# comment
deb [arch=amd64 signed-by=/k.gpg] http://local.mirror/debian bookworm main # trailing
deb http://other/ubuntu jammy main
"""})
    assert aptsources.debian_archive_uri(apt) == "http://local.mirror/debian"


def test_no_debian_archive_is_a_clear_error(tmp_path):
    apt = make_apt_dir(tmp_path, {"sources.list": "deb http://x/ubuntu jammy main\n"})
    with pytest.raises(aptsources.AptSourcesError, match="no Debian archive"):
        aptsources.debian_archive_uri(apt)


def test_image_key_follows_its_inputs(monkeypatch):
    inputs = image_mod.image_inputs()
    key = image_mod.image_key(inputs)
    assert key == image_mod.image_key(dict(inputs))
    changed = dict(inputs, packages=inputs["packages"] + ["linux-perf"])
    assert image_mod.image_key(changed) != key
    changed = dict(inputs, guest_files={**inputs["guest_files"], "customize.sh": "0" * 64})
    assert image_mod.image_key(changed) != key


def test_vm_command_is_loopback_only_and_names_its_state(tmp_path):
    cmd = qemu.vm_command(name="small", lab_name="t", accel="tcg", memory_mb=256, cpus=1,
                          disk=tmp_path / "d.qcow2", kernel=tmp_path / "k", initrd=tmp_path / "i",
                          ssh_port=40000, vm_dir=tmp_path, authorized_keys=tmp_path / "a",
                          host_key=tmp_path / "h")
    joined = " ".join(cmd)
    assert "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40000-:22" in joined
    assert "-m 256" in joined and "-smp 1" in joined and "-accel tcg" in joined
    assert "tap" not in joined and "bridge" not in joined
    assert str(tmp_path) in joined  # how `down` recognises its own processes
    kvm = qemu.vm_command(name="small", lab_name="t", accel="kvm", memory_mb=256, cpus=2,
                          disk=tmp_path / "d", kernel=tmp_path / "k", initrd=tmp_path / "i",
                          ssh_port=1, vm_dir=tmp_path, authorized_keys=tmp_path / "a",
                          host_key=tmp_path / "h")
    assert "kvm" in kvm


def test_forced_accelerator(monkeypatch, tmp_path):
    monkeypatch.setenv("THRASHLAB_ACCEL", "tcg")
    assert qemu.choose_accelerator(tmp_path / "vmlinuz", say=lambda *_: None) == "tcg"
    monkeypatch.setenv("THRASHLAB_ACCEL", "xen")
    with pytest.raises(RuntimeError, match="expected kvm, tcg or auto"):
        qemu.choose_accelerator(tmp_path / "vmlinuz", say=lambda *_: None)


def test_down_of_a_crashed_testbed_cleans_stale_state(tmp_path, monkeypatch):
    monkeypatch.setenv("THRASHLAB_STATE_DIR", str(tmp_path / "state"))
    lab = load_lab(REPO / "lab.yml")
    bed = Testbed(lab)
    vdir = bed.vm_dir("small")
    vdir.mkdir(parents=True)
    # A PID file left by a crash, naming a process that is not ours (this test's own PID 1 or parent).
    (vdir / "qemu.pid").write_text("1\n")
    (vdir / "disk.qcow2").write_text("x")
    bed.state_file.write_text('{"machines": {"small": {"port": 1}}}')
    assert [s.state for s in bed.status()] == ["dead", "stopped"]
    bed.down(quiet=True)
    assert not (vdir / "qemu.pid").exists() and not (vdir / "disk.qcow2").exists()
    assert not bed.state_file.exists()
    assert [s.state for s in bed.status()] == ["stopped", "stopped"]


def test_ssh_to_a_stopped_machine_says_so(tmp_path):
    env = {"THRASHLAB_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "localvm", "ssh", "small", "true"], cwd=REPO,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "small is not running; run `python -m localvm up` first" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "localvm", "ssh", "nosuch"], cwd=REPO,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "no machine named 'nosuch'" in proc.stderr


def test_a_lab_is_checked_against_the_host():
    from localvm.testbed import lab_fit
    lab = load_lab(REPO / "labs" / "course.yml")  # one machine, 320 MiB, 2 vCPUs
    ok = lab_fit(lab, host_cpus=2, host_available=4096)
    assert ok["error"] is None and ok["warning"] is None
    assert ok["host"]["vcpus"] == 2 and ok["host"]["vcpus_over_cores"] is False
    crowded = lab_fit(lab, host_cpus=1, host_available=4096)
    assert crowded["error"] is None and "2 vCPUs outnumber the host's 1 cores" in crowded["warning"]
    assert crowded["host"]["vcpus_over_cores"] is True
    small = lab_fit(lab, host_cpus=2, host_available=300)  # 320 MiB + QEMU's own
    assert "needs about 470 MiB of host memory" in small["error"] and "300 MiB" in small["error"]
    assert lab_fit(lab, host_cpus=2, host_available=None)["error"] is None  # no /proc/meminfo: no verdict


# --- vCPU placement ------------------------------------------------------------------

def test_placement_gives_each_vcpu_a_core_of_its_own_when_the_lab_fits(monkeypatch):
    from localvm import placement
    monkeypatch.delenv(placement.PIN_ENV, raising=False)
    assignment, reason = placement.plan({"small": 1, "large": 1, "sid": 2}, [0, 1, 2, 3])
    assert assignment == {"small": [0], "large": [1], "sid": [2, 3]} and reason.startswith("pinned")
    assignment, reason = placement.plan({"a": 1, "b": 2}, [0, 1])
    assert assignment is None and "3 vCPUs outnumber the host's 2 cores" in reason
    monkeypatch.setenv(placement.PIN_ENV, "0")
    assert placement.plan({"a": 1}, [0, 1]) == (None, f"not pinned: {placement.PIN_ENV}=0")


def test_vcpu_threads_are_pinned_in_a_real_qemu(tmp_path):
    """A paused QEMU (no guest) with 2 vCPU threads: QMP names the threads, each
    is pinned to the core planned for it, and the host's scheduler says so."""
    import os
    import time

    from localvm import placement
    from localvm.qmp import quit_vm, vcpu_threads
    cores = placement.host_cores()
    if len(cores) < 2:
        pytest.skip("needs a host with 2 cores")
    sock = tmp_path / "qmp.sock"
    proc = subprocess.Popen([qemu.qemu_binary(), "-accel", "tcg,thread=multi", "-machine", "pc", "-smp", "2",
                             "-m", "64", "-nodefaults", "-display", "none", "-S",
                             "-qmp", f"unix:{sock},server=on,wait=off"])
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        threads = vcpu_threads(sock)
        assert len(threads) == 2 and all(os.path.exists(f"/proc/{proc.pid}/task/{t}") for t in threads)
        placed = placement.pin(sock, [cores[1], cores[0]])
        assert [p["cores"] for p in placed] == [[cores[1]], [cores[0]]]
        assert [sorted(os.sched_getaffinity(t)) for t in threads] == [[cores[1]], [cores[0]]]
        quit_vm(sock)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
