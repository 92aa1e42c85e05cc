# Inventory plugin for thrashlab: the lab file's machines, reachable through
# whichever testbed is up (the local QEMU testbed or Vagrant).
#
# It runs inside Ansible's own Python: PyYAML is always there, and the lab
# file is parsed by the project's own parser (thrashlab/lab.py) so that the
# inventory, the Vagrantfile and localvm agree on every machine.
from __future__ import annotations

DOCUMENTATION = r"""
name: thrashlab
short_description: The machines of a thrashlab lab file, with their testbed's SSH settings
description:
  - Reads the lab file (option O(lab), else the environment variable E(THRASHLAB_LAB),
    else C(lab.yml) at the repository root) and adds every machine to the group C(lab)
    and to C(lab_<lab name>), with the host variables C(memory_mb), C(swap_mb), C(cpus), C(suite),
    C(lab_name), C(thrashlab_lab_file) and C(thrashlab_backend).
  - "Connection settings come from the first testbed found:
    (1) the local QEMU testbed of C(python -m localvm up), described by
    C(<state dir>/testbeds/<lab name>/testbed.json);
    (2) Vagrant machines of this repository (C(.vagrant/machines/<name>/<provider>/id)),
    through one call of C(vagrant ssh-config);
    (3) none: the hosts are listed without connection settings and a warning says
    how to start a testbed."
  - Host keys are always verified. The local testbed pins them in its own known_hosts
    file. For Vagrant, the Vagrantfile pins each guest's host keys in
    C(<state dir>/vagrant/known_hosts) after every C(vagrant up) (read over Vagrant's
    own SSH channel); a machine whose keys are not pinned is an error that names the
    command to run.
  - The configuration file must be named C(thrashlab.yml) or end with C(.thrashlab.yml)
    (C(.yaml) also accepted).
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    required: true
    choices: ["thrashlab"]
  lab:
    description:
      - The lab file. A relative path is taken from the repository root.
      - When unset, E(THRASHLAB_LAB) (relative to the current directory), else C(lab.yml)
        at the repository root.
    type: str
  state_dir:
    description:
      - Where the testbeds keep their state.
      - When unset, E(THRASHLAB_STATE_DIR), else C(.thrashlab) at the repository root
        (the same rule as C(localvm)). A relative O(state_dir) is taken from the repository root.
    type: str
  vagrant_timeout:
    description: Seconds to wait for C(vagrant ssh-config).
    type: int
    default: 90
extends_documentation_fragment:
  - constructed
"""

EXAMPLES = r"""
# inventory/thrashlab.yml (the default inventory of ansible.cfg)
plugin: thrashlab

# inventory/trio.thrashlab.yml: always the trio lab, whatever THRASHLAB_LAB says;
# use it with: ansible-playbook -i inventory/trio.thrashlab.yml playbooks/setup.yml
plugin: thrashlab
lab: labs/trio.yml
"""

import json
import os
import re
import shlex
import subprocess
import sys

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from thrashlab.lab import LabError, load_lab  # noqa: E402  (needs REPO_ROOT on sys.path)
from thrashlab.paths import state_root  # noqa: E402

GROUP = "lab"
START_HINT = "start a testbed first: `python -m localvm up` (local QEMU VMs) or `vagrant up`"


def _group_name(lab_name):
    """Ansible group names may not contain '-': lab 'my-lab' -> group 'lab_my_lab'."""
    return GROUP + "_" + re.sub(r"[^A-Za-z0-9_]", "_", lab_name)


def _ssh_common_args(known_hosts):
    return " ".join([
        "-o", shlex.quote("UserKnownHostsFile=" + known_hosts),
        "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes",
    ])


def _known_hosts_name(host, port):
    return host if int(port) == 22 else "[%s]:%s" % (host, port)


def _pid_alive(pid):
    """True unless pid is a number and no such process exists here."""
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError):
        return True  # no pid recorded: nothing to say
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but not ours
    return True


def parse_ssh_config(text):
    """`vagrant ssh-config` output -> {host alias: {lower-case option: first value}}."""
    hosts = {}
    current = None
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0].lower()
        value = parts[1].strip() if len(parts) > 1 else ""
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "host":
            current = hosts.setdefault(value, {})
        elif current is not None:
            current.setdefault(key, value)
    return hosts


class InventoryModule(BaseInventoryPlugin, Constructable):

    NAME = "thrashlab"

    def verify_file(self, path):
        if not super().verify_file(path):
            return False
        base = os.path.basename(path)
        return base in ("thrashlab.yml", "thrashlab.yaml") or base.endswith((".thrashlab.yml", ".thrashlab.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)

        lab_option = self.get_option("lab")
        if lab_option:
            lab_option = os.path.join(REPO_ROOT, os.path.expanduser(lab_option))
        try:
            lab = load_lab(lab_option)
        except LabError as e:
            raise AnsibleParserError("thrashlab inventory: bad lab file: %s" % e)

        state_dir = self.get_option("state_dir")
        if state_dir:
            state_dir = os.path.abspath(os.path.join(REPO_ROOT, os.path.expanduser(state_dir)))
        else:
            state_dir = str(state_root())  # $THRASHLAB_STATE_DIR or <repo>/.thrashlab, as localvm

        self.inventory.add_group(GROUP)
        lab_group = self.inventory.add_group(_group_name(lab.name))
        for m in lab.machines:
            self.inventory.add_host(m.name, group=GROUP)
            self.inventory.add_child(lab_group, m.name)
            for key, value in (("memory_mb", m.memory_mb), ("swap_mb", m.swap_mb), ("cpus", m.cpus),
                               ("suite", m.suite),
                               ("lab_name", lab.name), ("thrashlab_lab_file", str(lab.path))):
                self.inventory.set_variable(m.name, key, value)

        testbed_file = os.path.join(state_dir, "testbeds", lab.name, "testbed.json")
        vagrant_machines = self._vagrant_machines(lab.names)
        if os.path.exists(testbed_file):
            self._from_local_testbed(lab, testbed_file)
        elif vagrant_machines:
            self._from_vagrant(lab, vagrant_machines, state_dir)
        else:
            for name in lab.names:
                self.inventory.set_variable(name, "thrashlab_backend", "none")
            self.display.warning(
                "thrashlab inventory: no testbed is up for lab %r (%s): its machines have no connection "
                "settings; %s." % (lab.name, lab.path, START_HINT))

        strict = self.get_option("strict")
        for name in lab.names:
            hostvars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)

    # -- (1) the local QEMU testbed ------------------------------------------------------------

    def _from_local_testbed(self, lab, testbed_file):
        try:
            with open(testbed_file) as f:
                testbed = json.load(f)
            machines = testbed["machines"]
            ssh_key = testbed["ssh_key"]
            known_hosts = testbed["known_hosts"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AnsibleParserError(
                "thrashlab inventory: unreadable testbed state %s (%s: %s); run `python -m localvm down` "
                "and `python -m localvm up` again" % (testbed_file, type(e).__name__, e))
        common_args = _ssh_common_args(known_hosts)
        missing, stopped = [], []
        for name in lab.names:
            self.inventory.set_variable(name, "thrashlab_backend", "localvm")
            self.inventory.set_variable(name, "thrashlab_accelerator", testbed.get("accelerator", "unknown"))
            vm = machines.get(name) if isinstance(machines, dict) else None
            if not isinstance(vm, dict) or "port" not in vm:
                missing.append(name)
                continue
            self.inventory.set_variable(name, "ansible_host", vm.get("host", "127.0.0.1"))
            self.inventory.set_variable(name, "ansible_port", int(vm["port"]))
            self.inventory.set_variable(name, "ansible_user", vm.get("user", "root"))
            self.inventory.set_variable(name, "ansible_ssh_private_key_file", ssh_key)
            self.inventory.set_variable(name, "ansible_ssh_common_args", common_args)
            # The same file, by itself, for clients that are not ssh (the collector's paramiko).
            self.inventory.set_variable(name, "thrashlab_known_hosts", known_hosts)
            if not _pid_alive(vm.get("pid")):
                stopped.append("%s (pid %s)" % (name, vm.get("pid")))
        if missing:
            self.display.warning(
                "thrashlab inventory: the local testbed of lab %r (%s) has no VM for %s: the lab file changed "
                "after `python -m localvm up`; run `python -m localvm down` and `python -m localvm up` again."
                % (lab.name, testbed_file, ", ".join(missing)))
        if stopped:
            self.display.warning(
                "thrashlab inventory: VM(s) %s of lab %r are not running; `python -m localvm status` tells more, "
                "`python -m localvm down` and `python -m localvm up` restart them." % (", ".join(stopped), lab.name))

    # -- (2) Vagrant ---------------------------------------------------------------------------

    def _vagrant_machines(self, names):
        """Lab machines that Vagrant has created in this repository (they have an id file)."""
        dotfile = os.environ.get("VAGRANT_DOTFILE_PATH") or ".vagrant"
        machines_dir = os.path.join(REPO_ROOT, dotfile, "machines")
        found = []
        for name in names:
            mdir = os.path.join(machines_dir, name)
            if os.path.isdir(mdir) and any(os.path.isfile(os.path.join(mdir, p, "id")) for p in os.listdir(mdir)):
                found.append(name)
        return found

    def _vagrant_ssh_config(self, names):
        cmd = ["vagrant", "ssh-config"] + list(names)
        timeout = self.get_option("vagrant_timeout")
        try:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout)
        except FileNotFoundError:
            raise AnsibleParserError("thrashlab inventory: Vagrant machines exist in %s/.vagrant but the "
                                     "`vagrant` command is not installed" % REPO_ROOT)
        except subprocess.TimeoutExpired:
            raise AnsibleParserError("thrashlab inventory: `%s` did not answer within %d s" % (" ".join(cmd), timeout))
        if proc.returncode != 0:
            return None, proc.stderr.strip() or proc.stdout.strip()
        return parse_ssh_config(proc.stdout), ""

    def _from_vagrant(self, lab, created, state_dir):
        configs, error = self._vagrant_ssh_config(created)
        if configs is None:
            # Usually one machine is halted; ask for each one to keep the running ones usable.
            configs = {}
            for name in created:
                one, error = self._vagrant_ssh_config([name])
                if one is None:
                    self.display.warning("thrashlab inventory: `vagrant ssh-config %s` failed: %s" % (name, error))
                else:
                    configs.update(one)

        known_hosts = os.path.join(state_dir, "vagrant", "known_hosts")
        pinned = self._pinned_hosts(known_hosts)
        common_args = _ssh_common_args(known_hosts)
        unpinned = []
        for name in lab.names:
            self.inventory.set_variable(name, "thrashlab_backend", "vagrant")
            conf = configs.get(name)
            if conf is None:
                continue
            host = conf.get("hostname", "127.0.0.1")
            port = int(conf.get("port", 22))
            if _known_hosts_name(host, port) not in pinned:
                unpinned.append("%s (%s)" % (name, _known_hosts_name(host, port)))
            self.inventory.set_variable(name, "ansible_host", host)
            self.inventory.set_variable(name, "ansible_port", port)
            self.inventory.set_variable(name, "ansible_user", conf.get("user", "vagrant"))
            self.inventory.set_variable(name, "ansible_become", True)
            if "identityfile" in conf:
                self.inventory.set_variable(name, "ansible_ssh_private_key_file", conf["identityfile"])
            self.inventory.set_variable(name, "ansible_ssh_common_args", common_args)
            self.inventory.set_variable(name, "thrashlab_known_hosts", known_hosts)
        missing = [n for n in lab.names if n not in configs]
        if missing:
            self.display.warning("thrashlab inventory: no Vagrant SSH settings for %s; %s."
                                 % (", ".join(missing), "run `vagrant up`"))
        if unpinned:
            raise AnsibleParserError(
                "thrashlab inventory: the host keys of Vagrant machine(s) %s are not pinned in %s. "
                "Run `vagrant up` (or `vagrant provision`): the Vagrantfile pins each running guest's host keys, "
                "read over Vagrant's own SSH channel, after every up/reload/provision."
                % (", ".join(unpinned), known_hosts))

    @staticmethod
    def _pinned_hosts(known_hosts):
        names = set()
        try:
            with open(known_hosts) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 3 and not fields[0].startswith("#"):
                        names.update(fields[0].split(","))
        except FileNotFoundError:
            pass
        return names
