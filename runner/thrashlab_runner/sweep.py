"""A case's whole sweep in one runner process that outlives the SSH session
which started it.

`case-sweep --detach` starts `case-sweep` as a transient systemd unit
(thrashlab-sweep-<run id>-<case>; `setsid` where systemd is not PID 1) and
returns at once. The sweep runs every point of the case's plan in order
(Case Study 2: each N and repeat; Case Study 1: each pair), keeps the points
already committed, and appends one line per point to <case>/progress.jsonl,
then a last line when the case is done (DONE written) or failed. While it
runs, /run/thrashlab/sweep.json names it (pid, start time, unit).

The playbook shows each point as it finishes although the sweep needs no
connection: per point, a follower waits for it. The follower is a shell
loop (`follow_shell`, given to the playbook by the start step) that sleeps
a second at a time until the sweep has left, in /run/thrashlab/follow/, the
very lines `case-follow` would print for the point (or for the end, or for
a failure): no Python runs on the machine beside the measured processes (a
Python start costs seconds of CPU under emulation, and nice does not hold
it back: the follower's SSH session is its own scheduler autogroup). Where
no such file comes (the sweep killed, the machine rebooted, a sweep of an
older runner) the loop hands over to `case-follow --index I` (or `--end`),
which reads progress.jsonl and says what happened. A controller that
goes away (laptop asleep, terminal closed) leaves the sweep running; the
playbook run again with the same run id re-attaches: the case's start step
finds the live sweep of that run and returns its plan instead of starting
over.

Resume (`--resume` on a case's start step): a case whose sweep stopped
(failed, killed, machine rebooted) is taken up again with the points already
committed left as they are (byte for byte), and only the rest run; a point
cut off half way is redone. The arguments must be the ones the case was
started with. params.json's `attempts` records which attempt ran which point.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from .common import RunnerError, log, result_text, utc_now
from .files import atomic_json, atomic_write, read_text
from .planning import point_dir_name

SWEEP_FILE = "sweep.json"
PROGRESS_FILE = "progress.jsonl"
SWEEP_LOG = "sweep.log"
FOLLOW_DIR = "follow"
FOLLOW_POLL_S = 1.0


# ----------------------------------------------------------------------------- which points a case has

def case_points(case: str, params: dict) -> list[tuple[str, dict]]:
    """The case's points in the order they run: (directory under the case, item)."""
    if case == "case2":
        return [(point_dir_name(n, r), {"n": n, "repeat": r}) for n, r in params["order"]]
    if case == "case1":
        return [(name, {"pair": name[len("pair-"):]}) for name in sorted(params["processes"])]
    raise RunnerError("no sweep for %s" % case)


def committed(case_dir: str, key: str) -> bool:
    """A point is committed once its directory with run.json is in place (the
    runner renames it there last)."""
    return os.path.isfile(os.path.join(case_dir, key, "run.json"))


# ----------------------------------------------------------------------------- the live sweep

def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    stat = read_text("/proc/%d/stat" % pid)
    if not stat:
        return None
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return fields[19]


def live_sweep(ctx) -> dict | None:
    """The sweep running on this machine (any run), or None."""
    text = read_text(os.path.join(ctx.machine.run_dir, SWEEP_FILE))
    if not text:
        return None
    try:
        info = json.loads(text)
        pid = int(info["pid"])
    except (ValueError, KeyError, TypeError):
        return None
    if _start_time(pid) != info.get("start_time"):
        return None
    return info


def _busy_error(info: dict) -> RunnerError:
    unit = info.get("unit")
    stop = ("systemctl stop %s" % unit) if unit else ("kill %d" % info["pid"])
    return RunnerError(
        "this machine is running the %s sweep of run %s (pid %d, since %s): wait for it, re-attach to it "
        "with -e thrashlab_run_id=%s, or stop it (%s)"
        % (info.get("case"), info.get("run_id"), info["pid"], info.get("started"), info.get("run_id"), stop))


def unit_name(run_id: str, case: str) -> str:
    return "thrashlab-sweep-%s-%s" % (run_id, case)


# ----------------------------------------------------------------------------- a case's start: fresh, attached or resumed

def new_attempt(number: int, kept: list[str] | None = None) -> dict:
    return {"attempt": number, "started": utc_now(), "kept": list(kept or []), "ran": []}


def begin_case(ctx, case: str, arguments: dict) -> tuple[str, dict | None]:
    """What a case's start step does on this machine: ("attached", params) when
    this run's sweep of the case is running, or ended complete with the same
    arguments; ("resumed", params) with --resume and an earlier start of the
    case; ("fresh", None) otherwise (the caller starts the case over). Another
    run's live sweep is an error."""
    live = live_sweep(ctx)
    if live is not None:
        if live.get("run_id") == ctx.args.run_id and live.get("case") == case:
            log("the %s sweep of run %s is running (pid %d): re-attaching" % (case, ctx.args.run_id, live["pid"]))
            return "attached", ctx.read_params(case)
        raise _busy_error(live)
    d = ctx.case_dir(case)
    # The sweep ended while no controller watched: a complete case with the
    # same arguments is re-attached to (nothing runs again), not started over.
    if os.path.isfile(os.path.join(d, "DONE")) and read_text(os.path.join(d, "params.json")) is not None:
        params = ctx.read_params(case)
        if params.get("arguments") == arguments:
            log("%s of run %s is complete here: re-attaching (a new run id starts it over)" % (case, ctx.args.run_id))
            return "attached", params
    if not getattr(ctx.args, "resume", False):
        return "fresh", None
    if read_text(os.path.join(d, "params.json")) is None:
        log("nothing to resume: %s of run %s was never started here; starting it" % (case, ctx.args.run_id))
        return "fresh", None
    params = ctx.read_params(case)
    before = params.get("arguments")
    if before != arguments:
        diff = sorted(k for k in set(before or {}) | set(arguments) if (before or {}).get(k) != arguments.get(k))
        raise RunnerError(
            "cannot resume %s of run %s: it was started with other parameters (%s); run it with the same "
            "ones, or start a new run" % (case, ctx.args.run_id, "; ".join(
                "%s: %s then, %s now" % (k, json.dumps((before or {}).get(k)), json.dumps(arguments.get(k)))
                for k in diff)))
    # A point cut off half way left only a hidden .partial directory: redone.
    for root, dirs, _files in os.walk(d):
        for name in [n for n in dirs if n.startswith(".") and n.endswith(".partial")]:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            dirs.remove(name)
    kept = [key for key, _item in case_points(case, params) if committed(d, key)]
    failed = read_text(os.path.join(d, "FAILED"))
    if failed is not None:
        os.unlink(os.path.join(d, "FAILED"))
    attempts = params.setdefault("attempts", [])
    if failed is not None and attempts:
        attempts[-1].setdefault("failed", failure_text(failed))
    attempt = new_attempt(len(attempts) + 1, kept)
    attempts.append(attempt)
    params.pop("ended", None)
    atomic_json(os.path.join(d, "params.json"), params)
    log("resuming %s of run %s (attempt %d): %d point(s) kept, %d to run"
        % (case, ctx.args.run_id, attempt["attempt"], len(kept), len(case_points(case, params)) - len(kept)))
    return "resumed", params


def failure_text(text: str) -> str:
    """The error a FAILED marker records (its JSON's `error`, else its text)."""
    try:
        return json.loads(text).get("error", text.strip())
    except (ValueError, AttributeError):
        return text.strip()


def current_attempt(params: dict) -> int:
    attempts = params.get("attempts") or [{"attempt": 1}]
    return int(attempts[-1]["attempt"])


# ----------------------------------------------------------------------------- progress lines

def append_progress(case_dir: str, line: dict) -> None:
    """One line, written whole and synced: a follower never reads half a line
    that it takes for complete (it skips lines that do not parse)."""
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    fd = os.open(os.path.join(case_dir, PROGRESS_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def follow_prefix(ctx, case: str, attempt: int) -> str:
    """The follow files of a sweep: <prefix>-<index> per point, <prefix>-end,
    <prefix>-failed; each holds what `case-follow` prints for it."""
    return os.path.join(ctx.machine.run_dir, FOLLOW_DIR, "%s-%s-%d" % (ctx.args.run_id, case, attempt))


def point_result(line: dict) -> dict:
    """What a follower returns for a point's progress line."""
    return dict(line["result"], kept=bool(line.get("kept")), attempt=line["attempt"])


def end_result(line: dict) -> dict:
    """What a follower returns for a sweep's "done" line."""
    result = line.get("result") or {}
    return dict(result, summary=result.get("summary", "done"))


def clear_follow_files(ctx) -> None:
    """Only one sweep runs on a machine: the files of earlier ones go."""
    d = os.path.join(ctx.machine.run_dir, FOLLOW_DIR)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        try:
            os.unlink(os.path.join(d, name))
        except OSError:
            pass


def follow_shell(ctx, case: str, attempt: int) -> str:
    """The playbook's follower, a POSIX shell command that expects $what (a
    point's index, or "end") and $wait_s (s) to be set before it."""
    prefix = shlex.quote(follow_prefix(ctx, case, attempt))
    sweep_file = shlex.quote(os.path.join(ctx.machine.run_dir, SWEEP_FILE))
    python_follow = " ".join(shlex.quote(a) for a in [
        sys.executable, os.path.abspath(sys.argv[0]), "case-follow", "--case", case, "--attempt", str(attempt),
        *step_argv(ctx.args)])
    return (
        'f=%(prefix)s; pid=$(sed -n \'s/.*"pid": \\([0-9][0-9]*\\).*/\\1/p\' %(sweep)s 2>/dev/null); '
        'while [ ! -e "$f-$what" ] && [ ! -e "$f-failed" ] && [ "$wait_s" -gt 0 ] && [ -n "$pid" ] '
        '&& kill -0 "$pid" 2>/dev/null; do sleep 1; wait_s=$((wait_s - 1)); done; '
        'if [ -e "$f-$what" ]; then cat "$f-$what"; '
        'elif [ -e "$f-failed" ]; then cat "$f-failed"; exit 1; '
        'else if [ "$what" = end ]; then set -- --end; else set -- --index "$what"; fi; '
        'exec %(follow)s "$@" --wait $((wait_s > 0 ? wait_s : 1)); fi'
        % {"prefix": prefix, "sweep": sweep_file, "follow": python_follow})


def read_progress(case_dir: str) -> list[dict]:
    lines = []
    for raw in (read_text(os.path.join(case_dir, PROGRESS_FILE), "") or "").splitlines():
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict):
            lines.append(obj)
    return lines


def _earlier_result(lines: list[dict], key: str) -> dict | None:
    for line in reversed(lines):
        if line.get("point") == key and isinstance(line.get("result"), dict) and "error" not in line:
            return line["result"]
    return None


# ----------------------------------------------------------------------------- case-sweep

def cmd_case_sweep(ctx, run_point, finish_case) -> dict:
    """``run_point(ctx, case, item) -> result`` runs one point; ``finish_case(ctx,
    case) -> result`` checks the case and writes DONE."""
    case = ctx.args.case
    if ctx.args.detach:
        return launch(ctx, case)
    d = ctx.case_dir(case)
    params = ctx.read_params(case)
    attempt = current_attempt(params)
    live = live_sweep(ctx)
    if live is not None and live["pid"] != os.getpid():
        raise _busy_error(live)
    os.makedirs(ctx.machine.run_dir, exist_ok=True)
    clear_follow_files(ctx)
    follow = follow_prefix(ctx, case, attempt)
    me = {"pid": os.getpid(), "start_time": _start_time(os.getpid()), "run_id": ctx.args.run_id, "case": case,
          "attempt": attempt, "unit": os.environ.get("THRASHLAB_SWEEP_UNIT"), "started": utc_now()}
    sweep_file = os.path.join(ctx.machine.run_dir, SWEEP_FILE)
    atomic_json(sweep_file, me)
    index = None
    try:
        earlier = read_progress(d)
        for index, (key, item) in enumerate(case_points(case, params)):
            line = {"index": index, "point": key, "item": item, "attempt": attempt}
            if committed(d, key):
                result = dict(_earlier_result(earlier, key) or {"summary": "%s: committed before" % key})
                result["summary"] = "kept from an earlier attempt: %s" % result.get("summary", key)
                line.update(kept=True, result=result)
            else:
                line["result"] = run_point(ctx, case, item)
                _record_ran(ctx, case, attempt, key)
            line["at"] = utc_now()
            append_progress(d, line)
            atomic_write("%s-%d" % (follow, index), result_text(point_result(line)))
        index = None
        result = finish_case(ctx, case)
        line = {"end": "done", "attempt": attempt, "result": result, "at": utc_now()}
        append_progress(d, line)
        atomic_write(follow + "-end", result_text(end_result(line)))
        return result
    except BaseException as e:
        msg = str(e) or e.__class__.__name__
        try:
            append_progress(d, {"end": "failed", "attempt": attempt, "index": index, "error": msg, "at": utc_now()})
            atomic_write(follow + "-failed", result_text({"error": msg}))
        except OSError:
            pass
        raise
    finally:
        if (live_sweep(ctx) or {}).get("pid") == os.getpid():
            try:
                os.unlink(sweep_file)
            except OSError:
                pass


def _record_ran(ctx, case: str, attempt: int, key: str) -> None:
    """Add a committed point to its attempt in params.json (the manifest tells
    from it which attempt ran which point)."""
    params = ctx.read_params(case)
    attempts = params.setdefault("attempts", [new_attempt(attempt)])
    attempts[-1].setdefault("ran", []).append(key)
    atomic_json(os.path.join(ctx.case_dir(case), "params.json"), params)


# The options every step shares (cli.build_parser's common()): the sweep gets
# those of the step that starts it.
STEP_OPTIONS = ("run_id", "results_dir", "remote_dir", "work_bin", "monitor_bin", "settle_timeout", "psi_interval",
                "monitor_grace", "swap_window", "proc_root", "sys_root", "pfprof_device", "run_dir")


def step_argv(args) -> list[str]:
    out = []
    for name in STEP_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    return out


def start_result(ctx, case: str, plan: dict) -> dict:
    """What a case's start step returns: its plan; with --sweep also the sweep
    started (or found running), in the same runner call."""
    if not ctx.args.sweep:
        return plan
    launched = launch(ctx, case)
    plan["sweep"] = launched
    plan["summary"] = "%s; %s" % (plan["summary"], launched["summary"])
    return plan


def launch(ctx, case: str) -> dict:
    """Start the sweep detached (or find it running) and return once it is up,
    with the shell command that follows it (`follow`)."""
    launched = _launch(ctx, case)
    launched["follow"] = follow_shell(ctx, case, current_attempt(ctx.read_params(case)))
    return launched


def _launch(ctx, case: str) -> dict:
    live = live_sweep(ctx)
    if live is not None:
        if live.get("run_id") == ctx.args.run_id and live.get("case") == case:
            return {"summary": "re-attached to the running %s sweep (pid %d)" % (case, live["pid"]),
                    "attached": True, "pid": live["pid"], "unit": live.get("unit")}
        raise _busy_error(live)
    params = ctx.read_params(case)
    attempt = current_attempt(params)
    ended = [ln for ln in read_progress(ctx.case_dir(case)) if ln.get("end") and ln.get("attempt") == attempt]
    if ended:
        # this attempt's sweep ran to its end already: nothing to start (the followers read its lines)
        return {"summary": "the %s sweep of this attempt already ended (%s)" % (case, ended[-1]["end"]),
                "attached": True, "pid": None, "unit": None}
    argv = [sys.executable, os.path.abspath(sys.argv[0]), "case-sweep", "--case", case, *step_argv(ctx.args)]
    unit = unit_name(ctx.args.run_id, case)
    log_path = os.path.join(ctx.case_dir(case), SWEEP_LOG)
    how = ctx.args.detach_with
    if how == "auto":
        how = "systemd" if os.path.isdir("/run/systemd/system") and shutil.which("systemd-run") else "setsid"
    if how == "systemd":
        # --collect: the unit is unloaded when it ends, failed or not, so the
        # name is free for the next attempt without a reset-failed.
        # OOMPolicy=continue: an OOM kill of a work process (a thrashing point
        # may see several) is recorded by the run; systemd's default for a
        # service (stop) would stop the whole sweep with SIGTERM.
        cmd = ["systemd-run", "--unit", unit, "--collect", "--quiet", "-p", "OOMPolicy=continue",
               "--setenv", "THRASHLAB_SWEEP_UNIT=%s" % unit,
               "-p", "StandardOutput=append:%s" % log_path, "-p", "StandardError=append:%s" % log_path,
               "--", *argv]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RunnerError("systemd-run could not start the sweep: %s" % (p.stderr.strip() or p.returncode))
    else:
        unit = None
        with open(log_path, "ab") as out, open(os.devnull, "rb") as devnull:
            subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=out, start_new_session=True,
                             close_fds=True, cwd="/")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = live_sweep(ctx)
        if live is not None and live.get("run_id") == ctx.args.run_id and live.get("case") == case:
            return {"summary": "%s sweep started (%s, pid %d); its log: %s"
                               % (case, ("unit " + unit) if unit else "setsid", live["pid"], log_path),
                    "attached": False, "pid": live["pid"], "unit": unit}
        if any(ln.get("end") and ln.get("attempt") == attempt for ln in read_progress(ctx.case_dir(case))):
            return {"summary": "%s sweep started and already ended" % case, "attached": False, "pid": None,
                    "unit": unit}
        time.sleep(0.1)
    raise RunnerError("the %s sweep did not start within 30 s; its log: %s" % (case, log_path))


# ----------------------------------------------------------------------------- case-follow

def cmd_case_follow(ctx) -> dict:
    """Wait for point --index (or, with --end, the end) of attempt --attempt.

    The shell follower's fallback (follow_shell): it runs when the sweep left
    no follow file, mostly because it is gone, so it reads progress.jsonl
    and says what happened."""
    a = ctx.args
    d = ctx.case_dir(a.case)
    deadline = time.monotonic() + a.wait
    gone_since = None
    while True:
        lines = [ln for ln in read_progress(d) if ln.get("attempt") == a.attempt]
        end = next((ln for ln in lines if ln.get("end")), None)
        if a.end:
            if end is not None:
                if end["end"] == "done":
                    return end_result(end)
                raise RunnerError(end.get("error") or "the sweep failed")
        else:
            line = next((ln for ln in lines if ln.get("index") == a.index and "result" in ln), None)
            if line is not None:
                return point_result(line)
            if end is not None:
                if end["end"] == "failed":
                    raise RunnerError(end.get("error") or "the sweep failed")
                raise RunnerError("the sweep ended without point %d" % a.index)
        live = live_sweep(ctx)
        if live is None:
            # the sweep is gone without a last line: killed (SIGKILL, OOM, reboot)? one more look
            # after a pause, since it may have written its line just now
            if gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since > FOLLOW_POLL_S:
                unit = unit_name(a.run_id, a.case)
                raise RunnerError("the %s sweep of run %s is not running and wrote no %s: it was stopped or "
                                  "killed (see %s and `journalctl -u %s`); take it up again with -e resume=true"
                                  % (a.case, a.run_id, "end" if a.end else "line for point %d" % a.index,
                                     os.path.join(d, SWEEP_LOG), unit))
        else:
            gone_since = None
        if time.monotonic() > deadline:
            raise RunnerError("no word from the %s sweep for %.0f s (still running: %s)"
                              % (a.case, a.wait, "yes" if live else "no"))
        time.sleep(FOLLOW_POLL_S)
