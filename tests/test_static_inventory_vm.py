"""Existing hosts behind a bastion, end to end: the session's test VMs
addressed as ordinary SSH machines in a static inventory (address, port,
user, key, known_hosts, memory_mb, swap_mb, cpus), the way
inventory/hosts.example.yml tells a user to describe real lab machines, and
`ansible-playbook -i that.yml run-case1.yml` through set-up, the sweep,
collection and `python -m analysis case1`, with no lab file and no testbed
state in the environment.

The machines are reachable only through a jump host (an sshd the test starts
on loopback): their inventory names (`<machine>.behind-bastion.invalid`)
resolve nowhere, and a ProxyCommand through the bastion (`ssh -W`) is the
only way to them, for Ansible and the collector alike; every host key,
the bastion's included, is checked against the inventory's known_hosts."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tool
from test_collector import Machine as LoopbackSshd

pytestmark = pytest.mark.vm

CASE1_TINY = ["-e", "case1_work_mb=8", "-e", "case1_iterations=2", "-e", "case1_timeout=90"]


def static_inventory(bed, path, bastion) -> None:
    """What a user writes for machines that already exist behind a jump host,
    from what the testbed knows."""
    state = bed.state()
    known = path.parent / "known_hosts"
    lines = [bastion.known_line]
    hosts = {}
    for m in bed.lab.machines:
        entry = state["machines"][m.name]
        name = f"{m.name}.behind-bastion.invalid"
        key = next(line.split()[1:3] for line in Path(state["known_hosts"]).read_text().splitlines()
                   if line.startswith(f"[{entry['host']}]:{entry['port']} "))
        lines.append(f"[{name}]:{entry['port']} {key[0]} {key[1]}\n")
        jump = (f"ssh -i {state['ssh_key']} -o IdentitiesOnly=yes -o UserKnownHostsFile={known} "
                f"-o StrictHostKeyChecking=yes -p {bastion.port} -W {entry['host']}:{entry['port']} root@127.0.0.1")
        hosts[m.name] = {"ansible_host": name, "ansible_port": entry["port"],
                         "ansible_user": entry["user"], "ansible_ssh_private_key_file": state["ssh_key"],
                         "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
                                                    f"-o IdentitiesOnly=yes -o 'ProxyCommand={jump}'",
                         "memory_mb": m.memory_mb, "swap_mb": m.swap_mb, "cpus": m.cpus}
    known.write_text("".join(lines))
    doc = {"lab": {"vars": {"lab_name": "static-vmtest", "thrashlab_backend": "static"}, "hosts": hosts}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    # inventory/group_vars applies to an inventory beside it (hosts.example.yml says so)
    (path.parent / "group_vars").symlink_to(REPO / "inventory" / "group_vars")


@pytest.fixture
def bastion(provisioned, tmp_path):
    """An sshd on loopback that lets the testbed's key in: the jump host."""
    sshd = LoopbackSshd(tmp_path, "bastion", Path(provisioned.state()["ssh_key"]))
    yield sshd
    sshd.kill()


def test_run_case1_on_a_static_inventory_of_existing_hosts_behind_a_bastion(provisioned, bastion, tmp_path):
    inventory = tmp_path / "inventory" / "hosts.yml"
    inventory.parent.mkdir()
    static_inventory(provisioned, inventory, bastion)
    # no way around the bastion: the machines' names resolve nowhere
    direct = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-p", "22",
                             f"root@{provisioned.names[0]}.behind-bastion.invalid", "true"],
                            capture_output=True, text=True, timeout=60)
    assert direct.returncode == 255 and "Could not resolve hostname" in direct.stderr, direct.stderr
    results = tmp_path / "results"
    # Nothing of the testbed or the lab file: only the inventory says where the machines are.
    env = {k: v for k, v in os.environ.items() if not k.startswith("THRASHLAB_")}
    env["THRASHLAB_RESULTS_DIR"] = str(results)
    run_id = time.strftime("%Y%m%d-%H%M%S-static", time.gmtime())
    p = subprocess.run([tool("ansible-playbook"), "-i", str(inventory), "run-case1.yml",
                        "-e", f"thrashlab_run_id={run_id}", *CASE1_TINY],
                       cwd=REPO, env=env, text=True, capture_output=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    names = provisioned.names
    for name in names:
        for pair in ("A", "B"):
            assert f"changed: [{name}] => (item=case1 pair {pair}" in p.stdout

    man = json.loads((results / run_id / "manifest.json").read_text())
    assert man["complete"] is True and sorted(man["machines"]) == sorted(names)
    assert man["lab"]["name"] == "static-vmtest" and man["lab"].get("path") is None
    for name in names:
        assert man["machines"][name]["status"] == "ok"
        assert man["connections"][name]["backend"] == "static"
        assert man["connections"][name]["address"] == f"{name}.behind-bastion.invalid"
        assert man["machines"][name]["facts"]["kernel"]  # read from the machine itself

    case1 = subprocess.run([tool("python"), "-m", "analysis", "case1", "--json", str(results / run_id)],
                           cwd=REPO, env=env, text=True, capture_output=True, timeout=300)
    assert case1.returncode == 0, case1.stderr
    rows = json.loads(case1.stdout)
    assert {r["machine"] for r in rows} == set(names)
    assert {r["pair"] for r in rows} == {"pair-A", "pair-B"}
    for r in rows:
        # the profile and the process's own getrusage agree, within the faults
        # before registration that only getrusage sees
        assert r["minflt_profile"] > 0 and r["minflt_profile"] <= r["minflt_work"], r
