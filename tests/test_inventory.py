"""The Ansible inventory (inventory_plugins/thrashlab.py), without VMs.

Each test runs the real ``ansible-inventory`` from the repository root (so
with the repository's ansible.cfg) on a lab file and a state directory of its
own (THRASHLAB_LAB, THRASHLAB_STATE_DIR, VAGRANT_DOTFILE_PATH), and never
touches the repository's own state.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def ansible_tool(name: str) -> str:
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install ansible-core)")
    return found


def unwrap(value):
    """ansible-inventory marks strings from inventory plugins as unsafe: {"__ansible_unsafe": "x"}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


class Env:
    """A lab file, a state directory and a Vagrant directory of the test's own."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.state = tmp / "state"
        self.vagrant_dir = tmp / "dot-vagrant"
        self.bin = tmp / "bin"
        self.lab = tmp / "lab.yml"
        self.vars = {
            "THRASHLAB_LAB": str(self.lab),
            "THRASHLAB_STATE_DIR": str(self.state),
            "VAGRANT_DOTFILE_PATH": str(self.vagrant_dir),
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
        }

    def write_lab(self, text: str) -> None:
        self.lab.write_text(textwrap.dedent(text))

    def write_testbed(self, lab_name: str, machines: dict, accelerator: str = "tcg") -> Path:
        bed = self.state / "testbeds" / lab_name
        bed.mkdir(parents=True, exist_ok=True)
        (bed / "id_ed25519").write_text("not a real key\n")
        (bed / "known_hosts").write_text("")
        (bed / "testbed.json").write_text(json.dumps({
            "lab": str(self.lab), "lab_name": lab_name, "accelerator": accelerator,
            "ssh_key": str(bed / "id_ed25519"), "known_hosts": str(bed / "known_hosts"),
            "machines": machines,
        }))
        return bed

    def fake_vagrant(self, ssh_config: str, rc: int = 0) -> None:
        """A `vagrant` on PATH that answers `vagrant ssh-config` with the given text."""
        self.bin.mkdir(exist_ok=True)
        script = self.bin / "vagrant"
        out = self.tmp / "ssh-config.txt"
        out.write_text(textwrap.dedent(ssh_config))
        script.write_text(f"#!/bin/sh\necho \"$@\" >> {self.tmp}/vagrant-calls\ncat {out}\nexit {rc}\n")
        script.chmod(0o755)
        self.vars["PATH"] = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"

    def vagrant_machine(self, name: str, provider: str = "libvirt") -> None:
        d = self.vagrant_dir / "machines" / name / provider
        d.mkdir(parents=True, exist_ok=True)
        (d / "id").write_text("0123-abcd")

    def inventory(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([ansible_tool("ansible-inventory"), *args], cwd=REPO, text=True,
                              capture_output=True, timeout=120, env={**os.environ, **self.vars})

    def listing(self, *args: str) -> tuple[dict, str]:
        proc = self.inventory("--list", *args)
        assert proc.returncode == 0, proc.stderr
        return unwrap(json.loads(proc.stdout)), proc.stderr


@pytest.fixture
def env(tmp_path) -> Env:
    e = Env(tmp_path)
    e.write_lab("""\
        name: invtest
        defaults:
          cpus: 2
          swap_mb: 384
        machines:
          - name: small
            memory_mb: 256
          - name: big
            memory_mb: 1024
            cpus: 4
            swap_mb: 0
        """)
    return e


def hosts_of(data: dict, group: str) -> set:
    return set(data.get(group, {}).get("hosts", []))


def test_local_testbed_gives_hosts_groups_and_ssh_settings(env):
    bed = env.write_testbed("invtest", {
        "small": {"host": "127.0.0.1", "port": 40123, "user": "root", "pid": os.getpid()},
        "big": {"host": "127.0.0.1", "port": 40124, "user": "root", "pid": os.getpid()},
    })
    data, stderr = env.listing()
    assert hosts_of(data, "lab") == {"small", "big"}
    assert hosts_of(data, "lab_invtest") == {"small", "big"}
    hv = data["_meta"]["hostvars"]

    assert {k: hv["small"][k] for k in ("memory_mb", "swap_mb", "cpus", "lab_name")} == \
        {"memory_mb": 256, "swap_mb": 384, "cpus": 2, "lab_name": "invtest"}
    assert {k: hv["big"][k] for k in ("memory_mb", "swap_mb", "cpus")} == {"memory_mb": 1024, "swap_mb": 0, "cpus": 4}

    small = hv["small"]
    assert small["ansible_host"] == "127.0.0.1"
    assert small["ansible_port"] == 40123 and hv["big"]["ansible_port"] == 40124
    assert small["ansible_user"] == "root"
    assert small["ansible_ssh_private_key_file"] == str(bed / "id_ed25519")
    assert small["thrashlab_backend"] == "localvm"
    assert small["thrashlab_accelerator"] == "tcg"
    assert small["thrashlab_lab_file"] == str(env.lab)
    args = small["ansible_ssh_common_args"].split()
    assert f"UserKnownHostsFile={bed / 'known_hosts'}" in args
    assert small["thrashlab_known_hosts"] == str(bed / "known_hosts")
    assert "StrictHostKeyChecking=yes" in args
    assert "IdentitiesOnly=yes" in args
    assert "StrictHostKeyChecking=no" not in small["ansible_ssh_common_args"]
    assert "no testbed" not in stderr and "not running" not in stderr


def test_group_vars_of_the_repository_apply(env):
    env.write_testbed("invtest", {"small": {"port": 1}, "big": {"port": 2}})
    data, _ = env.listing()
    small = data["_meta"]["hostvars"]["small"]
    assert small["thrashlab_remote_dir"] == "/opt/thrashlab"
    assert small["thrashlab_results_dir"] == "/var/lib/thrashlab/results"
    assert small["pfprof_interval_ms"] == 50 and small["pfprof_buffer_pages"] == 128


def test_no_testbed_lists_hosts_without_connection_and_warns(env):
    data, stderr = env.listing()
    assert hosts_of(data, "lab") == {"small", "big"}
    small = data["_meta"]["hostvars"]["small"]
    assert small["memory_mb"] == 256
    assert small["thrashlab_backend"] == "none"
    for key in ("ansible_host", "ansible_port", "ansible_ssh_common_args", "ansible_ssh_private_key_file"):
        assert key not in small
    flat = " ".join(stderr.split())
    assert "python -m localvm up" in flat and "vagrant up" in flat


def test_testbed_with_a_dead_vm_warns(env):
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid is now free
    env.write_testbed("invtest", {"small": {"port": 40123, "pid": os.getpid()},
                                  "big": {"port": 40124, "pid": dead.pid}})
    data, stderr = env.listing()
    assert data["_meta"]["hostvars"]["big"]["ansible_port"] == 40124
    flat = " ".join(stderr.split())
    assert f"big (pid {dead.pid})" in flat and "not running" in flat
    assert "small (pid" not in flat


def test_testbed_without_a_machine_of_the_lab_warns(env):
    env.write_testbed("invtest", {"small": {"host": "127.0.0.1", "port": 40123, "user": "root"}})
    data, stderr = env.listing()
    hv = data["_meta"]["hostvars"]
    assert hv["small"]["ansible_port"] == 40123
    assert "ansible_port" not in hv["big"]
    assert "big" in stderr and "localvm" in stderr


def test_corrupt_testbed_state_is_a_clear_error(env):
    bed = env.write_testbed("invtest", {})
    (bed / "testbed.json").write_text("{not json")
    proc = env.inventory("--list")
    assert proc.returncode != 0
    assert "testbed.json" in proc.stderr and "localvm" in proc.stderr


@pytest.mark.parametrize("lab_text, reason", [
    ("machines:\n  - name: tiny\n    memory_mb: 64\n", "at least 192"),
    ("machines:\n  - name: a\n    memory_mb: 256\n    colour: red\n", "unknown key"),
    ("machines:\n  - name: a\n    memory_mb: 256\n  - name: a\n    memory_mb: 512\n", "duplicate"),
    ("machines: [\n", "not valid YAML"),
])
def test_bad_lab_file_is_an_ansible_error_naming_the_file(env, lab_text, reason):
    env.write_lab(lab_text)
    proc = env.inventory("--list")
    assert proc.returncode != 0
    flat = " ".join(proc.stderr.split())
    assert str(env.lab) in flat
    assert reason in flat


def test_missing_lab_file_is_an_error(env):
    env.lab.unlink()
    proc = env.inventory("--list")
    assert proc.returncode != 0
    assert "lab file not found" in proc.stderr


def test_group_name_of_a_lab_with_a_dash(env):
    env.write_lab("name: my-lab\nmachines:\n  - name: only-one\n    memory_mb: 256\n")
    data, stderr = env.listing()
    assert hosts_of(data, "lab_my_lab") == {"only-one"}
    assert "Invalid characters" not in stderr


def test_lab_option_of_a_config_file_wins_and_is_relative_to_the_repository(env):
    config = env.tmp / "trio.thrashlab.yml"
    config.write_text("plugin: thrashlab\nlab: labs/trio.yml\n")
    data, _ = env.listing("-i", str(config))
    assert hosts_of(data, "lab") == {"m192", "m320", "m448"}
    assert hosts_of(data, "lab_trio") == {"m192", "m320", "m448"}
    assert data["_meta"]["hostvars"]["m320"]["memory_mb"] == 320


def test_compose_and_keyed_groups_are_supported(env):
    config = env.tmp / "c.thrashlab.yml"
    config.write_text(textwrap.dedent("""\
        plugin: thrashlab
        compose:
          ram_gib: memory_mb / 1024
        groups:
          roomy: memory_mb >= 1024
        """))
    data, _ = env.listing("-i", str(config))
    assert hosts_of(data, "roomy") == {"big"}
    assert data["_meta"]["hostvars"]["big"]["ram_gib"] == 1


VAGRANT_SSH_CONFIG = """\
    Host small
      HostName 127.0.0.1
      User vagrant
      Port 2222
      UserKnownHostsFile /dev/null
      StrictHostKeyChecking no
      PasswordAuthentication no
      IdentityFile "/home/u/thrashlab/.vagrant/machines/small/libvirt/private_key"
      IdentitiesOnly yes
      LogLevel FATAL

    Host big
      HostName 192.0.2.20
      User vagrant
      Port 22
      IdentityFile /home/u/thrashlab/.vagrant/machines/big/libvirt/private_key
    """


def pin_vagrant(env, lines):
    kh = env.state / "vagrant" / "known_hosts"
    kh.parent.mkdir(parents=True, exist_ok=True)
    kh.write_text("".join(line + "\n" for line in lines))
    return kh


def test_vagrant_machines_with_pinned_host_keys(env):
    env.vagrant_machine("small")
    env.vagrant_machine("big")
    env.fake_vagrant(VAGRANT_SSH_CONFIG)
    kh = pin_vagrant(env, ["[127.0.0.1]:2222 ssh-ed25519 AAAAC3Nza thrashlab-vagrant:small",
                           "192.0.2.20 ssh-ed25519 AAAAC3Nzb thrashlab-vagrant:big"])
    data, _ = env.listing()
    hv = data["_meta"]["hostvars"]
    small, big = hv["small"], hv["big"]
    assert (small["ansible_host"], small["ansible_port"], small["ansible_user"]) == ("127.0.0.1", 2222, "vagrant")
    assert (big["ansible_host"], big["ansible_port"]) == ("192.0.2.20", 22)
    assert small["ansible_ssh_private_key_file"] == "/home/u/thrashlab/.vagrant/machines/small/libvirt/private_key"
    assert small["ansible_become"] is True
    assert small["thrashlab_backend"] == "vagrant"
    args = small["ansible_ssh_common_args"]
    assert f"UserKnownHostsFile={kh}" in args and "StrictHostKeyChecking=yes" in args
    # one call for all machines
    calls = (env.tmp / "vagrant-calls").read_text().splitlines()
    assert calls == ["ssh-config small big"]


def test_vagrant_machines_without_pinned_keys_is_an_error_naming_the_fix(env):
    env.vagrant_machine("small")
    env.fake_vagrant(VAGRANT_SSH_CONFIG)
    proc = env.inventory("--list")
    assert proc.returncode != 0
    flat = " ".join(proc.stderr.split())
    assert "not pinned" in flat and "[127.0.0.1]:2222" in flat and "vagrant up" in flat


def test_local_testbed_wins_over_vagrant(env):
    env.vagrant_machine("small")
    env.fake_vagrant(VAGRANT_SSH_CONFIG)
    env.write_testbed("invtest", {"small": {"port": 40123}, "big": {"port": 40124}})
    data, _ = env.listing()
    assert data["_meta"]["hostvars"]["small"]["thrashlab_backend"] == "localvm"
    assert not (env.tmp / "vagrant-calls").exists()


def test_vagrant_failure_for_a_halted_machine_keeps_the_others(env):
    env.vagrant_machine("small")
    env.vagrant_machine("big")
    # the fake answers every call with an error: each machine is then asked alone, and fails
    env.fake_vagrant("", rc=1)
    pin_vagrant(env, [])
    data, stderr = env.listing()
    assert "ansible_host" not in data["_meta"]["hostvars"]["small"]
    assert "vagrant ssh-config small" in stderr
    calls = (env.tmp / "vagrant-calls").read_text().splitlines()
    assert calls == ["ssh-config small big", "ssh-config small", "ssh-config big"]


def test_static_example_inventory_parses(env):
    data, _ = env.listing("-i", str(REPO / "inventory" / "hosts.example.yml"))
    assert hosts_of(data, "lab") == {"ram1g", "ram2g"}
    ram1g = data["_meta"]["hostvars"]["ram1g"]
    assert (ram1g["memory_mb"], ram1g["swap_mb"], ram1g["cpus"]) == (1024, 2048, 2)
    assert ram1g["ansible_host"] == "192.0.2.11"
    assert ram1g["thrashlab_remote_dir"] == "/opt/thrashlab"  # group_vars beside it apply


def test_inventory_directory_ignores_the_example(env):
    """`-i inventory/` must not pick up the example's made-up hosts."""
    env.write_testbed("invtest", {"small": {"port": 1}, "big": {"port": 2}})
    data, _ = env.listing("-i", str(REPO / "inventory"))
    assert hosts_of(data, "lab") == {"small", "big"}


def test_vagrant_generated_inventory_gets_the_project_group_vars(env):
    """What `vagrant up` hands the Ansible provisioner: an INI file in
    .vagrant/provisioners/ansible/inventory/, where the Vagrantfile links
    inventory/group_vars (its thrashlab_link_group_vars, run here by Ruby)."""
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby is not installed (it comes with vagrant)")
    source = (REPO / "Vagrantfile").read_text()
    start = source.index("def thrashlab_link_group_vars")
    linker = source[start:source.index("\nbegin", start)]
    script = f"require 'fileutils'\nROOT = {str(REPO)!r}\n{linker}\nthrashlab_link_group_vars\n"
    proc = subprocess.run([ruby, "-e", script], text=True, capture_output=True, timeout=60,
                          env={**os.environ, "VAGRANT_DOTFILE_PATH": str(env.vagrant_dir)})
    assert proc.returncode == 0, proc.stderr
    inv_dir = env.vagrant_dir / "provisioners" / "ansible" / "inventory"
    assert (inv_dir / "group_vars" / "all.yml").exists()
    # the format of Vagrant 2.3's generated inventory, with the Vagrantfile's host_vars and groups
    (inv_dir / "vagrant_ansible_inventory").write_text(textwrap.dedent(f"""\
        # Generated by Vagrant

        small ansible_host=127.0.0.1 ansible_port=2222 ansible_ssh_private_key_file='/k/small' \
memory_mb=256 swap_mb=512 cpus=1 lab_name=default thrashlab_lab_file={REPO}/lab.yml thrashlab_backend=vagrant
        large ansible_host=127.0.0.1 ansible_port=2200 ansible_ssh_private_key_file='/k/large' \
memory_mb=512 swap_mb=512 cpus=1 lab_name=default thrashlab_lab_file={REPO}/lab.yml thrashlab_backend=vagrant

        [lab]
        small
        large

        [lab_default]
        small
        large
        """))
    data, _ = env.listing("-i", str(inv_dir))
    assert hosts_of(data, "lab") == {"small", "large"}
    small = data["_meta"]["hostvars"]["small"]
    assert (small["memory_mb"], small["swap_mb"], small["cpus"]) == (256, 512, 1)
    assert small["ansible_port"] == 2222
    assert small["thrashlab_remote_dir"] == "/opt/thrashlab"
    # linking again is harmless
    proc = subprocess.run([ruby, "-e", script], text=True, capture_output=True, timeout=60,
                          env={**os.environ, "VAGRANT_DOTFILE_PATH": str(env.vagrant_dir)})
    assert proc.returncode == 0, proc.stderr
