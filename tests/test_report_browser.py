"""The HTML report in a real browser: Debian's headless Chromium, driven over the
DevTools protocol on a pipe (no port is opened), on the report of a copy of the
``good`` fixture.

Each check is also run on a damaged copy of the page, to prove that it fails
when it should: a remote image, a broken image, a figure whose marker shapes
are gone, a hidden page, a table before the thrashing table.

Chromium maps every host name to "not found" (``--host-resolver-rules``), so
neither the page nor the browser's own background requests reach a network.
Without chromium the tests skip, unless THRASHLAB_REQUIRE_ALL=1 (then they
fail): ./test.sh installs it.
"""
import base64
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/results/good"
CHROMIUM = shutil.which("chromium")
VIEWPORT = (1280, 2000)
TIMEOUT_S = 60



class Chromium:
    """A headless Chromium whose DevTools protocol runs over fds 3 (commands) and 4 (replies)."""

    def __init__(self, profile: Path, log: Path):
        self.log = log
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--host-resolver-rules=MAP * ~NOTFOUND",
                "--hide-scrollbars", "about:blank"]
        # bash (dash takes single-digit fds only) puts the pipes where Chromium expects them;
        # exec keeps the PID.
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{commands_r} 4>&{replies_w}', *args],
                pass_fds=(commands_r, replies_w), stdout=output, stderr=output, start_new_session=True)
        os.close(commands_r)
        os.close(replies_w)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._last_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self.events.append(self._receive())

    def _receive(self) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], TIMEOUT_S)
            assert ready, f"chromium did not answer within {TIMEOUT_S} s (its output: {self.log})"
            chunk = os.read(self._replies, 1 << 20)
            assert chunk, f"chromium closed its DevTools pipe (its output: {self.log})"
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=TIMEOUT_S)
        except Exception:
            os.killpg(self.process.pid, signal.SIGKILL)   # its own session: only what it started
            self.process.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)


class Page:
    """One page loaded in its own tab: what it requested, and what the browser made of it."""

    def __init__(self, browser: Chromium, path: Path):
        self.browser = browser
        self.url = path.as_uri()
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.call("Emulation.setDeviceMetricsOverride", self.session, width=VIEWPORT[0],
                     height=VIEWPORT[1], deviceScaleFactor=1, mobile=False)
        browser.call("Network.enable", self.session)
        browser.call("Page.enable", self.session)
        browser.call("Page.navigate", self.session, url=self.url)
        browser.wait_for("Page.loadEventFired", self.session)

    def evaluate(self, expression: str):
        result = self.browser.call("Runtime.evaluate", self.session, expression=expression,
                                   returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"]["value"]

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e.get("sessionId") == self.session and e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self) -> bytes:
        return base64.b64decode(self.browser.call("Page.captureScreenshot", self.session, format="png")["data"])

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")


# ---------------------------------------------------------------- the checks, each returns what is wrong

def outside_requests(page: Page) -> list[str]:
    """Every URL the page asked for, other than the file itself and data: URLs."""
    return [u for u in page.requests() if u != page.url and not u.startswith("data:")]


OUTSIDE_REFERENCES_JS = r"""
[...document.querySelectorAll("*")].flatMap(el => [...el.attributes]
    .filter(a => /^(src|srcset|href|xlink:href|poster|data|action)$/.test(a.name))
    .filter(a => !a.value.startsWith("#") && !a.value.startsWith("data:"))
    .map(a => `<${el.localName} ${a.name}="${a.value}">`))
"""

BROKEN_FIGURES_JS = r"""
(() => {
  const broken = [];
  document.querySelectorAll("img").forEach((img, i) => {
    if (!img.complete || img.naturalWidth === 0) broken.push(`image ${i} did not load`);
  });
  const figures = [...document.querySelectorAll("figure > svg")];
  figures.forEach((svg, i) => {
    const box = svg.getBoundingClientRect();
    if (box.width < 300 || box.height < 200) broken.push(`figure ${i} is ${box.width} x ${box.height}`);
    const target = id => { const el = document.getElementById(id); return el && svg.contains(el); };
    for (const use of svg.querySelectorAll("use"))
      if (!target(use.href.baseVal.slice(1))) broken.push(`figure ${i}: <use> of a missing ${use.href.baseVal}`);
    for (const el of svg.querySelectorAll("[clip-path]")) {
      const id = el.getAttribute("clip-path").match(/^url\(#(.+)\)$/)[1];
      if (!target(id)) broken.push(`figure ${i}: clip path ${id} missing`);
    }
  });
  return {figures: figures.length, broken};
})()
"""

# Each hover target scrolled into view: the element under its centre (what the pointer would
# rest on) must be a titled hover target of the same figure, not something drawn over it.
HOVER_JS = r"""
(() => [...document.querySelectorAll("figure > svg")].map(svg => {
  const titles = [], covered = [];
  for (const circle of svg.querySelectorAll("[id$='hover-points'] > circle")) {
    const title = circle.querySelector("title").textContent;
    titles.push(title);
    circle.scrollIntoView({block: "center", inline: "center"});
    const box = circle.getBoundingClientRect();
    const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
    if (!hit || hit.localName !== "circle" || !svg.contains(hit) || !hit.querySelector("title"))
      covered.push(title);
  }
  window.scrollTo(0, 0);
  return {label: svg.getAttribute("aria-label"), titles, covered};
}))()
"""


def blank_reasons(png: bytes) -> list[str]:
    import matplotlib.image
    import numpy as np
    pixels = (matplotlib.image.imread(io.BytesIO(png))[:, :, :3] * 255).round().astype(np.uint8)
    inked = (pixels < 240).any(axis=2).mean()
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    reasons = []
    if inked < 0.03:
        reasons.append(f"only {inked:.1%} of the pixels are not white")
    if colours < 50:
        reasons.append(f"only {colours} distinct colours")
    return reasons


class BodyOutline(HTMLParser):
    """The elements directly in <body>, in order: (tag, text, header cells of a table)."""

    def __init__(self, dom: str):
        super().__init__()
        self.children: list[tuple[str, str, list[str]]] = []
        self._depth = None    # within <body>: 0 between its children
        self._open = None
        self._in_th = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self._depth = 0
            return
        if self._depth is None:
            return
        if self._depth == 0:
            self._open = [tag, "", []]
            self.children.append(self._open)
        self._in_th = tag == "th"
        if self._in_th:
            self._open[2].append("")
        if tag not in ("area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"):
            self._depth += 1

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1
        self._in_th = False

    def handle_data(self, data):
        if self._open is not None and self._depth:
            self._open[1] += data
            if self._in_th:
                self._open[2][-1] += data


def thrashing_table_not_first(dom: str) -> list[str]:
    """The heading, the thrashing section's heading, then its table: anything else is reported."""
    children = [c for c in BodyOutline(dom).children if c[1].strip() or c[0] == "table"]
    wrong = []
    tags = [c[0] for c in children[:3]]
    if tags != ["h1", "h2", "table"]:
        wrong.append(f"the page starts with {tags}, not h1, h2, table")
    elif "Thrashing point" not in children[1][1] or "thrashing_n" not in children[2][2]:
        wrong.append(f"the first table follows {children[1][1]!r} and has {children[2][2]}")
    return wrong


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require(CHROMIUM is not None, "chromium is not installed (./test.sh installs Debian's package)")
    home = tmp_path_factory.mktemp("chromium")
    chromium = Chromium(home / "profile", home / "chromium.log")
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(FIXTURE, run)
    p = subprocess.run([sys.executable, "-m", "analysis", "report", run], cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    return run / "analysis" / "report.html"


@pytest.fixture(scope="module")
def page(browser, report) -> Page:
    return Page(browser, report)


def damaged(report: Path, name: str, old: str, new: str) -> Path:
    """A copy of the report beside it (same directory: same figure files in reach) with one change."""
    text = report.read_text(encoding="utf-8")
    assert old in text, old
    copy = report.with_name(name)
    copy.write_text(text.replace(old, new, 1), encoding="utf-8")
    return copy


# ---------------------------------------------------------------- tests

def test_no_request_leaves_the_file(page):
    assert page.requests() == [page.url]
    assert outside_requests(page) == []
    assert page.evaluate(OUTSIDE_REFERENCES_JS) == []


def test_a_remote_image_is_caught(browser, report):
    copy = damaged(report, "remote.html", "</h1>", '</h1><img alt="" src="http://example.invalid/x.png">')
    page = Page(browser, copy)
    assert outside_requests(page) == ["http://example.invalid/x.png"]
    assert page.evaluate(OUTSIDE_REFERENCES_JS) == ['<img src="http://example.invalid/x.png">']


def test_every_figure_renders(page, report):
    result = page.evaluate(BROKEN_FIGURES_JS)
    assert result["broken"] == []
    # compare, case2, case2-series-small/-large, case1-small/-large: every SVG written beside the report
    assert result["figures"] == len(list(report.parent.glob("*.svg"))) == 6


def test_a_broken_image_or_figure_is_caught(browser, report):
    copy = damaged(report, "broken-image.html", "</h1>", '</h1><img alt="" src="data:image/png;base64,AAAA">')
    assert Page(browser, copy).evaluate(BROKEN_FIGURES_JS)["broken"] == ["image 0 did not load"]
    marker = re.search(r'<path id="(f1-m[0-9a-f]+)"', report.read_text(encoding="utf-8"))[1]
    copy = damaged(report, "broken-figure.html", f'id="{marker}"', 'id="gone"')
    broken = Page(browser, copy).evaluate(BROKEN_FIGURES_JS)["broken"]
    assert broken and all(b == f"figure 0: <use> of a missing #{marker}" for b in broken)


def test_the_page_is_not_blank(page, report):
    png = page.screenshot()
    report.with_name("report-screenshot.png").write_bytes(png)   # to look at after a failure
    assert blank_reasons(png) == []


def test_a_blank_page_is_caught(browser, report):
    copy = damaged(report, "hidden.html", "</style>", "body { visibility: hidden; }</style>")
    reasons = blank_reasons(Page(browser, copy).screenshot())
    assert len(reasons) == 2, reasons


def test_the_thrashing_table_comes_first(page):
    assert thrashing_table_not_first(page.dom()) == []


def test_a_table_before_the_thrashing_table_is_caught(browser, report):
    copy = damaged(report, "reordered.html", "</h1>", "</h1><h2>Run</h2><table><tr><th>run id</th></tr></table>")
    assert thrashing_table_not_first(Page(browser, copy).dom()) == [
        "the first table follows 'Run' and has ['run id']"]


def test_hovering_a_point_shows_its_values(page):
    figures = page.evaluate(HOVER_JS)
    assert len(figures) == 6
    for figure in figures:
        assert figure["titles"], figure["label"]
        assert figure["covered"] == [], figure["label"]
    # compare: one titled point per N of each machine's sweep, for each of its three curves
    compare = figures[0]
    assert compare["label"].startswith("throughput")
    sweeps = {m: sorted(int(d.name[2:]) for d in (FIXTURE / m / "case2").glob("n-*")) for m in ("small", "large")}
    for machine, ns in sweeps.items():
        curves = {"throughput": (f"{machine} (", "accesses/s"),
                  "slowest": (f"{machine}: slowest process\n", "accesses/s"),
                  "utilization": (f"{machine} (", "CPU utilization")}
        for curve, (name, measure) in curves.items():
            points = [t for t in compare["titles"] if t.startswith(name) and f"\n{measure}" in t]
            assert sorted(int(re.search(r"\nN \(processes\) = (\d+)\n", t)[1]) for t in points) == ns, \
                (machine, curve, points)
    # the values are the data's: small's N* = 3, its summed throughput there (the table's 4.95M)
    assert "small: N* = 3\nN (processes) = 3\naccesses/s = 4,951,050" in compare["titles"]
