"""The Ansible filters of the case roles (how the playbooks read the runner's output)."""
from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import io
import os
import shutil
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _load(rel: str):
    spec = importlib.util.spec_from_file_location(Path(rel).stem, REPO / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


runner_filters = _load("playbooks/roles/case_runner/filter_plugins/thrashlab_runner.py")
collect_filters = _load("playbooks/roles/collect/filter_plugins/thrashlab_collect.py")

OK_OUT = ("runner: N=2 r=1: 1.0M accesses/s\r\nTHRASHLAB-SUMMARY N=2 r=1: 1.0M accesses/s\r\n"
          'THRASHLAB-RESULT {"n": 2, "repeat": 1, "points": [{"n": 1, "repeat": 1}]}\r\n')
ERR_OUT = 'runner: error: pfprof is not loaded\nTHRASHLAB-RESULT {"error": "pfprof is not loaded (no /proc/pfprof/status)"}\n'


def test_result_and_summary():
    f = runner_filters
    assert f.runner_result({"stdout": OK_OUT})["n"] == 2
    assert f.runner_result(OK_OUT)["points"] == [{"n": 1, "repeat": 1}]
    assert f.runner_result({"stdout": "motd only"}) == {}
    assert f.runner_summary({"stdout": OK_OUT}) == "N=2 r=1: 1.0M accesses/s"
    assert f.runner_summary({"stdout": ERR_OUT}) == "error: pfprof is not loaded (no /proc/pfprof/status)"
    # in a loop label: another item's (stale) result shows nothing
    assert f.runner_summary({"stdout": OK_OUT, "item": {"n": 2, "repeat": 1}}, {"n": 3, "repeat": 1}) == ""
    assert f.runner_summary({"stdout": OK_OUT, "item": {"n": 2, "repeat": 1}}, {"n": 2, "repeat": 1}) != ""
    assert f.runner_summary({"unreachable": True, "msg": "x"}) == "machine unreachable"


def test_error_of_a_failed_task():
    f = runner_filters.thrashlab_runner_error
    assert f({"rc": 1, "stdout": ERR_OUT}) == "pfprof is not loaded (no /proc/pfprof/status)"
    assert f({"rc": 137, "stdout": "runner: settling\n"}).startswith("exit 137: killed by SIGKILL (the OOM killer?)")
    assert f({"unreachable": True, "msg": "ssh: connect: Connection refused"}) == \
        "machine unreachable: ssh: connect: Connection refused"
    loop = {"results": [{"item": {"n": 1, "repeat": 1}, "rc": 0, "stdout": OK_OUT},
                        {"item": {"n": 4, "repeat": 1}, "failed": True, "rc": 1, "stdout": ERR_OUT},
                        {"item": {"n": 5, "repeat": 1}, "failed": True, "rc": 1, "stdout": ERR_OUT}]}
    assert f(loop) == "at N=4 repeat=1: pfprof is not loaded (no /proc/pfprof/status)"
    assert f({"results": [{"item": "B", "unreachable": True, "msg": "timeout"}]}) == \
        "at pair B: machine unreachable: timeout"
    assert f({"msg": "Destination directory /opt/x does not exist"}) == "Destination directory /opt/x does not exist"


def test_runner_zipapp_payload_round_trip(tmp_path):
    package = REPO / "runner" / "thrashlab_runner"
    pay = runner_filters.zipapp_payload(str(package))
    data = gzip.decompress(base64.b64decode(pay["b64"]))
    assert data == runner_filters.runner_zipapp(str(package)) and pay["sha256"] == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert names == sorted(names) and names[0] == "__main__.py"
        assert zf.read("__main__.py") == (package / "__main__.py").read_bytes()
        assert {n.split("/", 1)[1] for n in names[1:]} == {p.name for p in package.glob("*.py")}
    # the same sources give the same bytes (the install task then stays unchanged):
    # not their times, modes or compiled leftovers
    copy = tmp_path / "thrashlab_runner"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for p in copy.iterdir():
        os.utime(p, (1e9, 1e9))
        p.chmod(0o600)
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"x")
    assert runner_filters.zipapp_payload(str(copy))["sha256"] == pay["sha256"]
    # the real runner fits easily in one command line (a single argument may hold 128 KiB)
    assert len(pay["b64"]) < 64 * 1024
    assert runner_filters.elapsed_since("bad") == "?"


def test_host_errors():
    hv = {"small": {"case_runner_error": "case2: start:\n  pfprof   missing"}, "large": {}}
    assert collect_filters.thrashlab_host_errors(["small", "large", "gone"], hv) == \
        ["--host-error", "small=case2: start: pfprof missing"]
