"""``python -m collector pull``: a run's results home from every machine.

For each machine (in parallel, at most ``--jobs`` at a time: a bounded pool
of threads, each with its machine's fabric Connection):
  1. connect (fabric, through the machine's jump hosts or ProxyCommand if any;
     host keys verified against the inventory's known_hosts: collector/remote.py);
  2. list the run's files with their sha256 on the machine (``sha256sum``),
     leaving out the runner's hidden, unfinished files;
  3. check the run is complete there: facts.json, and a DONE marker in every
     case directory (``--expect-case``: that case must be there);
  4. download every file over SFTP into the staging directory
     ``results/.partial-<run id>/<machine>/`` (each as ``.part``, renamed once
     its sha256 matches the listing). Transient errors (connection refused or
     reset, timeouts) are retried with exponential backoff; a checksum
     mismatch lists that file again and downloads it again; a file that keeps
     mismatching fails the machine, naming the file and both checksums.
A failed machine's files are removed from the staging directory. Then
manifest.json is written (docs/results-format.md), the staging directory is
renamed to ``results/<run id>/`` in one step, and, when every machine
succeeded (a complete run), ``results/latest`` (a relative symlink, replaced
atomically) points at it. Remote data is never deleted.

Exit status: 0 every machine collected; 1 some machine failed (the run still
lands, with that machine marked failed and none of its files); 2 nothing to
collect from (inventory, arguments, local I/O).

Tests make failures happen at a chosen moment through a plugin: a Python file
named by $THRASHLAB_COLLECTOR_PLUGIN whose ``before_download(remote, host,
rel)`` runs before every download attempt and ``after_file(host, count)``
after each file a machine has downloaded (tests/collector_faults.py). Never
set in normal use; the collector says loudly when it is.
"""
from __future__ import annotations

import datetime
import fcntl
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from thrashlab import host
from thrashlab.lab import REPO_ROOT
from thrashlab.paths import results_root, testbed_dir
from thrashlab.progress import Progress

from . import logs
from . import remote as rm
from .files import write_json_atomic
from .inventory import Host

COLLECTOR_VERSION = 1
PLUGIN_ENV = "THRASHLAB_COLLECTOR_PLUGIN"
DEFAULT_MAX_JOBS = 8
CASES = ("case1", "case2", "bench")


def _as_list(value) -> list:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


class CollectError(RuntimeError):
    """Nothing can be collected (exit 2)."""


class HostFailed(Exception):
    pass


@dataclass
class HostResult:
    name: str
    status: str = "pending"
    error: str | None = None
    files: dict = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    cases: list = field(default_factory=list)
    facts: dict | None = None
    parameters: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    # case -> its sweep's attempts (which attempt ran which point; resumed runs have several)
    attempts: dict = field(default_factory=dict)
    retries: int = 0


@dataclass
class Options:
    run_id: str | None = None
    retries: int = 4
    timeout: float = 30.0
    expect_case: str | list | None = None  # a case, or several, that must be there
    host_errors: dict = field(default_factory=dict)
    results_dir: Path | None = None
    backoff_base: float = 1.0
    jobs: int | None = None  # machines collected at once; None: min(DEFAULT_MAX_JOBS, machines)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_bytes(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


# ----------------------------------------------------------------------------- test plugin

class NoHooks:
    """What the collector runs at its hook points in normal use: nothing."""

    def before_download(self, remote: rm.Remote, host: str, rel: str) -> None:
        pass

    def after_file(self, host: str, count: int) -> None:
        pass


def load_hooks(progress: Progress):
    """The test plugin named by $THRASHLAB_COLLECTOR_PLUGIN (a Python file), else NoHooks()."""
    path = os.environ.get(PLUGIN_ENV)
    if not path:
        return NoHooks()
    spec = importlib.util.spec_from_file_location("thrashlab_collector_plugin", path)
    if spec is None:
        raise CollectError(f"${PLUGIN_ENV}={path}: not a Python file")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    progress.say(f"TEST HOOK ACTIVE (${PLUGIN_ENV}={path})")
    return plugin


# ----------------------------------------------------------------------------- one machine

class HostPull:
    def __init__(self, remote: rm.Remote, run_id: str, staging: Path, opts: Options, progress: Progress, hooks):
        host = remote.host
        self.host = host
        self.run_id = run_id
        self.dir = staging / host.name
        self.opts = opts
        self.progress = progress
        self.hooks = hooks
        self.remote = remote
        self.result = HostResult(host.name)
        self.run_dir = f"{host.results_dir.rstrip('/')}/{run_id}"

    def say(self, msg: str) -> None:
        self.progress.say(msg, self.host.name)

    def retrying(self, what: str, func):
        """``func()`` with up to opts.retries attempts on transient errors."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return func()
            except rm.Permanent as e:
                raise HostFailed(f"{what}: {e}") from None
            except rm.Transient as e:
                self._back_off(what, e, attempt)

    def _back_off(self, what: str, error: Exception, attempt: int) -> None:
        """After a transient error: give up at opts.retries attempts, else pause (growing)."""
        if attempt >= self.opts.retries:
            raise HostFailed(f"{what}: {error} (gave up after {attempt} attempts)") from None
        pause = rm.backoff(attempt, self.opts.backoff_base)
        self.result.retries += 1
        self.say(f"{what}: {error}; retrying in {pause:.0f}s ({attempt}/{self.opts.retries})")
        rm.sleep(pause)

    def run(self) -> HostResult:
        t0 = time.monotonic()
        try:
            if self.host.name in self.opts.host_errors:
                raise HostFailed(f"the case playbook reported: {self.opts.host_errors[self.host.name]}")
            self._pull()
            self.result.status = "ok"
        except HostFailed as e:
            self.result.status = "failed"
            self.result.error = str(e)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.result.files = {}
            self.say(f"FAILED: {e}")
        except Exception as e:  # a bug or a local I/O error: this machine fails, the others go on
            self.result.status = "failed"
            self.result.error = f"{type(e).__name__}: {e}"
            shutil.rmtree(self.dir, ignore_errors=True)
            self.result.files = {}
            self.say(f"FAILED: {self.result.error}")
        finally:
            self.remote.close()
            self.result.seconds = time.monotonic() - t0
        return self.result

    def _list(self) -> dict | None:
        rc, out, err = self.remote.run(rm.listing_command(self.run_dir))
        if rc != 0:
            raise rm.Transient(f"listing exited {rc}: {err.strip()[-300:]}")
        return rm.parse_listing(out)

    def _relist(self, rel: str) -> str:
        path = f"{self.run_dir}/{rel}"
        rc, out, err = self.remote.run(f"sha256sum -- {shlex.quote(path)}")
        if rc != 0:
            raise rm.Transient(f"sha256sum {rel} exited {rc}: {err.strip()[-300:]}")
        return out.split()[0].lower()

    def _cat(self, rel: str) -> str:
        rc, out, _ = self.remote.run(f"cat -- {shlex.quote(self.run_dir + '/' + rel)}")
        return out if rc == 0 else ""

    def _check_complete(self, files: dict) -> None:
        cases = sorted({p.split("/", 1)[0] for p in files if "/" in p and p.split("/", 1)[0] in CASES})
        self.result.cases = cases
        problems = []
        if "facts.json" not in files:
            problems.append("no facts.json")
        for expected in _as_list(self.opts.expect_case):
            if expected not in cases:
                problems.append(f"no {expected}")
        if not cases:
            problems.append("no case study results")
        for case in cases:
            if f"{case}/DONE" not in files:
                why = ""
                if f"{case}/FAILED" in files:
                    try:
                        why = ": " + json.loads(self._cat(f"{case}/FAILED")).get("error", "")
                    except ValueError:
                        pass
                problems.append(f"{case} did not finish on the machine (no {case}/DONE){why}")
        if problems:
            raise HostFailed(f"run {self.run_id} in {self.run_dir} is incomplete: " + "; ".join(problems))

    def _pull(self) -> None:
        self.retrying("connect", self.remote.connect)
        files = self.retrying("list the run", self._list)
        if files is None:
            raise HostFailed(f"run {self.run_id} not found on the machine (no {self.run_dir})")
        self._check_complete(files)
        total = len(files)
        self.say(f"{total} files to fetch ({', '.join(self.result.cases)})")
        last_report = time.monotonic()
        for i, rel in enumerate(sorted(files), start=1):
            expected = files[rel]
            mismatches = 0
            attempts = 0
            while True:
                try:
                    self.hooks.before_download(self.remote, self.host.name, rel)
                    size = self.remote.download(f"{self.run_dir}/{rel}", str(self.dir / rel), expected)
                    break
                except rm.ChecksumMismatch as e:
                    mismatches += 1
                    if mismatches >= self.opts.retries:
                        raise HostFailed(f"{rel}: checksum mismatch {mismatches} times: listed {e.expected}, "
                                         f"downloaded {e.got} (the file changes on the machine?)") from None
                    self.result.retries += 1
                    self.say(f"{rel}: checksum mismatch (listed {e.expected[:12]}, downloaded {e.got[:12]}); "
                             f"listing it again ({mismatches}/{self.opts.retries})")
                    expected = self.retrying(f"list {rel} again", lambda: self._relist(rel))
                except rm.Transient as e:
                    attempts += 1
                    self._back_off(rel, e, attempts)
                except rm.Permanent as e:
                    raise HostFailed(f"{rel}: {e}") from None
            self.result.files[rel] = expected
            self.result.bytes += size
            self.hooks.after_file(self.host.name, i)
            if time.monotonic() - last_report > 5 and i < total:
                self.say(f"{i}/{total} files ({human_bytes(self.result.bytes)})")
                last_report = time.monotonic()
        self._read_metadata()
        self.say(f"ok: {total} files, {human_bytes(self.result.bytes)}")

    def _read_metadata(self) -> None:
        try:
            self.result.facts = json.loads((self.dir / "facts.json").read_text())
        except (OSError, ValueError) as e:
            raise HostFailed(f"facts.json: unreadable ({e})") from None
        for case in self.result.cases:
            try:
                params = json.loads((self.dir / case / "params.json").read_text())
            except (OSError, ValueError) as e:
                raise HostFailed(f"{case}/params.json: unreadable ({e})") from None
            variables = params.get("variables") if isinstance(params.get("variables"), dict) else {}
            self.result.parameters.update(variables)
            self.result.times[case] = {"started": params.get("started"), "ended": params.get("ended")}
            if isinstance(params.get("attempts"), list):
                self.result.attempts[case] = params["attempts"]


# ----------------------------------------------------------------------------- the run

def git_state(repo: Path = REPO_ROOT) -> tuple[str | None, bool | None]:
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=30)
        if rev.returncode != 0:
            return None, None
        st = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=60)
        return rev.stdout.strip(), bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def newest_run(remotes: list[rm.Remote], jobs: int, progress: Progress) -> str:
    """The newest run id (by name: ids start with their UTC time) on any machine."""

    def runs_of(r: rm.Remote) -> list[str]:
        try:
            rc, out, _ = r.run(f"ls -1 -- {shlex.quote(r.host.results_dir)} 2>/dev/null")
            return [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith(".")]
        except (rm.Transient, rm.Permanent) as e:
            progress.say(f"cannot list runs: {e}", r.host.name)
            return []
        finally:
            r.close()

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        all_runs = sorted({run for runs in pool.map(runs_of, remotes) for run in runs})
    if not all_runs:
        raise CollectError("no run found on any machine (" + ", ".join(
            f"{r.host.name}:{r.host.results_dir}" for r in remotes) + "); give --run ID")
    return all_runs[-1]


def land(staging: Path, final: Path) -> None:
    """Rename the staging directory to the run directory (an earlier copy of the
    same run is replaced: moved aside first, removed after)."""
    old = None
    if final.exists() or final.is_symlink():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.rename(final, old)
    os.rename(staging, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _complete_copy(final: Path) -> bool:
    try:
        return json.loads((final / "manifest.json").read_text()).get("complete") is True
    except (OSError, ValueError, AttributeError):
        return False


def point_latest(root: Path, run_id: str) -> None:
    tmp = root / f".latest.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, root / "latest")


def portable_path(path: str | os.PathLike | None) -> str | None:
    """A path as the manifest may hold it: relative to the repository when it
    lies inside it, else None (a results directory travels to other hosts:
    it names nothing of the one it was collected on)."""
    if not path:
        return None
    try:
        return str(Path(os.path.abspath(path)).relative_to(REPO_ROOT))
    except ValueError:
        return None


def portable_text(text: str | None) -> str | None:
    """A message as the manifest may hold it (a failed machine's error): the
    repository's paths made relative to it, the home directory's written ``~``.
    Paths on the machine, and the collector's words, are left as they are."""
    if not text:
        return text
    text = text.replace(f"{REPO_ROOT}{os.sep}", "")
    home = os.path.expanduser("~")
    if home not in ("", "/", "~"):
        text = text.replace(f"{home.rstrip(os.sep)}{os.sep}", f"~{os.sep}")
    return text


def collecting_host() -> dict:
    """The host the collector runs on, when it collects: for the local testbed
    the host the VMs ran on (its cores and load say how crowded they were)."""
    return host.describe()


def local_testbed(lab: dict, hosts: list[Host]) -> dict | None:
    """What `python -m localvm up` recorded about the lab's VMs (accelerator, the
    host at boot, which core runs which vCPU), when the machines are that testbed's."""
    if not isinstance(lab, dict) or not any(h.backend == "localvm" for h in hosts):
        return None
    try:
        state = json.loads((testbed_dir(str(lab.get("name"))) / "testbed.json").read_text())
    except (OSError, ValueError):
        return None
    return {key: state.get(key) for key in ("accelerator", "started", "host", "placement")}


def build_manifest(run_id: str, lab: dict, remotes: list[rm.Remote], results: dict[str, HostResult],
                   started: str, ended: str, opts: Options) -> dict:
    hosts = [r.host for r in remotes]
    rev, dirty = git_state()
    ok = [results[h.name] for h in hosts if results[h.name].status == "ok"]
    cases = sorted({c for r in ok for c in r.cases})
    starts = [t["started"] for r in ok for t in r.times.values() if t.get("started")]
    ends = [t["ended"] for r in ok for t in r.times.values() if t.get("ended")]
    machines = {}
    files = {}
    for h in hosts:
        r = results[h.name]
        if r.status == "ok":
            machines[h.name] = {"status": "ok", "facts": r.facts, "cases": r.cases, "files": len(r.files),
                                "bytes": r.bytes, "collect_s": round(r.seconds, 1), "retries": r.retries,
                                "attempts": r.attempts}
            for rel, digest in sorted(r.files.items()):
                files[f"{h.name}/{rel}"] = digest
        else:
            machines[h.name] = {"status": "failed", "error": portable_text(r.error), "collect_s": round(r.seconds, 1),
                                "retries": r.retries}
    return {
        "run_id": run_id,
        "case": "+".join(cases) if cases else ("+".join(_as_list(opts.expect_case)) or None),
        "complete": all(results[h.name].status == "ok" for h in hosts),
        "git_revision": rev, "git_dirty": dirty,
        "started": min(starts) if starts else None,
        "ended": max(ends) if ends else None,
        "collected": {"started": started, "ended": ended, "collector_version": COLLECTOR_VERSION},
        "lab": {**lab, "path": portable_path(lab.get("path"))} if isinstance(lab, dict) else lab,
        "host": collecting_host(),
        "testbed": local_testbed(lab, hosts),
        "parameters": {h.name: results[h.name].parameters for h in hosts if results[h.name].status == "ok"},
        "machines": machines,
        # as connected: the inventory's settings completed by ssh_config
        "connections": {r.host.name: {"address": r.conn.host, "port": r.conn.port, "user": r.conn.user,
                                      "backend": r.host.backend,
                                      "known_hosts": [k for k in map(portable_path, r.host.known_hosts) if k],
                                      "results_dir": r.host.results_dir} for r in remotes},
        "files": files,
    }


def status_table(hosts: list[Host], results: dict[str, HostResult]) -> str:
    rows = [("machine", "status", "files", "size", "time", "retries", "error")]
    for h in hosts:
        r = results[h.name]
        ok = r.status == "ok"
        rows.append((h.name, "ok" if ok else "FAILED", str(len(r.files)) if ok else "-",
                     human_bytes(r.bytes) if ok else "-", f"{r.seconds:.1f}s", str(r.retries), r.error or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join(line.rstrip() for line in lines)


def pull(hosts: list[Host], lab: dict, opts: Options, progress: Progress | None = None, out=None) -> int:
    progress = progress or Progress()
    out = out or __import__("sys").stdout
    root = Path(opts.results_dir) if opts.results_dir else results_root()
    root.mkdir(parents=True, exist_ok=True)
    hooks = load_hooks(progress)
    started = utc_now()
    config = rm.ssh_config(opts.timeout)
    remotes = []
    for h in hosts:
        try:
            remotes.append(rm.Remote(h, opts.timeout, config))
        except ValueError as e:
            raise CollectError(f"host {h.name}: unusable connection settings (inventory or ssh_config): {e}") \
                from None
    jobs = opts.jobs or max(1, min(DEFAULT_MAX_JOBS, len(hosts)))
    run_id = opts.run_id or newest_run(remotes, jobs, progress)
    if not opts.run_id:
        progress.say(f"newest run on the machines: {run_id}")
    if "/" in run_id or run_id.startswith(".") or not run_id:
        raise CollectError(f"bad run id {run_id!r}")

    lock_path = root / f".collect-{run_id}.lock"
    lock = open(lock_path, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise CollectError(f"another collector is collecting run {run_id} (lock {lock_path})") from None
    try:
        staging = root / f".partial-{run_id}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        at_once = f" ({jobs} at a time)" if jobs < len(hosts) else ""
        progress.say(f"collecting run {run_id} from {', '.join(h.name for h in hosts)}{at_once} into {root / run_id}")
        pulls = [HostPull(r, run_id, staging, opts, progress, hooks) for r in remotes]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(lambda p: p.run(), pulls))
        results = {r.name: r for r in done}
        final = root / run_id
        logs.gather(staging, final, root, run_id)
        manifest = build_manifest(run_id, lab, remotes, results, started, utc_now(), opts)
        manifest["logs"] = logs.listing(staging)
        write_json_atomic(staging / "manifest.json", manifest)
        complete = manifest["complete"]
        kept_earlier = False
        if not complete and _complete_copy(final):
            # A run collected complete before is never replaced by a worse copy.
            shutil.rmtree(staging, ignore_errors=True)
            kept_earlier = True
        else:
            land(staging, final)
        if complete:
            point_latest(root, run_id)
    finally:
        lock.close()
        try:
            lock_path.unlink()
        except OSError:
            pass

    print(status_table(hosts, results), file=out)
    print(f"run {run_id}: {final}", file=out)
    if complete:
        print(f"results/latest -> {run_id}", file=out)
        return 0
    failed = [h.name for h in hosts if results[h.name].status != "ok"]
    if kept_earlier:
        print(f"incomplete: {', '.join(failed)} failed; kept the complete copy collected before in {final}",
              file=out)
        return 1
    print(f"incomplete: {', '.join(failed)} failed; results/latest NOT updated (it points at the newest "
          f"complete run); analyse this one with `python -m analysis compare {final}`", file=out)
    return 1
