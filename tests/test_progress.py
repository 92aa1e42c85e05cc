"""Progress on stderr: the plain lines (CI logs, pipes) stay as they were; in
a terminal, a live view with a row per machine, driven here through a
pseudo-terminal. No VMs."""
from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from thrashlab import progress as progress_mod
from thrashlab.progress import AnsibleOutput, MachineEvent, Progress, wants_live_view
from thrashlab_job import job as job_mod
from thrashlab_job.job import Job

ROOT = Path(__file__).resolve().parent.parent

SWEEP_LINES = [
    "PLAY [Case Study 2 on every machine] *******************************************",
    "TASK [case2 : Case Study 2 | one run per N and repeat (N processes of case2_work_mb MiB)] ***",
    "changed: [small] => (item=case2 N=1 repeat=1 [1/12, 0:15] N=1 r=1: 2.1M accesses/s)",
    "changed: [large] => (item=case2 N=1 repeat=1 [1/10, 0:16] N=1 r=1: 2.0M accesses/s)",
    "changed: [small] => (item=case2 N=2 repeat=1 [2/12, 0:31] N=2 r=1: 1.9M accesses/s)",
    "ok: [localhost] => (item=not a machine 1/2)",
    "changed: [small] => (item=case2 N=3 repeat=1 [3/12, 0:48] N=3 r=1: 1.1M accesses/s)",
    "changed: [small] => (item=case2 N=4 repeat=1 [4/12, 1:05] N=4 r=1: 0.4M accesses/s)",
]


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every elapsed time is 12.3 s."""
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: 112.3)
    return 100.0


def test_plain_lines_are_as_before(frozen_clock):
    out = io.StringIO()
    p = Progress(stream=out, start=frozen_clock)
    p.add_machines(["small", "large"])
    with p.showing():
        p.begin_step("sweep")
        p.say("booting (256 MiB, 1 vCPU, bookworm, tcg)", "small")
        p.say("testbed default: 2 VM(s) up")
        p.failed("ansible-playbook playbooks/case2.yml -e failed (exit 2)")
    assert out.getvalue() == ("[   12.3s] == sweep\n"
                              "[   12.3s] small: booting (256 MiB, 1 vCPU, bookworm, tcg)\n"
                              "[   12.3s] testbed default: 2 VM(s) up\n"
                              "[   12.3s] FAILED: ansible-playbook playbooks/case2.yml -e failed (exit 2)\n")


class FakeBed:
    def down(self):
        pass


def test_plain_job_output_and_summary_are_as_before(capsys):
    out = io.StringIO()
    job = Job(Progress(stream=out))

    def body():
        job.step("sweep", lambda: None)
        job.step("collect", job.command([sys.executable, "-c", "raise SystemExit(3)"]))
    assert job.run_on(FakeBed(), body) == 1
    assert re.sub(r"\[ +\d+\.\ds\]", "[t]", out.getvalue()) == (
        "[t] == sweep\n"
        "[t] == collect\n"
        "[t] FAILED: -c raise SystemExit(3) failed (exit 3)\n"
        "[t] == shutdown\n")
    rows = "".join(f"  {name:<36} {{8}}\n" for name in ("sweep", "collect", "shutdown", "total"))
    summary = capsys.readouterr().err
    assert summary.startswith("\nwhere the time went:\n")
    assert re.fullmatch(rows.replace("{8}", r" *\d+s"), summary.split(":\n", 1)[1])


class TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("env, live", [({}, True), ({"THRASHLAB_PLAIN_PROGRESS": "1"}, False),
                                       ({"THRASHLAB_PLAIN_PROGRESS": "0"}, True), ({"TERM": "dumb"}, False)])
def test_live_view_only_in_a_terminal_that_asks_for_it(monkeypatch, env, live):
    monkeypatch.delenv("THRASHLAB_PLAIN_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert wants_live_view(TTY()) is live
    assert wants_live_view(io.StringIO()) is False


def test_ansible_output_gives_each_machine_its_task_and_count():
    ansible = AnsibleOutput()
    events = [ansible.feed(line) for line in SWEEP_LINES + [
        "TASK [case2 : Case Study 2 | finish (the DONE marker)] ***",
        "changed: [large]",
        "fatal: [large]: FAILED! => {\"changed\": false, \"msg\": \"no space left\"}",
        "failed: [small] (item=case2 N=5 repeat=1 [5/12, 1:20]) => {\"rc\": 1}",
        "ok: [small -> localhost]",
        "TASK [bench : Bench | overhead rounds] ***",
        "changed: [small] => (item=round 3/5 [2m10s])",
        "small                      : ok=12   changed=9    unreachable=0    failed=0    skipped=1    rescued=0",
    ]]
    assert [e for e in events if e] == [
        MachineEvent("small", "case2 N=1 repeat=1 [1/12, 0:15] N=1 r=1: 2.1M accesses/s", 1, 12),
        MachineEvent("large", "case2 N=1 repeat=1 [1/10, 0:16] N=1 r=1: 2.0M accesses/s", 1, 10),
        MachineEvent("small", "case2 N=2 repeat=1 [2/12, 0:31] N=2 r=1: 1.9M accesses/s", 2, 12),
        MachineEvent("localhost", "not a machine 1/2", 1, 2),
        MachineEvent("small", "case2 N=3 repeat=1 [3/12, 0:48] N=3 r=1: 1.1M accesses/s", 3, 12),
        MachineEvent("small", "case2 N=4 repeat=1 [4/12, 1:05] N=4 r=1: 0.4M accesses/s", 4, 12),
        MachineEvent("large", "Case Study 2 | finish (the DONE marker)"),
        MachineEvent("large", "FATAL: Case Study 2 | finish (the DONE marker)"),
        MachineEvent("small", "FAILED: Case Study 2 | finish (the DONE marker)"),
        MachineEvent("small", "Case Study 2 | finish (the DONE marker)"),
        MachineEvent("small", "round 3/5 [2m10s]", 3, 5),
        MachineEvent("small", "done: ok=12 changed=9 unreachable=0 failed=0 skipped=1 rescued=0"),
    ]


# ------------------------------------------------------------ in a terminal

def run_in_terminal(code: str, env: dict | None = None, columns: int = 160) -> str:
    """Run Python code with stdin, stdout and stderr on a pseudo-terminal;
    return what it wrote there."""
    master, slave = pty.openpty()
    environ = {name: value for name, value in os.environ.items()
               if name not in ("THRASHLAB_PLAIN_PROGRESS", "NO_COLOR")}
    environ.update({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "40", **(env or {})})
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=slave, stdout=slave, stderr=slave,
                            cwd=ROOT, env=environ, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:  # past the deadline
            proc.kill()
        proc.wait()
    return b"".join(chunks).decode(errors="replace")


def frames(screen: str) -> list[list[str]]:
    """The live view's frames, each a list of rows, from what the terminal
    received: rich redraws by erasing lines and moving the cursor up."""
    text = re.sub(r"\x1b\[(2K|1A)", "\n", screen)          # a redraw starts a new line
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")
    lines = [line.rstrip() for line in text.split("\n")]
    found = []
    for i, line in enumerate(lines):
        if line.startswith("all "):
            rows = [line]
            for following in lines[i + 1:]:
                if not following.startswith(("small ", "large ")):
                    break
                rows.append(following)
            found.append(rows)
    return found


DRIVE_VIEW = """
    import time
    from thrashlab.progress import LiveProgress, make_progress
    p = make_progress()
    print("kind:", type(p).__name__, flush=True)
    p.add_machines(["small", "large"])
    with p.showing():
        p.begin_step("boot")
        p.say("booting (256 MiB, 1 vCPU, bookworm, tcg)", "small")
        p.say("SSH answers after 31s", "large")
        time.sleep(0.4)
        p.begin_step("sweep")
        if p.live:  # as the job: without a view, Ansible writes to the terminal itself
            for line in LINES:
                p.ansible_line(line)
        time.sleep(0.6)
    print("after the view", flush=True)
"""


def test_live_view_shows_each_machine_step_and_runs_done():
    screen = run_in_terminal(f"LINES = {SWEEP_LINES!r}\n" + textwrap.dedent(DRIVE_VIEW))
    assert "kind: LiveProgress" in screen
    shown = frames(screen)
    boot = next(f for f in shown if "SSH answers" in "".join(f))
    assert boot[1].split()[:2] == ["small", "boot"] and "booting (256 MiB" in boot[1]
    assert boot[2].split()[:2] == ["large", "boot"] and "SSH answers after 31s" in boot[2]
    last = shown[-1]
    assert last[0].split()[:2] == ["all", "sweep"]
    small, large = last[1], last[2]
    assert small.split()[:2] == ["small", "sweep"] and re.search(r" 4/12 +0:00:0\d ~0:00:\d\d left case2 N=4 ", small)
    assert large.split()[:2] == ["large", "sweep"] and re.search(r" 1/10 +0:00:0\d ~0:00:\d\d left case2 N=1 ", large)
    assert "localhost" not in screen
    # the plain lines stay above the view, as a log
    assert re.search(r"\[ +\d\.\ds\] small: booting \(256 MiB", screen)
    assert re.search(r"\[ +\d\.\ds\] == sweep", screen)


def test_plain_progress_switch_gives_plain_lines_in_a_terminal():
    screen = run_in_terminal(f"LINES = {SWEEP_LINES!r}\n" + textwrap.dedent(DRIVE_VIEW),
                             env={"THRASHLAB_PLAIN_PROGRESS": "1"})
    lines = [re.sub(r"\[ +\d\.\ds\]", "[t]", line) for line in screen.replace("\r", "").splitlines()]
    assert lines == ["kind: Progress", "[t] == boot", "[t] small: booting (256 MiB, 1 vCPU, bookworm, tcg)",
                     "[t] large: SSH answers after 31s", "[t] == sweep", "after the view"]
    assert "\x1b" not in screen


DRIVE_JOB = """
    import sys
    from thrashlab.progress import make_progress
    from thrashlab_job.job import Job

    class Bed:
        def down(self):
            pass

    # prints its arguments as lines, then stays long enough for the view to show them
    fake_ansible = ("import sys, time\\nfor line in sys.argv[1:]: print(line, flush=True)\\n"
                    "time.sleep(0.6)\\nsys.exit(2 if 'fatal' in ' '.join(sys.argv) else 0)")
    job = Job(make_progress())
    job.progress.add_machines(["small", "large"])

    def body():
        job.step("sweep", job.command([sys.executable, "-c", fake_ansible, *LINES], log_name="case2"))
        job.step("analysis", job.command([sys.executable, "-c",
                 "import sys; print('machine  N*'); print('[    0.2s] small: compared', file=sys.stderr)"]))
        job.step("collect", job.command([sys.executable, "-c", fake_ansible, "TASK [collect] ***",
                 'fatal: [large]: FAILED! => {"msg": "no route to host"}', "PLAY RECAP ***",
                 "large : ok=1 changed=0 unreachable=0 failed=1"], log_name="collect"))

    sys.exit(job.run_on(Bed(), body))
"""


def test_live_job_keeps_ansible_output_in_a_log_and_prints_failures_after_the_view(tmp_path):
    screen = run_in_terminal(f"LINES = {SWEEP_LINES!r}\n" + textwrap.dedent(DRIVE_JOB),
                             env={"THRASHLAB_RESULTS_DIR": str(tmp_path)})
    [log_dir] = (tmp_path / "logs").iterdir()
    assert (log_dir / "case2.log").read_text() == "".join(line + "\n" for line in SWEEP_LINES)
    assert "fatal: [large]" in (log_dir / "collect.log").read_text()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen).replace("\r", "")
    assert f"full output: {log_dir / 'case2.log'}" in plain
    assert "changed: [small]" not in plain  # Ansible's lines are in the log, not on the screen
    assert "machine  N*" in plain and "[    0.2s] small: compared" in plain  # other commands' output is shown
    sweep = next(f for f in frames(screen) if f[0].split()[1] == "sweep" and "4/12" in "".join(f))
    assert sweep[1].split()[:2] == ["small", "sweep"] and " 4/12 " in sweep[1]
    # after the view: the failure in full, then where the time went
    after = plain[plain.rindex("large shutdown"):]
    failure = re.search(r"FAILED: .*? failed \(exit 2\)\n"
                        r'fatal: \[large\]: FAILED! => \{"msg": "no route to host"\}\n'
                        r"PLAY RECAP \*\*\*\n"
                        r"large : ok=1 changed=0 unreachable=0 failed=1\n"
                        r"full output: (\S+)\n", after, re.S)
    assert failure and failure.group(1) == str(log_dir / "collect.log")
    assert after.index("FAILED:") < after.index("where the time went:")
    assert re.search(r"where the time went:\n  sweep .*\n  analysis .*\n  collect .*\n  shutdown .*\n  total ", after)


def test_failure_details_without_a_failure_line_are_the_last_lines(tmp_path):
    log = tmp_path / "setup.log"
    log.write_text("".join(f"line {i}\n" for i in range(30)))
    assert job_mod.failure_details(log, tail=3) == f"\nline 27\nline 28\nline 29\nfull output: {log}"
