"""The collector against real SSH servers on 127.0.0.1 (no VM needed).

Each "machine" is an OpenSSH sshd started by the test on a free port with its
own host key, pinned in a known_hosts file, and its own results directory
(thrashlab_results_dir) holding a run laid out as the runner writes it. The
machines come from a static Ansible inventory given with -i, so the whole
path (ansible-inventory, fabric with paramiko's RejectPolicy, jump hosts,
SFTP, checksums, staging, manifest, results/latest) is exercised. A jump
host is one more such sshd. Each collector runs with HOME in the test's
directory, so that only the test's ~/.ssh/config applies. Needs
/usr/sbin/sshd (Debian package openssh-server); skipped without it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import fabric
import paramiko
import pytest

import collector_faults

REPO = Path(__file__).resolve().parent.parent
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

sys.path.insert(0, str(REPO))
from collector import inventory as cinv  # noqa: E402
from collector import remote as crm  # noqa: E402
from collector import pull as cpull  # noqa: E402
from thrashlab.progress import Progress  # noqa: E402

needs_sshd = pytest.mark.skipif(not os.path.exists(SSHD), reason="needs sshd (apt-get install openssh-server)")
RUN = "20261125-234000-case2"


# ----------------------------------------------------------------------------- pure parts

def test_known_hosts_from_args():
    args = "-o 'UserKnownHostsFile=/a/known hosts' -o StrictHostKeyChecking=yes -oUserKnownHostsFile=/b"
    assert cinv.known_hosts_from_args(args) == ["/a/known", "hosts", "/b"]
    assert cinv.known_hosts_from_args('-o "UserKnownHostsFile /c /d"', None) == ["/c", "/d"]
    assert cinv.known_hosts_from_args("-o IdentitiesOnly=yes") == []


def test_host_from_vars():
    h = cinv.host_from_vars("small", {"ansible_host": "127.0.0.1", "ansible_port": "2222", "ansible_user": "root",
                                      "ansible_ssh_private_key_file": "/k",
                                      "ansible_ssh_common_args": "-o UserKnownHostsFile=/kh -o X=y"})
    assert (h.address, h.port, h.user, h.key_file, h.known_hosts) == ("127.0.0.1", 2222, "root", "/k", ["/kh"])
    assert h.results_dir == "/var/lib/thrashlab/results"
    assert (h.proxy_jump, h.proxy_command) == (None, None)
    # nothing said: left to ssh_config (then port 22, the local user)
    h = cinv.host_from_vars("big", {"thrashlab_known_hosts": "/pinned"})
    assert h.address == "big" and h.port is None and h.user is None
    assert h.known_hosts == ["/pinned"] and h.key_file is None
    assert cinv.host_from_vars("x", {}).known_hosts == [os.path.expanduser("~/.ssh/known_hosts")]
    with pytest.raises(cinv.InventoryError, match="template"):
        cinv.host_from_vars("x", {"ansible_host": "{{ foo }}"})
    assert cinv._unwrap({"a": {"__ansible_unsafe": "v"}, "b": [{"__ansible_unsafe": 1}]}) == {"a": "v", "b": [1]}


def test_proxy_from_ssh_args():
    assert cinv.proxy_from_args("-o ProxyJump=u@jump:2200") == ("u@jump:2200", None)
    assert cinv.proxy_from_args(None, "-J a,b:22 -o ProxyCommand=x") == ("a,b:22", None)
    assert cinv.proxy_from_args("-Ja -o StrictHostKeyChecking=yes") == ("a", None)
    # the first of ProxyJump and ProxyCommand wins (OpenSSH); the name ends at "=" or a blank
    cmd = "ssh -o StrictHostKeyChecking=yes -W %h:%p bastion"
    assert cinv.proxy_from_args(f'-o "ProxyCommand {cmd}"', "-J later") == (None, cmd)
    assert cinv.proxy_from_args(f"-o 'proxycommand={cmd}'") == (None, cmd)
    assert cinv.proxy_from_args("-o ProxyJump=none") == ("none", None)
    assert cinv.proxy_from_args("-o IdentitiesOnly=yes", None) == (None, None)
    h = cinv.host_from_vars("m", {"ansible_ssh_common_args": "-o UserKnownHostsFile=/kh",
                                  "ansible_ssh_extra_args": "-J root@127.0.0.1:2200"})
    assert (h.proxy_jump, h.known_hosts) == ("root@127.0.0.1:2200", ["/kh"])


def _remote(tmp_path, ssh_config_text: str, **host_vars) -> crm.Remote:
    """A Remote as the collector makes it, with ssh_config_text as the only ssh_config."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text(ssh_config_text)
    config = fabric.Config(runtime_ssh_path=str(cfg), overrides={"timeouts": {"connect": 5}})
    return crm.Remote(cinv.host_from_vars("m", host_vars), 5.0, config)


def test_connection_settings_inventory_then_ssh_config(tmp_path):
    """Nothing opened: what each Connection would connect to, through what, and
    that every client in the chain rejects unknown host keys."""
    ssh_config = ("Host alias\n  HostName 10.9.9.9\n  Port 2201\n  User cfguser\n"
                  "  ProxyJump cfgjump@192.0.2.1:2022\n"
                  "Host 192.0.2.1\n  User jumpuser\n")
    # the inventory says nothing: ssh_config's HostName, Port, User, ProxyJump
    r = _remote(tmp_path, ssh_config, ansible_host="alias")
    assert (r.conn.host, r.conn.port, r.conn.user) == ("10.9.9.9", 2201, "cfguser")
    assert r.describe() == "cfguser@10.9.9.9:2201"
    chain = crm._chain(r.conn)
    assert [crm.describe(c) for c in chain] == ["cfguser@10.9.9.9:2201", "cfgjump@192.0.2.1:2022"]
    assert all(isinstance(c.client._policy, paramiko.RejectPolicy) for c in chain)
    # the inventory wins where it speaks; its jump hosts are visited in order
    r = _remote(tmp_path, ssh_config, ansible_host="alias", ansible_port=22, ansible_user="inv",
                ansible_ssh_common_args="-J first.example:2022,192.0.2.1")
    assert (r.conn.host, r.conn.port, r.conn.user) == ("10.9.9.9", 22, "inv")
    chain = crm._chain(r.conn)
    assert [c.host for c in chain] == ["10.9.9.9", "192.0.2.1", "first.example"]
    assert chain[1].user == "jumpuser" and chain[2].port == 2022  # each hop's ssh_config applies
    assert all(isinstance(c.client._policy, paramiko.RejectPolicy) for c in chain)
    # a ProxyCommand is the gateway; "none" turns off ssh_config's proxy
    r = _remote(tmp_path, ssh_config, ansible_host="alias", ansible_ssh_extra_args="-o 'ProxyCommand=nc %h %p'")
    assert r.conn.gateway == "nc %h %p"
    r = _remote(tmp_path, ssh_config, ansible_host="alias", ansible_ssh_extra_args="-o ProxyJump=none")
    assert r.conn.gateway is False and crm._chain(r.conn) == [r.conn]


def test_parse_listing_and_backoff():
    d = "a" * 64
    assert crm.parse_listing(f"{d}  ./facts.json\n{d}  ./case2/n-01/r-1/run.json\n") == {
        "facts.json": d, "case2/n-01/r-1/run.json": d}
    assert crm.parse_listing("THRASHLAB-NO-RUN\n") is None
    assert crm.parse_listing("") == {}
    with pytest.raises(crm.Permanent):
        crm.parse_listing("\\" + d + "  ./we\\nird\n")
    with pytest.raises(crm.Transient):
        crm.parse_listing("garbage\n")
    assert [crm.backoff(i) for i in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert crm.backoff(2, 0.25) == 0.5


# ----------------------------------------------------------------------------- fixtures

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


class Machine:
    """One sshd on 127.0.0.1 with its own host key and results directory."""

    def __init__(self, root: Path, name: str, client_key: Path):
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.results = self.dir / "results"
        self.results.mkdir()
        self.port = _free_port()
        self.hostkey = self.dir / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.hostkey)], check=True)
        auth = self.dir / "authorized_keys"
        auth.write_text(Path(str(client_key) + ".pub").read_text())
        auth.chmod(0o600)
        cfg = self.dir / "sshd_config"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.hostkey}\n"
            f"AuthorizedKeysFile {auth}\nPidFile {self.dir / 'sshd.pid'}\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "sshd.log", "wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"sshd did not start: {(self.dir / 'sshd.log').read_text()}")
        pub = Path(str(self.hostkey) + ".pub").read_text().split()
        self.known_line = f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n"

    def kill(self):
        """Stop this machine hard: the listener and every session it forked."""
        for pid in [self.proc.pid] + _descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()

    def write_run(self, run_id: str = RUN, complete: bool = True, n_values=(1, 2), failed: str | None = None):
        """A run as the runner leaves it (with the hidden leftovers the collector must skip)."""
        base = self.results / run_id
        (base / "case2").mkdir(parents=True)
        (base / "facts.json").write_text(json.dumps({"machine": self.name, "kernel": "6.1.0-test",
                                                     "mem_available_kb": 153600}) + "\n")
        (base / "case2" / "params.json").write_text(json.dumps({
            "work_mb": 36, "n_values": list(n_values), "started": "2026-11-25T23:40:00Z",
            "ended": "2026-11-25T23:43:00Z", "variables": {"case2_work_mb": 36,
                                                          "case2_n_values": list(n_values)}}) + "\n")
        for n in n_values:
            d = base / "case2" / f"n-{n:02d}" / "r-1"
            d.mkdir(parents=True)
            (d / "run.json").write_text(json.dumps({"case": 2, "n": n}) + "\n")
            (d / "profile.csv").write_text("ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags\n" +
                                           "".join(f"{i},1,{100 + n},5,0,1,0\n" for i in range(2000)))
            for k in range(1, n + 1):
                (d / f"work-{k}.json").write_text(json.dumps({"pid": 100 + k, "accesses_per_s": 1e6}) + "\n")
        hidden = base / "case2" / "n-02" / ".r-2.partial"
        hidden.mkdir(parents=True)
        (hidden / "profile.csv").write_text("half a file")
        (base / "case2" / ".params.json.tmp-1").write_text("{")
        if complete:
            (base / "case2" / "DONE").write_text("{}\n")
        if failed:
            (base / "case2" / "FAILED").write_text(json.dumps({"error": failed}) + "\n")
        return base


USER = os.environ.get("USER", "root")


class Lab:
    """Machines (sshds), their pinned known_hosts, a static inventory naming them,
    and the collector run against it with HOME in the test's directory."""

    def __init__(self, root: Path, names=("small", "large")):
        self.root = root
        self.key = root / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.home = root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        self.machines = {name: Machine(root, name, self.key) for name in names}
        self.extra: list[Machine] = []  # jump hosts
        self.known = root / "known_hosts"
        self.known.write_text("".join(m.known_line for m in self.machines.values()))
        self.inv = root / "hosts.yml"
        self.write_inventory()
        self.results = root / "local-results"

    def add_machine(self, name: str) -> Machine:
        m = Machine(self.root, name, self.key)
        self.extra.append(m)
        return m

    def write_inventory(self, **host_vars: dict) -> None:
        """The inventory; host_vars: more (or other) variables per machine name."""
        lines = ["lab:", "  vars:", "    lab_name: testlab", f"    ansible_user: {USER}",
                 f"    ansible_ssh_private_key_file: {self.key}", f"    thrashlab_known_hosts: {self.known}",
                 "  hosts:"]
        for name, m in self.machines.items():
            hv = {"ansible_host": "127.0.0.1", "ansible_port": m.port, "thrashlab_results_dir": str(m.results),
                  "memory_mb": 256 if name == "small" else 512, "swap_mb": 512, "cpus": 1,
                  **host_vars.get(name, {})}
            lines += [f"    {name}:"] + [f"      {k}: {json.dumps(v)}" for k, v in hv.items() if v is not None]
        self.inv.write_text("\n".join(lines) + "\n")

    def collect(self, *args, env=None, timeout=300):
        argv = [sys.executable, "-m", "collector", "pull", "-i", str(self.inv), "--results-dir", str(self.results),
                "--backoff", "0.1", "--timeout", "10", *args]
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HOME": str(self.home), **(env or {})})

    def manifest(self, run_id: str = RUN) -> dict:
        return json.loads((self.results / run_id / "manifest.json").read_text())

    def stop(self):
        for m in [*self.machines.values(), *self.extra]:
            m.kill()


@pytest.fixture
def lab(tmp_path):
    if not os.path.exists(SSHD):
        pytest.skip("needs sshd (apt-get install openssh-server)")
    lab = Lab(tmp_path)
    yield lab
    lab.stop()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_partial_files(results: Path):
    bad = [str(p) for p in results.rglob("*") if p.name.endswith(".part") or p.name.startswith(".partial-")
           or ".partial" in p.name or p.name.startswith(".old-")]
    assert not bad, bad


# ----------------------------------------------------------------------------- against sshd

def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def _host_paths(man: dict, tmp_path: Path, *homes) -> list[str]:
    """Every string of the manifest (keys and values, at any depth) that names a
    path of the collecting host: absolute and existing here, or holding the test's
    directory, the repository or a home directory. The machines' own results
    directories (``connections.*.results_dir``: here the sshds' directories on
    this host) are theirs, not the collector's, and are left out."""
    markers = [str(m) for m in (tmp_path, REPO, Path.home(), *homes)]
    found = []

    def walk(obj, where):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(k, where + ("<key>",))
                if not (len(where) == 2 and where[0] == "connections" and k == "results_dir"):
                    walk(v, where + (k,))
        elif isinstance(obj, list):
            for v in obj:
                walk(v, where)
        elif isinstance(obj, str):
            if (obj.startswith("/") and os.path.exists(obj)) or any(m in obj for m in markers):
                found.append(f"{'.'.join(where)}: {obj}")
    walk(man, ())
    return found


@needs_sshd
def test_manifest_names_no_host_path(lab, tmp_path):
    """results/<run>/ travels to other hosts: its manifest names no path of the one
    it was collected on. The lab file inside the repository is named relative to
    it, one outside it not at all; the pinned known_hosts (in the test's
    directory) is left out of connections; a failed machine's error names a file
    under the home directory as ~/..."""
    for m in lab.machines.values():
        m.write_run()
    lab.write_inventory(large={"ansible_ssh_private_key_file": str(lab.home / ".ssh" / "id_missing")})
    p = lab.collect("--run", RUN, "--lab", REPO / "labs" / "default.yml")
    assert p.returncode == 1, p.stdout + p.stderr
    man = lab.manifest()
    assert _host_paths(man, tmp_path, lab.home) == []
    assert man["lab"]["name"] == "default" and man["lab"]["path"] == "labs/default.yml"
    assert man["connections"]["small"]["known_hosts"] == [] and man["machines"]["small"]["status"] == "ok"
    assert man["machines"]["large"]["error"] == "connect: private key ~/.ssh/id_missing of large does not exist"
    assert man["connections"]["small"]["results_dir"] == str(lab.machines["small"].results)

    outside = tmp_path / "elsewhere.yml"
    shutil.copy(REPO / "labs" / "default.yml", outside)
    lab.write_inventory()
    p = lab.collect("--run", RUN, "--lab", outside)
    assert p.returncode == 0, p.stdout + p.stderr
    man = lab.manifest()
    assert _host_paths(man, tmp_path, lab.home) == [] and man["lab"]["path"] is None
    assert man["lab"]["name"] == "default" and man["complete"] is True


@needs_sshd
def test_pull_complete_run(lab):
    for m in lab.machines.values():
        m.write_run()
    p = lab.collect("--run", RUN)
    assert p.returncode == 0, p.stdout + p.stderr
    run = lab.results / RUN
    man = json.loads((run / "manifest.json").read_text())
    assert man["run_id"] == RUN and man["case"] == "case2" and man["complete"] is True
    assert man["machines"]["small"]["status"] == "ok" and man["machines"]["large"]["status"] == "ok"
    assert man["machines"]["small"]["facts"]["mem_available_kb"] == 153600
    assert man["parameters"]["large"] == {"case2_work_mb": 36, "case2_n_values": [1, 2]}
    assert man["lab"]["name"] == "testlab" and {m["name"] for m in man["lab"]["machines"]} == {"small", "large"}
    assert man["started"] == "2026-11-25T23:40:00Z" and man["ended"] == "2026-11-25T23:43:00Z"
    assert len(man["git_revision"]) == 40 and isinstance(man["git_dirty"], bool)
    # the collecting host as it is; no local testbed behind these machines (a static inventory)
    assert man["host"]["cores"] == len(os.sched_getaffinity(0)) and len(man["host"]["loadavg"]) == 3
    assert man["testbed"] is None
    # every file listed, present and verified; nothing hidden or partial came along
    local = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()} - {"manifest.json"}
    assert local == set(man["files"])
    for rel, digest in man["files"].items():
        assert _sha(run / rel) == digest
        remote = lab.machines[rel.split("/")[0]].results / RUN / rel.split("/", 1)[1]
        assert _sha(remote) == digest
    assert "small/case2/n-02/r-1/work-2.json" in man["files"]
    assert not [f for f in man["files"] if "/." in f]
    # the manifest names no path of the collecting host (results travel): only
    # the machines' own results directories are absolute
    remote_dirs = {c["results_dir"] for c in man["connections"].values()}
    assert not [v for v in _strings(man) if v.startswith(("/", "~")) and v not in remote_dirs]
    _no_partial_files(lab.results)
    latest = lab.results / "latest"
    assert latest.is_symlink() and os.readlink(latest) == RUN
    assert "ok" in p.stdout and "small" in p.stdout and "results/latest -> " + RUN in p.stdout
    # remote data untouched
    assert (lab.machines["small"].results / RUN / "case2" / "DONE").exists()
    # collecting again replaces the run in one piece
    p = lab.collect("--run", RUN)
    assert p.returncode == 0
    assert json.loads((run / "manifest.json").read_text())["files"] == man["files"]
    _no_partial_files(lab.results)


@needs_sshd
def test_newest_run_and_incomplete_machine(lab):
    for m in lab.machines.values():
        m.write_run("20261125-100000-case2")
    assert lab.collect().returncode == 0          # no --run: the newest one
    assert os.readlink(lab.results / "latest") == "20261125-100000-case2"
    newer = "20261125-110000-case2"
    lab.machines["small"].write_run(newer)
    lab.machines["large"].write_run(newer, complete=False, failed="every work process failed (exit codes [2])")
    p = lab.collect()
    assert p.returncode == 1, p.stdout + p.stderr
    man = json.loads((lab.results / newer / "manifest.json").read_text())
    assert man["complete"] is False
    assert man["machines"]["small"]["status"] == "ok"
    large = man["machines"]["large"]
    assert large["status"] == "failed" and "no case2/DONE" in large["error"]
    assert "every work process failed" in large["error"]
    assert not (lab.results / newer / "large").exists()
    assert not [f for f in man["files"] if f.startswith("large/")]
    # latest still names the newest complete run
    assert os.readlink(lab.results / "latest") == "20261125-100000-case2"
    assert "latest NOT updated" in p.stdout and "FAILED" in p.stdout
    _no_partial_files(lab.results)


@needs_sshd
def test_missing_run_expected_case_and_host_error(lab):
    lab.machines["small"].write_run()
    p = lab.collect("--run", RUN, "--expect-case", "case1", "--host-error", "large=case2: runner killed")
    assert p.returncode == 1
    man = json.loads((lab.results / RUN / "manifest.json").read_text())
    assert "no case1" in man["machines"]["small"]["error"]
    assert man["machines"]["large"]["error"] == "the case playbook reported: case2: runner killed"
    p = lab.collect("--run", "20991231-000000-case2")
    assert p.returncode == 1
    man = json.loads((lab.results / "20991231-000000-case2" / "manifest.json").read_text())
    assert "not found on the machine" in man["machines"]["small"]["error"]
    assert not (lab.results / "latest").exists()


@needs_sshd
def test_host_keys_are_verified(lab):
    for m in lab.machines.values():
        m.write_run()
    # large's pinned key is another key: refused at once, never retried into acceptance
    other = lab.root / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = Path(str(other) + ".pub").read_text().split()
    lines = lab.known.read_text().splitlines()
    lab.known.write_text(lines[0] + "\n" + f"[127.0.0.1]:{lab.machines['large'].port} {pub[0]} {pub[1]}\n")
    t0 = time.monotonic()
    p = lab.collect("--run", RUN)
    assert p.returncode == 1 and time.monotonic() - t0 < 60
    man = json.loads((lab.results / RUN / "manifest.json").read_text())
    assert man["machines"]["small"]["status"] == "ok"
    assert "does not match the one pinned" in man["machines"]["large"]["error"]
    assert man["machines"]["large"]["retries"] == 0
    # not pinned at all: refused too (RejectPolicy), and the file is left as it was
    lab.known.write_text(lines[0] + "\n")
    p = lab.collect("--run", RUN)
    man = json.loads((lab.results / RUN / "manifest.json").read_text())
    assert "is not in" in man["machines"]["large"]["error"]
    assert lab.known.read_text() == lines[0] + "\n"


@needs_sshd
def test_file_changed_after_listing(lab):
    for m in lab.machines.values():
        m.write_run()
    target = lab.machines["small"].results / RUN / "case2" / "n-01" / "r-1" / "run.json"
    # changed once, after the listing: listed again, downloaded again, fine
    flag = lab.root / "changed-once"
    once = {"host": "small", "file": "case2/n-01/r-1/run.json",
            "remote": f"[ -e {flag} ] || {{ touch {flag}; echo changed >> {target}; }}"}
    p = lab.collect("--run", RUN, env=collector_faults.env(once))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "checksum mismatch" in p.stderr and "TEST HOOK ACTIVE" in p.stderr
    man = json.loads((lab.results / RUN / "manifest.json").read_text())
    assert man["files"]["small/case2/n-01/r-1/run.json"] == _sha(target)
    assert (lab.results / RUN / "small/case2/n-01/r-1/run.json").read_text().endswith("changed\n")
    # changed before every download: retried, then the machine fails naming the file and both checksums
    run_b = RUN + "b"
    for m in lab.machines.values():
        m.write_run(run_b)
    target = lab.machines["small"].results / run_b / "case2" / "n-01" / "r-1" / "run.json"
    always = {"host": "small", "file": "case2/n-01/r-1/run.json", "remote": f"echo again >> {target}"}
    p = lab.collect("--run", run_b, "--retries", "3", env=collector_faults.env(always))
    assert p.returncode == 1
    man = json.loads((lab.results / run_b / "manifest.json").read_text())
    err = man["machines"]["small"]["error"]
    assert err.startswith("case2/n-01/r-1/run.json: checksum mismatch 3 times: listed ")
    listed, downloaded = err.split("listed ")[1].split(", downloaded ")
    assert len(listed) == 64 and len(downloaded.split()[0]) == 64 and listed != downloaded.split()[0]
    assert man["machines"]["large"]["status"] == "ok"
    assert not (lab.results / run_b / "small").exists()
    _no_partial_files(lab.results)
    assert os.readlink(lab.results / "latest") == RUN
    # an incomplete re-collection does not replace the complete copy collected before
    p = lab.collect("--run", RUN, "--host-error", "large=gone")
    assert p.returncode == 1
    assert "kept the complete copy collected before" in p.stdout
    man = json.loads((lab.results / RUN / "manifest.json").read_text())
    assert man["complete"] is True and (lab.results / RUN / "small").is_dir()
    assert os.readlink(lab.results / "latest") == RUN


@needs_sshd
def test_machine_stopped_during_collection(lab):
    for m in lab.machines.values():
        m.write_run(n_values=(1, 2, 3, 4))
    large = lab.machines["large"]
    # "stop the VM": kill large's sshd and the sessions it forked, after its third file
    killer = lab.root / "kill_large.py"
    killer.write_text(f"import os, signal, sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\n"
                      "from test_collector import _descendants\n"
                      f"for pid in [{large.proc.pid}] + _descendants({large.proc.pid}):\n"
                      "    os.kill(pid, signal.SIGKILL)\n")
    hook = {"host": "large", "after_files": 3, "local": f"{sys.executable} {killer}"}
    t0 = time.monotonic()
    p = lab.collect("--run", RUN, env=collector_faults.env(hook))
    elapsed = time.monotonic() - t0
    assert p.returncode == 1, p.stdout + p.stderr
    man = json.loads((lab.results / RUN / "manifest.json").read_text())
    assert man["machines"]["small"]["status"] == "ok"
    assert man["machines"]["large"]["status"] == "failed"
    assert "gave up after 4 attempts" in man["machines"]["large"]["error"]
    assert not (lab.results / RUN / "large").exists()
    assert all(f.startswith("small/") for f in man["files"])
    assert len(man["files"]) == len([q for q in (lab.results / RUN / "small").rglob("*") if q.is_file()])
    _no_partial_files(lab.results)
    assert not (lab.results / "latest").exists()
    assert elapsed < 120
    lines = p.stdout.splitlines()
    assert lines[0].split()[:2] == ["machine", "status"]
    assert any(ln.startswith("large") and "FAILED" in ln for ln in lines)



# ----------------------------------------------------------------------------- jump hosts

def _jump_host(lab, pinned_as: str = "127.0.0.1") -> Machine:
    """One more sshd, the jump host, its key pinned (as ``pinned_as``) in the lab's known_hosts."""
    jump = lab.add_machine("jump")
    with open(lab.known, "a") as f:
        f.write(jump.known_line.replace("[127.0.0.1]", f"[{pinned_as}]"))
    return jump


@needs_sshd
def test_collect_through_jump_host(lab):
    """ProxyJump from the inventory's ssh arguments (-o ProxyJump=, -J): both machines
    reached through the jump host, both host keys verified, and nothing is
    collected once the jump host is gone."""
    jump = _jump_host(lab)
    for m in lab.machines.values():
        m.write_run()
    hop = f"{USER}@127.0.0.1:{jump.port}"
    lab.write_inventory(small={"ansible_ssh_common_args": f"-o ProxyJump={hop} -o StrictHostKeyChecking=yes"},
                        large={"ansible_ssh_extra_args": f"-J {hop}"})
    known_before = lab.known.read_text()
    p = lab.collect("--run", RUN)
    assert p.returncode == 0, p.stdout + p.stderr
    man = lab.manifest()
    assert man["complete"] is True and len(man["files"]) == 2 * len(
        [q for q in (lab.machines["small"].results / RUN).rglob("*") if q.is_file() and "/." not in str(q)])
    for name, m in lab.machines.items():
        assert (man["connections"][name]["address"], man["connections"][name]["port"]) == ("127.0.0.1", m.port)
    # behind the jump host, the machine's own key is verified as well
    run_b = RUN + "b"
    for m in lab.machines.values():
        m.write_run(run_b)
    large = lab.machines["large"]
    lab.known.write_text(known_before.replace(large.known_line, ""))
    p = lab.collect("--run", run_b)
    assert p.returncode == 1
    man = lab.manifest(run_b)
    assert man["machines"]["small"]["status"] == "ok"
    assert man["machines"]["large"]["error"].startswith(
        f"connect: host key of {USER}@127.0.0.1:{large.port} is not in")
    lab.known.write_text(known_before)
    # the machines were reached through the jump host: without it, they cannot be
    jump.kill()
    p = lab.collect("--run", run_b, "--retries", "2")
    assert p.returncode == 1, p.stdout + p.stderr
    for name in lab.machines:
        err = lab.manifest(run_b)["machines"][name]["error"]
        assert err.startswith(f"connect: jump host {hop}: ") and "gave up after 2 attempts" in err
    assert lab.known.read_text() == known_before


@needs_sshd
def test_collect_through_jump_host_from_ssh_config(lab):
    """Where the inventory says nothing, ~/.ssh/config does: small is a Host alias
    with its HostName, Port and ProxyJump there; large stays direct."""
    jump = _jump_host(lab, pinned_as="localhost")
    for m in lab.machines.values():
        m.write_run()
    small = lab.machines["small"]
    (lab.home / ".ssh" / "config").write_text(
        f"Host small-behind-jump\n    HostName 127.0.0.1\n    Port {small.port}\n"
        f"    ProxyJump {USER}@localhost:{jump.port}\n")
    lab.write_inventory(small={"ansible_host": "small-behind-jump", "ansible_port": None})
    p = lab.collect("--run", RUN)
    assert p.returncode == 0, p.stdout + p.stderr
    # the manifest names the connection as made: ssh_config's HostName and Port
    assert lab.manifest()["connections"]["small"]["address"] == "127.0.0.1"
    assert lab.manifest()["connections"]["small"]["port"] == small.port
    run_b = RUN + "b"
    for m in lab.machines.values():
        m.write_run(run_b)
    jump.kill()
    p = lab.collect("--run", run_b, "--retries", "2")
    assert p.returncode == 1
    man = lab.manifest(run_b)
    assert f"jump host {USER}@localhost:{jump.port}" in man["machines"]["small"]["error"]
    assert man["machines"]["large"]["status"] == "ok"


@needs_sshd
@pytest.mark.parametrize("configured_in", ["inventory", "ssh_config"])
def test_unknown_jump_host_key_is_refused(lab, configured_in):
    """A jump host whose key is not pinned, or differs from the pinned one, is
    refused at once (RejectPolicy, never retried, never added), wherever the
    jump was configured."""
    jump = lab.add_machine("jump")  # its key not pinned
    for m in lab.machines.values():
        m.write_run()
    hop = f"{USER}@127.0.0.1:{jump.port}"
    if configured_in == "inventory":
        lab.write_inventory(small={"ansible_ssh_common_args": f"-J {hop}"},
                            large={"ansible_ssh_common_args": f"-J {hop}"})
    else:
        hop = f"{USER}@localhost:{jump.port}"  # not 127.0.0.1: fabric would take it for a loop
        (lab.home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n    ProxyJump {hop}\n")
    known_before = lab.known.read_text()
    t0 = time.monotonic()
    p = lab.collect("--run", RUN)
    assert p.returncode == 1, p.stdout + p.stderr
    assert time.monotonic() - t0 < 60
    for name in lab.machines:
        machine = lab.manifest()["machines"][name]
        assert machine["error"].startswith(f"connect: host key of jump host {hop} is not in {lab.known}")
        assert machine["retries"] == 0
    assert lab.known.read_text() == known_before
    # pinned, but another key: refused too
    other = lab.root / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = Path(str(other) + ".pub").read_text().split()
    host = hop.split("@")[1].rsplit(":", 1)[0]
    lab.known.write_text(known_before + f"[{host}]:{jump.port} {pub[0]} {pub[1]}\n")
    p = lab.collect("--run", RUN)
    assert p.returncode == 1
    for name in lab.machines:
        err = lab.manifest()["machines"][name]["error"]
        assert f"host key of jump host {hop} does not match the one pinned" in err


# ----------------------------------------------------------------------------- the worker pool

@needs_sshd
def test_bounded_pool_collects_every_machine(tmp_path, monkeypatch):
    """Five machines, --jobs 2: never more than two collected at once, all five collected."""
    lab = Lab(tmp_path, names=("m1", "m2", "m3", "m4", "m5"))
    try:
        for m in lab.machines.values():
            m.write_run()
        monkeypatch.setenv("HOME", str(lab.home))
        active, peak, lock = [0], [0], threading.Lock()
        run_one = cpull.HostPull.run

        def counted(self):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                return run_one(self)
            finally:
                with lock:
                    active[0] -= 1
        monkeypatch.setattr(cpull.HostPull, "run", counted)
        hosts, lab_desc = cinv.load_hosts([str(lab.inv)])
        progress = io.StringIO()
        opts = cpull.Options(run_id=RUN, jobs=2, timeout=10, backoff_base=0.1, results_dir=lab.results)
        assert cpull.pull(hosts, lab_desc, opts, Progress(progress), out=io.StringIO()) == 0
        assert peak[0] == 2
        man = lab.manifest()
        assert man["complete"] is True and sorted(man["machines"]) == sorted(lab.machines)
        assert "(2 at a time)" in progress.getvalue()
    finally:
        lab.stop()
    p = subprocess.run([sys.executable, "-m", "collector", "pull", "--jobs", "0"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "--jobs must be at least 1" in p.stderr


def test_no_testbed_is_clear(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("lab:\n  hosts:\n    small:\n      thrashlab_backend: none\n")
    p = subprocess.run([sys.executable, "-m", "collector", "pull", "--run", RUN, "-i", str(inv),
                        "--results-dir", str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    man = json.loads((tmp_path / "r" / RUN / "manifest.json").read_text())
    assert "no testbed is up" in man["machines"]["small"]["error"]
    p = subprocess.run([sys.executable, "-m", "collector", "pull", "-i", str(tmp_path / "nothing.yml"),
                        "--results-dir", str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "collector: error:" in p.stderr
