"""End to end on real VMs: the local testbed, the inventory and the setup role.

One testbed is booted per session (tests/conftest.py) and shared by every VM
test; the test that stops it runs last.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import run, tool

pytestmark = pytest.mark.vm


def test_each_vm_has_the_lab_resources(testbed):
    for m in testbed.lab.machines:
        out = testbed.ssh(m.name, "hostname; nproc; grep MemTotal /proc/meminfo; uname -r").stdout.split("\n")
        assert out[0] == m.name
        assert int(out[1]) == m.cpus
        mem_total_mb = int(out[2].split()[1]) / 1024
        # MemTotal is RAM minus what the kernel reserves for itself (~20-50 MiB here).
        assert m.memory_mb * 0.7 < mem_total_mb <= m.memory_mb, out
    assert testbed.state()["accelerator"] in ("kvm", "tcg")


def test_vcpus_run_where_the_placement_says(testbed):
    """Each vCPU thread of a lab that fits the host's cores has a core of its
    own, as the kernel's affinity of the QEMU threads says (not the state
    file); a lab that does not fit is not pinned, and says why."""
    import os
    placement = testbed.state()["placement"]
    vcpus = sum(m.cpus for m in testbed.lab.machines)
    assert placement["pinned"] == (vcpus <= len(os.sched_getaffinity(0))), placement
    if not placement["pinned"]:
        assert "not pinned" in placement["reason"] and not placement["machines"]
        return
    used = []
    for m in testbed.lab.machines:
        qemu_pid = testbed.state()["machines"][m.name]["pid"]
        entries = placement["machines"][m.name]
        assert [e["vcpu"] for e in entries] == list(range(m.cpus))
        for e in entries:
            assert os.path.exists(f"/proc/{qemu_pid}/task/{e['thread']}")  # a thread of that VM's QEMU
            assert sorted(os.sched_getaffinity(e["thread"])) == e["cores"] and len(e["cores"]) == 1
            used += e["cores"]
    assert len(used) == len(set(used)) == vcpus


def test_only_loopback_ssh_is_forwarded(testbed):
    state = testbed.state()
    for name, vm in state["machines"].items():
        assert vm["host"] == "127.0.0.1"
        cmdline = open(f"/proc/{vm['pid']}/cmdline").read()
        assert f"hostfwd=tcp:127.0.0.1:{vm['port']}-:22" in cmdline
        assert "restrict=on" in cmdline
        assert "tap" not in cmdline.split("\0") and "bridge" not in cmdline


def test_host_keys_are_pinned_and_enforced(testbed, tmp_path):
    pinned = testbed.known_hosts.read_text().splitlines()
    assert len(pinned) == len(testbed.names)
    name = testbed.names[0]
    port = testbed.state()["machines"][name]["port"]
    # The same VM presented with another key must be refused, not accepted.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {other[0]} {other[1]}\n")
    proc = subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(testbed.key), "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "root@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Host key verification failed" in proc.stderr or "IDENTIFICATION HAS CHANGED" in proc.stderr


def test_inventory_reaches_every_machine_with_its_sizes(testbed, lab_env):
    inv = run([tool("ansible-inventory"), "--list"], env=lab_env)
    assert inv.returncode == 0, inv.stderr
    hostvars = json.loads(inv.stdout)["_meta"]["hostvars"]
    for m in testbed.lab.machines:
        hv = hostvars[m.name]
        assert (hv["memory_mb"], hv["swap_mb"], hv["cpus"]) == (m.memory_mb, m.swap_mb, m.cpus)
        assert hv["ansible_port"] == testbed.state()["machines"][m.name]["port"]
    ping = run([tool("ansible"), "all", "-m", "ansible.builtin.ping"], env=lab_env)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    for name in testbed.names:
        assert re.search(rf"^{name} \| SUCCESS", ping.stdout, re.M), ping.stdout


def _recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    for line in output.split("PLAY RECAP", 1)[1].splitlines():
        m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return recap


def test_setup_role_builds_and_loads_pfprof_and_is_idempotent(provisioned, lab_env):
    first = _recap(provisioned.setup_output)
    assert set(first) == set(provisioned.names)
    for m in provisioned.lab.machines:
        out = provisioned.ssh(m.name, "grep -c '^pfprof ' /proc/modules; test -e /proc/pfprof/status && "
                              "test -c /dev/pfprof && echo ok; swapon --show=SIZE --bytes --noheadings")
        lines = out.stdout.split()
        assert lines[:2] == ["1", "ok"], out.stdout
        swap_bytes = sum(int(x) for x in lines[2:])
        assert abs(swap_bytes - m.swap_mb * 1024 * 1024) <= 1024 * 1024, (m.name, swap_bytes)
    again = provisioned.setup_again_output  # the second run, right after the first
    recap = _recap(again)
    for name in provisioned.names:
        assert recap[name]["changed"] == 0, again[-4000:]
        assert recap[name]["failed"] == 0 and recap[name]["unreachable"] == 0


@pytest.mark.teardown_last
def test_down_stops_everything_and_is_idempotent(testbed):
    testbed.down()
    assert testbed.stray_pids() == []
    assert all(s.state == "stopped" for s in testbed.status())
    assert not testbed.state_file.exists()
    testbed.down()  # a second down finds nothing and succeeds
    assert testbed.stray_pids() == []
