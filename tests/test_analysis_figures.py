"""Figures (PNG and SVG) and the self-contained HTML report, on copies of the fixtures."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests/fixtures/results"
SMALL_COLOUR, LARGE_COLOUR = "#1f77b4", "#ff7f0e"   # lab order: small first, large second


def analysis(*args):
    return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture()
def run(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURES / "good", d)
    return d


def assert_figure(path: Path):
    assert path.is_file() and path.stat().st_size > 1000, path
    if path.suffix == ".png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image
        h, w, _ = matplotlib.image.imread(path).shape
        assert w >= 600 and h >= 400
    else:
        text = path.read_text()
        assert text.startswith("<?xml") and "<svg" in text and text.rstrip().endswith("</svg>")


def test_compare_figures_and_where_they_are_printed(run):
    p = analysis("compare", run)
    assert p.returncode == 0 and p.stderr == ""
    out = run / "analysis"
    assert p.stdout.endswith(f"\nfigures written: {out}/compare.png {out}/compare.svg\n")
    for ext in ("png", "svg"):
        assert_figure(out / f"compare.{ext}")
    svg = (out / "compare.svg").read_text()
    assert SMALL_COLOUR in svg and LARGE_COLOUR in svg
    assert "N (processes)" in svg or "N (processes)" in svg.replace("&#x20;", " ")
    # the slowest process, dashed, one curve per machine
    assert svg.count("slowest process") >= 2


def test_machine_readable_output_keeps_the_figure_line_on_stderr(run):
    p = analysis("compare", run, "--json")
    assert p.returncode == 0
    assert [r["thrashing_n"] for r in json.loads(p.stdout)] == [3, None]
    out = run / "analysis"
    assert p.stderr == f"figures written: {out}/compare.png {out}/compare.svg\n"


def test_case1_and_case2_figures(run):
    p = analysis("case1", run)
    assert p.returncode == 0, p.stderr
    out = run / "analysis"
    names = [f"case1-{m}.{ext}" for m in ("small", "large") for ext in ("png", "svg")]
    assert p.stdout.endswith("figures written: " + " ".join(str(out / n) for n in names) + "\n")
    for n in names:
        assert_figure(out / n)
    # one colour per machine: the large machine's figure is drawn in its colour only
    large_svg = (out / "case1-large.svg").read_text()
    assert LARGE_COLOUR in large_svg and SMALL_COLOUR not in large_svg
    p = analysis("case2", run)
    assert p.returncode == 0, p.stderr
    for ext in ("png", "svg"):
        assert_figure(out / f"case2.{ext}")


def test_out_directory_option(run, tmp_path):
    other = tmp_path / "figs"
    p = analysis("case2", run, "--out", other, "--format", "markdown")
    assert p.returncode == 0
    assert (other / "case2.png").is_file() and (other / "case2.svg").is_file()
    assert not (run / "analysis").exists()


def test_colours_follow_the_lab_when_a_machine_failed(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURES / "warnings", d)
    p = analysis("compare", d)
    assert p.returncode == 0
    svg = (d / "analysis/compare.svg").read_text()
    assert SMALL_COLOUR in svg and LARGE_COLOUR in svg
    assert "#2ca02c" not in svg   # the third colour belongs to the failed machine 'tiny'


def test_report_is_self_contained_with_every_table_and_figure(run):
    p = analysis("report", run)
    assert p.returncode == 0, p.stderr
    target = run / "analysis" / "report.html"
    assert p.stdout == f"{target}\n" and p.stderr == ""
    html = target.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # every table
    for header in ("thrashing_n", "predicted_n", "peak_throughput",           # compare
                   "starved_at_n*", "slowest_at_n*",
                   "throughput", "slowest", "cpu_util", "majflt/s", "some_avg10", "overlap_s",   # case2
                   "minflt(prof)", "majflt(work)", "P(1-e^-A/P)", "expected"):  # case1
        assert f"<th>{header}</th>" in html, header
    assert html.count("<table>") == 5   # run, machines, compare, case2, case1
    assert "<td>pair-B</td>" in html and "<td class=\"num\">4.95M</td>" in html
    assert "<td class=\"num\">1.05k</td>" in html      # small's slowest process at N* = 3
    # every figure, its SVG inlined, ids unique in the page and every reference within it
    figures = re.findall(r"<figure><svg .*?</svg></figure>", html, re.S)
    assert len(figures) == 6     # compare, case2, case2-series-small/-large, case1-small, case1-large
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    assert set(re.findall(r'(?:href="#|url\(#)([^")]+)', html)) <= set(ids)
    assert figures[0].count("<title>small (256 MiB)\nN (processes) = ") == 8   # hover: throughput and CPU
    # nothing external
    assert not re.search(r"https?://|<script|<link|<img|@import|url\((?!#)", html, re.I)
    assert "src=" not in html
    # the metadata
    for text in ("0123456789abcdef0123456789abcdef01234567", "2026-11-25T23:40:00Z", "2026-11-25T23:52:10Z",
                 "6.1.0-28-amd64", "tcg", "Two small VMs", "case2_work_mb", "The rule for N*",
                 "starved: at least one process ran below E(N) / 20.", "N=2: paging (107.8 major faults/s", "Over time, around each knee"):
        assert text in html, text
    assert "None: every input file was read." in html


def test_report_lists_the_warnings(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURES / "warnings", d)
    out = tmp_path / "elsewhere" / "r.html"
    p = analysis("report", d, "-o", out)
    assert p.returncode == 0 and p.stdout == f"{out}\n"
    html = out.read_text()
    assert "machine &#x27;tiny&#x27; skipped" in html
    assert "work-2.json:1: invalid JSON" in html
    assert "failed: ssh: connection refused after 3 retries" in html
    # the warnings went to stderr too
    assert p.stderr.count("analysis: warning:") == 6


def test_report_on_a_broken_run_is_an_error(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURES / "truncated-profile", d)
    p = analysis("report", d)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == (f"analysis: error: {d}/small/case1/pair-A/profile.csv:13: "
                        "expected 7 fields, found 3 (file truncated?)\n")
    assert not (d / "analysis" / "report.html").exists()
    assert not (d / "analysis").exists()     # read everything before drawing anything
