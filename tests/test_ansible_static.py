"""Static checks of the Ansible and Vagrant side, and the setup role's own
modules exercised on the controller, without VMs.

- every playbook passes ``ansible-playbook --syntax-check``;
- ``ansible-lint`` (profile of .ansible-lint) and ``yamllint`` are clean;
- ``vagrant validate`` passes for every lab file, and a bad lab file is a
  clear Vagrant error;
- ansible.cfg has the settings the testbeds rely on;
- the role's modules: the swap file's fstab and hole checks, and the
  pack-and-build of the sources (run locally against small Makefiles).

A test is skipped only when its tool is not installed (test.sh installs them
all), and says which.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ROLE = REPO / "playbooks" / "roles" / "setup"


def tool(name: str, hint: str) -> str:
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed ({hint})")
    return found


@pytest.fixture
def isolated_env(tmp_path) -> dict:
    """The repository's lab, but no testbed state and no Vagrant machines of the checkout."""
    return {
        **os.environ,
        "THRASHLAB_STATE_DIR": str(tmp_path / "state"),
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot-vagrant"),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    }


def run(cmd, env, timeout=600, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def playbooks() -> list[Path]:
    """Files that hold plays: playbooks/*.yml and run-*.yml at the root."""
    found = []
    for path in sorted((REPO / "playbooks").glob("*.yml")) + sorted(REPO.glob("run-*.yml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, list) and all(isinstance(p, dict) and ({"hosts", "import_playbook"} & set(p))
                                          for p in data):
            found.append(path)
    return found


def test_the_setup_playbook_is_found():
    assert REPO / "playbooks" / "setup.yml" in playbooks()


@pytest.mark.parametrize("playbook", playbooks(), ids=lambda p: str(p.relative_to(REPO)))
def test_syntax_check(playbook, isolated_env):
    proc = run([tool("ansible-playbook", "pip install ansible-core"), "--syntax-check", str(playbook)],
               isolated_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint(isolated_env):
    proc = run([tool("ansible-lint", "pip install ansible-lint"), "--nocolor"], isolated_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "production" in proc.stdout + proc.stderr  # the profile of .ansible-lint was applied


def test_yamllint(isolated_env):
    proc = run([tool("yamllint", "pip install yamllint"), "--strict", "--format", "parsable", "."], isolated_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def config_dump(kind: str, env: dict) -> dict:
    """`ansible-config dump --only-changed` as {name: value text}; plugin sections merged."""
    proc = run([tool("ansible-config", "pip install ansible-core"), "dump", "--only-changed", "-t", kind], env)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\w+)\(([^)]*)\) = (.*)$", line)
        if m:
            out.setdefault(m.group(1), m.group(3))
    return out


def test_ansible_cfg_settings(isolated_env):
    base = config_dump("base", isolated_env)
    assert base["HOST_KEY_CHECKING"] == "True"
    assert base["DEFAULT_HOST_LIST"] == repr([str(REPO / "inventory" / "thrashlab.yml")])
    assert base["INTERPRETER_PYTHON"] == "/usr/bin/python3"
    assert base["RETRY_FILES_ENABLED"] == "False"
    assert int(base["DEFAULT_FORKS"]) >= 16
    assert base["INVENTORY_ANY_UNPARSED_IS_FAILED"] == "True"
    ssh = config_dump("connection", isolated_env)
    assert ssh["pipelining"] == "True"
    assert "ControlMaster=auto" in ssh["ssh_args"] and "ControlPersist=" in ssh["ssh_args"]
    assert ssh["control_path_dir"] and ssh["control_path"]


def test_timer_callback_prints_timings(tmp_path, isolated_env):
    play = tmp_path / "tiny.yml"
    play.write_text(textwrap.dedent("""\
        - name: Tiny
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Say hello
              ansible.builtin.debug:
                msg: hello
        """))
    proc = run([tool("ansible-playbook", "pip install ansible-core"), str(play)], isolated_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Playbook run took" in proc.stdout
    assert "SLOWEST TASKS" in proc.stdout and "Say hello" in proc.stdout


@pytest.mark.parametrize("kind, name, path", [
    ("module", "thrashlab_machine", ROLE / "library"),
    ("module", "thrashlab_build", ROLE / "library"),
    ("module", "thrashlab_kmod", ROLE / "library"),
    ("callback", "thrashlab_timer", None),
    ("inventory", "thrashlab", None),
], ids=lambda v: v if isinstance(v, str) else "")
def test_plugin_documentation_parses(kind, name, path, isolated_env):
    """ansible-doc shows each of our plugins (their DOCUMENTATION is valid YAML with options)."""
    cmd = [tool("ansible-doc", "pip install ansible-core"), "-t", kind, "--json", name]
    if path is not None:
        cmd[1:1] = ["-M", str(path)]
    proc = run(cmd, isolated_env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[name]["doc"]
    assert doc["short_description"] and doc.get("options")


# --- Vagrantfile -------------------------------------------------------------

def vagrant_validate(env) -> subprocess.CompletedProcess:
    vagrant = tool("vagrant", "apt-get install --no-install-recommends vagrant")
    plugins = run([vagrant, "plugin", "list"], env, timeout=120).stdout
    if "vagrant-libvirt" in plugins:
        # validates the libvirt provider's settings too
        cmd, env = [vagrant, "validate"], {**env, "VAGRANT_DEFAULT_PROVIDER": "libvirt"}
    else:
        # no provider installed (Debian's vagrant alone): validate the rest
        cmd = [vagrant, "validate", "--ignore-provider"]
    return run(cmd, env, timeout=300)


LAB_FILES = sorted((REPO / "labs").glob("*.yml")) + [REPO / "lab.yml"]


@pytest.mark.parametrize("lab", LAB_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_vagrant_validate(lab, isolated_env):
    from thrashlab.lab import load_lab
    proc = vagrant_validate({**isolated_env, "THRASHLAB_LAB": str(lab)})
    if "sid" in {m.suite for m in load_lab(lab).machines}:
        # Debian publishes no sid box: said plainly, naming the machine.
        assert proc.returncode != 0
        assert "suite sid: Debian publishes no Vagrant box" in proc.stdout + proc.stderr
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


@pytest.mark.parametrize("text, reason", [
    ("machines:\n  - name: x\n    memory_mb: 100\n", "at least 192"),
    ("machines:\n  - name: Bad_Name\n    memory_mb: 256\n", "lower-case"),
    ("machines:\n  - name: a\n    memory_mb: 256\n  - name: a\n    memory_mb: 256\n", "duplicate"),
    ("defaults:\n  disk_gb: 3\nmachines:\n  - name: a\n    memory_mb: 256\n", "unknown key"),
    ("machines: [\n", "not valid YAML"),
    ("machines:\n  - name: a\n    memory_mb: 256\n    suite: buster\n", "suite is \"buster\", expected one of"),
])
def test_vagrant_bad_lab_file_is_a_clear_error(text, reason, tmp_path, isolated_env):
    lab = tmp_path / "bad.yml"
    lab.write_text(text)
    proc = vagrant_validate({**isolated_env, "THRASHLAB_LAB": str(lab)})
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert str(lab) in out and reason in out, out


def test_vagrant_reads_lab_defaults_like_the_python_parser():
    """The Vagrantfile's reader and thrashlab/lab.py agree on every preset."""
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby is not installed (it comes with vagrant)")
    from thrashlab.lab import load_lab

    # Evaluate only the Vagrantfile's lab reader (the module before the first use of Vagrant.configure).
    source = (REPO / "Vagrantfile").read_text()
    reader = source[source.index("module ThrashlabLab"):source.index("module ThrashlabHostKeys")]
    script = "require 'yaml'; require 'json'; ROOT = ARGV[0]\n" + reader + \
        "\nputs JSON.generate(ARGV[1..].map { |p| ThrashlabLab.load(p) })\n"
    proc = subprocess.run([ruby, "-e", script, str(REPO)] + [str(p) for p in LAB_FILES],
                          text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for path, got in zip(LAB_FILES, json.loads(proc.stdout)):
        lab = load_lab(path)
        assert got["name"] == lab.name
        assert [{k: g[k] for k in m.as_dict()} for g, m in zip(got["machines"], lab.machines)] == \
            [m.as_dict() for m in lab.machines]


# --- The role's modules --------------------------------------------------------

def load_module(name: str, where: str = "library"):
    spec = importlib.util.spec_from_file_location(name, ROLE / where / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_swapfile_fstab_edit():
    m = load_module("thrashlab_swap", "module_utils")
    fstab = ["UUID=1 / ext4 defaults 0 1", "/dev/vda5 none swap sw 0 0", "# a comment"]
    ours = "/swapfile.thrashlab none swap sw 0 0"
    # added, others kept
    assert m.desired_fstab(fstab, "/swapfile.thrashlab", True, False) == fstab + [ours]
    # others commented out
    out = m.desired_fstab(fstab, "/swapfile.thrashlab", True, True)
    assert out[1].startswith("# ") and out[1].endswith("/dev/vda5 none swap sw 0 0") and out[-1] == ours
    # stable: a second pass changes nothing
    assert m.desired_fstab(out, "/swapfile.thrashlab", True, True) == out
    # kept in place when present, removed when size 0
    present = ["/swapfile.thrashlab none swap sw 0 0", "UUID=1 / ext4 defaults 0 1"]
    assert m.desired_fstab(present, "/swapfile.thrashlab", True, False) == present
    assert m.desired_fstab(present, "/swapfile.thrashlab", False, False) == present[1:]


def test_swapfile_with_holes_is_not_good(tmp_path):
    m = load_module("thrashlab_swap", "module_utils")
    page = os.sysconf("SC_PAGE_SIZE")
    size = 1024 * 1024
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(size)
        f.seek(page - 10)
        f.write(b"SWAPSPACE2")
    assert not m.is_good_swapfile(str(sparse), size)  # holes: swapon would refuse it
    full = tmp_path / "full"
    data = bytearray(b"\1" * size)
    data[page - 10:page] = b"SWAPSPACE2"
    full.write_bytes(bytes(data))
    assert m.is_good_swapfile(str(full), size)
    assert not m.is_good_swapfile(str(full), 2 * size)  # another size
    assert not m.is_good_swapfile(str(tmp_path / "absent"), size)


def test_build_module_builds_only_what_changed(tmp_path, isolated_env):
    """The pack (action plugin) and build (module) pair, on the controller with a local connection."""
    if not shutil.which("make") or not shutil.which("cc"):
        pytest.skip("make and cc are not installed (apt-get install make gcc)")
    src = tmp_path / "src"
    for tree, product in (("one", "a.out"), ("two", "b.out")):
        (src / tree).mkdir(parents=True)
        (src / tree / "input.txt").write_text(f"{tree}\n")
        (src / tree / "Makefile").write_text(f"{product}: input.txt\n\tcp input.txt {product}\n")
        (src / tree / "junk.o").write_text("build product, never copied\n")
    dest = tmp_path / "dest"
    result = tmp_path / "result.json"
    play = tmp_path / "build.yml"
    play.write_text(textwrap.dedent(f"""\
        - name: Build
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Build the trees
              thrashlab_build:
                src: {src}
                dest: {dest}
                exclude: ["*.o"]
                trees:
                  - {{name: one, products: [a.out]}}
                  - {{name: two, products: [b.out]}}
              register: built
            - name: Save the result
              ansible.builtin.copy:
                content: "{{{{ built | to_json }}}}"
                dest: {result}
                mode: "0644"
        """))
    env = {**isolated_env, "ANSIBLE_LIBRARY": str(ROLE / "library"),
           "ANSIBLE_ACTION_PLUGINS": str(ROLE / "action_plugins"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    playbook = tool("ansible-playbook", "pip install ansible-core")

    def build():
        proc = run([playbook, "-i", "localhost,", "-c", "local", str(play)], env)
        return proc, (json.loads(result.read_text()) if proc.returncode == 0 else None)

    proc, r = build()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert r["changed"] and sorted(r["built"]) == ["one", "two"]
    assert (dest / "one" / "a.out").read_text() == "one\n"
    assert not (dest / "one" / "junk.o").exists()
    assert sorted(r["files"]) == ["one/Makefile", "one/input.txt", "two/Makefile", "two/input.txt"]

    proc, r = build()
    assert not r["changed"] and r["built"] == []  # nothing changed: nothing built

    (src / "two" / "input.txt").write_text("two, edited\n")
    proc, r = build()
    assert r["built"] == ["two"]
    assert (dest / "two" / "b.out").read_text() == "two, edited\n"

    (src / "one" / "Makefile").write_text("a.out:\n\tfalse\n")
    proc, r = build()
    assert proc.returncode != 0 and "building one failed" in proc.stdout
    (src / "one" / "Makefile").write_text("a.out: input.txt\n\tcp input.txt a.out\n")
    proc, r = build()  # the failed build left no stamp: built again
    assert r["built"] == ["one"]


def test_vagrant_host_key_pinning(tmp_path):
    """The Vagrantfile's ThrashlabHostKeys with a stand-in for a Vagrant machine."""
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby is not installed (it comes with vagrant)")
    source = (REPO / "Vagrantfile").read_text()
    pinner = source[source.index("module ThrashlabHostKeys"):source.index("# Vagrant passes Ansible")]
    known_hosts = tmp_path / "state" / "vagrant" / "known_hosts"
    script = textwrap.dedent("""\
        require "fileutils"
        KNOWN_HOSTS = ARGV[0]
        class FakeComm
          def initialize(keys); @keys = keys; end
          def execute(cmd)
            raise "unexpected command #{cmd}" unless cmd.include?("ssh_host_")
            yield :stdout, @keys
          end
        end
        class FakeUI; def info(_msg); end; end
        FakeMachine = Struct.new(:name, :ssh_info, :communicate, :ui)
        def machine(name, host, port, keys)
          FakeMachine.new(name.to_sym, { host: host, port: port }, FakeComm.new(keys), FakeUI.new)
        end
        """) + pinner + textwrap.dedent("""\
        a = machine("small", "127.0.0.1", 2222, "ssh-ed25519 AAAA1 root@small\\necdsa-sha2-nistp256 BBBB1 root@small\\n")
        b = machine("big", "192.0.2.20", 22, "ssh-ed25519 CCCC1 root@big\\n")
        ThrashlabHostKeys.pin(a)
        ThrashlabHostKeys.pin(b)
        # recreated machine on the same port: new key replaces the old one
        ThrashlabHostKeys.pin(machine("small", "127.0.0.1", 2222, "ssh-ed25519 AAAA2 root@small\\n"))
        puts File.read(KNOWN_HOSTS)
        puts "--"
        ThrashlabHostKeys.unpin(b)
        puts File.read(KNOWN_HOSTS)
        """)
    proc = subprocess.run([ruby, "-e", script, str(known_hosts)], text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pinned, after_unpin = proc.stdout.split("--\n")
    assert pinned.splitlines() == [
        "192.0.2.20 ssh-ed25519 CCCC1 thrashlab-vagrant:big",
        "[127.0.0.1]:2222 ssh-ed25519 AAAA2 thrashlab-vagrant:small",
    ]
    assert after_unpin.splitlines() == ["[127.0.0.1]:2222 ssh-ed25519 AAAA2 thrashlab-vagrant:small"]
