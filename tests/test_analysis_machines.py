"""compare shows what each machine was beyond RAM, read back from its facts."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOOD = REPO / "tests" / "fixtures" / "results" / "good"


def compare(run: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis", "compare", "--no-plots", *args, str(run)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture
def mixed_run(tmp_path) -> Path:
    """The measured fixture, with its large machine read back as another kind of machine."""
    run = tmp_path / "run"
    shutil.copytree(GOOD, run)
    man = json.loads((run / "manifest.json").read_text())
    man["lab"]["machines"][1]["sysctl"] = {"vm.swappiness": 150}
    (run / "manifest.json").write_text(json.dumps(man))
    for name, extra in (("small", {"suite": "bookworm", "swap_type": "file", "mglru": "off", "online_cpus": 1,
                                   "vm_sysctl": {"vm.swappiness": "60"}}),
                        ("large", {"suite": "trixie", "kernel": "6.12.1-amd64", "swap_type": "zswap",
                                   "zswap_compressor": "lz4", "mglru": "off", "online_cpus": 2,
                                   "vm_sysctl": {"vm.swappiness": "150"}})):
        path = run / name / "facts.json"
        facts = json.loads(path.read_text())
        facts.update(extra)
        path.write_text(json.dumps(facts))
    return run


def test_json_always_carries_the_attributes(mixed_run):
    plain = compare(GOOD, "--json")
    assert plain.returncode == 0, plain.stderr
    for row in json.loads(plain.stdout):
        assert {"kernel", "suite", "swap_type", "mglru", "cpus", "sysctl"} <= row.keys()
    proc = compare(mixed_run, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["machine"]: r for r in json.loads(proc.stdout)}
    assert (rows["large"]["suite"], rows["large"]["swap_type"], rows["large"]["cpus"]) == ("trixie", "zswap", 2)
    assert rows["large"]["zswap_compressor"] == "lz4" and rows["small"]["zswap_compressor"] is None
    assert rows["large"]["sysctl"] == {"vm.swappiness": "150"}  # asked by the lab, value read back
    assert rows["small"]["sysctl"] == {}  # nothing asked
    assert rows["large"]["thrashing_n"] == json.loads(plain.stdout)[1]["thrashing_n"]


def test_text_has_a_column_for_each_attribute_that_differs(mixed_run):
    text = compare(mixed_run).stdout
    header = text.splitlines()[0].split()
    for attribute in ("kernel", "suite", "swap_type", "cpus", "sysctl"):
        assert attribute in header, header
    assert "mglru" not in header  # the same on both machines
    assert "swappiness=150" in text and "zswap" in text
    # a run whose machines differ only in RAM shows no attribute column
    assert "suite" not in compare(GOOD).stdout.splitlines()[0]
