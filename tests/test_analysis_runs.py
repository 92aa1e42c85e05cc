"""Runs as first-class objects: ``python -m analysis runs`` and ``compare RUN RUN ...``,
on copies of the hand-made result directories (tests/fixtures/results)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
F = ROOT / "tests" / "fixtures" / "results"


def analysis(*args, env=None):
    return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)


@pytest.fixture
def results(tmp_path):
    """A results directory: two complete runs, one with a corrupt manifest, one without
    any, latest -> good, and what is no run (logs, staging, a stray file, an empty dir)."""
    root = tmp_path / "results"
    root.mkdir()
    for name in ("good", "vm-sweep", "bad-manifest", "no-manifest"):
        shutil.copytree(F / name, root / name)
    os.symlink("good", root / "latest")
    (root / "logs").mkdir()
    (root / ".partial-x" / "small").mkdir(parents=True)
    (root / ".partial-x" / "small" / "facts.json").write_text("{}")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not a run\n")
    # the directories without a (usable) manifest: older than both complete runs
    for name in ("bad-manifest", "no-manifest"):
        os.utime(root / name, (1e9, 1e9))
    return root


def test_runs_json(results):
    p = analysis("runs", "--results", results, "--json")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    rows = json.loads(p.stdout)
    assert [r["run"] for r in rows] == ["vm-sweep", "good", "no-manifest", "bad-manifest"]
    by = {r["run"]: r for r in rows}
    good = by["good"]
    assert good == {"run": "good", "run_id": "20261125-234000-fixture", "path": str(results / "good"),
                    "lab": "default", "machines": ["small", "large"], "cases": ["case1", "case2"],
                    "started": "2026-11-25T23:40:00Z", "ended": "2026-11-25T23:52:10Z", "complete": True,
                    "reason": None, "git_revision": "0123456789abcdef0123456789abcdef01234567",
                    "git_dirty": False, "latest": True}
    assert by["vm-sweep"]["complete"] is True and by["vm-sweep"]["latest"] is False
    assert by["vm-sweep"]["cases"] == ["case2"] and by["vm-sweep"]["run_id"] == "fx-case2-sweep"
    assert by["no-manifest"]["complete"] is False and by["no-manifest"]["reason"] == "no manifest.json"
    assert by["no-manifest"]["machines"] == ["large", "small"]
    bad = by["bad-manifest"]
    assert bad["complete"] is False and bad["reason"].startswith("manifest.json:5: invalid JSON: ")
    assert bad["lab"] is None and bad["git_revision"] is None


def test_runs_text(results):
    p = analysis("runs", "--results", results)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["run", "lab", "machines", "cases", "started", "ended", "complete", "git",
                                "latest"]
    table = [ln.split() for ln in lines[2:6]]
    assert [r[0] for r in table] == ["vm-sweep", "good", "no-manifest", "bad-manifest"]
    assert table[1] == ["good", "default", "small,large", "case1,case2", "2026-11-25", "23:40:00", "2026-11-25",
                        "23:52:10", "yes", "0123456789ab", "*"]
    assert table[0][-2:] == ["yes", "7ddb0f42a516"]
    assert table[2] == ["no-manifest", "-", "large,small", "case1,case2", "-", "-", "no", "-"]
    assert "no-manifest: incomplete: no manifest.json" in p.stdout
    assert "bad-manifest: incomplete: manifest.json:5: invalid JSON" in p.stdout
    for skipped in ("logs", ".partial-x", "empty", "notes.txt", "latest "):
        assert not any(ln.startswith(skipped) for ln in lines)


def test_runs_dirty_and_failed_machine(results):
    man = json.loads((results / "good" / "manifest.json").read_text())
    man["git_dirty"] = True
    man["machines"]["large"] = {"status": "failed", "error": "connect: refused"}
    (results / "good" / "manifest.json").write_text(json.dumps(man))
    rows = {r["run"]: r for r in json.loads(analysis("runs", "--results", results, "--json").stdout)}
    assert rows["good"]["complete"] is False and rows["good"]["reason"] == "large failed (connect: refused)"
    text = analysis("runs", "--results", results).stdout
    assert "0123456789ab+dirty" in text and "good: incomplete: large failed (connect: refused)" in text


def test_runs_default_root_and_errors(results, tmp_path):
    p = analysis("runs", "--json", env={"THRASHLAB_RESULTS_DIR": str(results)})
    assert [r["run"] for r in json.loads(p.stdout)][:2] == ["vm-sweep", "good"]
    (tmp_path / "none").mkdir()
    p = analysis("runs", "--results", tmp_path / "none", "--json")
    assert (p.returncode, p.stdout) == (0, "[]\n")
    p = analysis("runs", "--results", tmp_path / "missing")
    assert p.returncode == 2 and p.stderr.startswith("analysis: error: ") and "Traceback" not in p.stderr


def test_compare_one_run_unchanged(results):
    """One RUN: byte for byte what compare printed before several were possible
    (the expected outputs of test_analysis_cli), whether given as a path or by name."""
    import test_analysis_cli as cli
    for fmt, expected in (((), cli.COMPARE_TEXT), (("--format", "csv"), cli.COMPARE_CSV),
                          (("--format", "markdown"), cli.COMPARE_MARKDOWN), (("--json",), cli.COMPARE_JSON)):
        p = analysis("compare", results / "good", "--no-plots", *fmt)
        assert (p.stdout, p.stderr, p.returncode) == (expected, "", 0)
    p = analysis("compare", "good", "--no-plots", env={"THRASHLAB_RESULTS_DIR": str(results)})
    assert (p.stdout, p.returncode) == (cli.COMPARE_TEXT, 0)


def test_compare_several_runs(results):
    p = analysis("compare", results / "good", results / "vm-sweep", "--no-plots", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [(r["run"], r["machine"]) for r in rows] == [("good", "small"), ("good", "large"),
                                                        ("vm-sweep", "small"), ("vm-sweep", "large")]
    assert list(rows[0])[:4] == ["run", "machine", "memory_mb", "kernel"]  # the kernel differs across runs
    assert [r["thrashing_n"] for r in rows] == [3, None, 4, None]
    # the rows of each run are that run's own compare rows, plus "run"
    alone = json.loads(analysis("compare", results / "good", "--no-plots", "--json").stdout)
    assert [{k: v for k, v in r.items() if k != "run"} for r in rows[:2]] == alone

    p = analysis("compare", results / "good", results / "vm-sweep", "--no-plots")
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["machine", "memory_mb", "kernel"]
    assert [ln.split()[0] for ln in lines[2:6]] == ["good/small", "good/large", "vm-sweep/small", "vm-sweep/large"]
    assert lines[2].split()[2] == "6.1.0-28-amd64" and lines[4].split()[2] == "6.1.0-50-amd64"
    assert "good/small: N*=3:" in p.stdout and "vm-sweep/small: N*=4:" in p.stdout

    p = analysis("compare", results / "good", results / "vm-sweep", "--no-plots", "--format", "csv")
    head, *body = p.stdout.splitlines()
    assert head.startswith("run,machine,memory_mb,kernel,") and body[2].startswith("vm-sweep,small,256,")


def test_compare_several_runs_names_and_figure(results, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(F / "good", other / "good")
    p = analysis("compare", results / "good", other / "good", "--no-plots", "--json")
    assert [r["run"] for r in json.loads(p.stdout)][::2] == ["results/good", "other/good"]
    p = analysis("compare", results / "good", results / "latest", "--no-plots")
    assert p.returncode == 2 and "the same run twice" in p.stderr
    p = analysis("compare", results / "good", results / "vm-sweep", "--out", tmp_path / "fig")
    assert p.returncode == 0, p.stderr
    assert sorted(q.name for q in (tmp_path / "fig").iterdir()) == ["compare-runs.png", "compare-runs.svg"]
    svg = (tmp_path / "fig" / "compare-runs.svg").read_text()
    assert "vm-sweep/large" in svg and "good/small" in svg
    p = analysis("compare", results / "good", results / "bad-manifest", "--no-plots")
    assert p.returncode == 2 and "bad-manifest/manifest.json" in p.stderr
