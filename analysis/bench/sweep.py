"""The run's Case Study 2 sweep as the benchmark sees it: the time it took, and the ticks at N*."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from analysis import case2 as c2
from analysis import knee as kn
from analysis.bench.fidelity import Fidelity
from analysis.bench.readers import optional_time, read_stats
from analysis.errors import AnalysisError
from analysis.load import Machine, Run, number, read_json


@dataclass
class Timing:
    runs: int = 0
    unreadable: int = 0
    work_s: float = 0.0
    sweep_s: Optional[float] = None
    settle_s: Optional[float] = None
    in_runner_s: Optional[float] = None
    in_runner_runs: int = 0
    # (runner_started, started, ended, wall_s, settle_s) of each run that has them
    spans: list = field(default_factory=list)

    @property
    def ratio(self) -> Optional[float]:
        return self.sweep_s / self.work_s if self.sweep_s is not None and self.work_s > 0 else None

    @property
    def overhead_s(self) -> Optional[float]:
        return None if self.sweep_s is None else self.sweep_s - self.work_s

    @property
    def remainder_s(self) -> Optional[float]:
        if self.sweep_s is None:
            return None
        return self.sweep_s - self.work_s - (self.settle_s or 0.0) - (self.in_runner_s or 0.0)

    def add_runner_spans(self) -> None:
        """The runner's own time outside the work, from the runs' spans: a runner
        process that ran several runs (a whole sweep: the runs share its
        runner_started) is charged, for each run, from the end of its previous
        run (the first: from its start) to the run's end, less the work and
        the settling; a runner that ran one run, from its start."""
        last_end: dict = {}
        for runner_started, started, ended, wall, settle_s in sorted(self.spans, key=lambda x: (x[0], x[1])):
            begin = last_end.get(runner_started, runner_started)
            self.in_runner_s = (self.in_runner_s or 0.0) + (ended - begin) - wall - (settle_s or 0.0)
            self.in_runner_runs += 1
            last_end[runner_started] = ended

    def components(self) -> list[tuple[str, float]]:
        parts = [("settling between runs", self.settle_s), ("the runner outside the work", self.in_runner_s),
                 ("starting and ending the sweep (Ansible, ssh, interpreter start-up)", self.remainder_s)]
        return [(name, v) for name, v in parts if v is not None]


@dataclass
class Sweep:
    n: int
    knee: bool
    fidelity: Fidelity
    timing: Timing


def load_sweep(run: Run, machine: Machine, interval_ns: Optional[float], jiffy_ns: Optional[float]) -> Sweep:
    case = c2.load_machine(run, machine)
    pp = machine.dir / "case2" / "params.json"
    params = read_json(pp)
    samples = {n: [r.sample() for r in reps] for n, reps in case.repeats.items() if reps}
    knee = kn.find_knee(samples)
    n = knee.n if knee.n is not None else max(case.n_values)
    fid = Fidelity(scope=f"N={n}", n=n, knee=knee.n is not None)
    timing = Timing()
    started, ended = optional_time(params, "started", pp), optional_time(params, "ended", pp)
    if started is not None and ended is not None:
        timing.sweep_s = ended - started
    for m, ndir in c2.sorted_dirs(machine.dir / "case2", c2.N_DIR):
        for _, rdir in c2.sorted_dirs(ndir, c2.R_DIR):
            info = _run_timing(run, rdir, timing)
            if m == n and interval_ns is not None:
                _sweep_fidelity(run, rdir, info, fid, interval_ns, jiffy_ns)
    timing.add_runner_spans()
    return Sweep(n=n, knee=knee.n is not None, fidelity=fid, timing=timing)


def _run_timing(run: Run, rdir: Path, t: Timing) -> Optional[dict]:
    """Add one case2 run to the timing; its run.json (None when unreadable: the case2
    loader has already said so)."""
    rp = rdir / "run.json"
    try:
        info = read_json(rp)
        wall = number(info, "wall_s", rp, minimum=0)
        settle = info.get("settle")
        settle_s = number(settle, "settle_s", rp, required=False, minimum=0) if isinstance(settle, dict) else None
        runner_started = optional_time(info, "runner_started", rp)
        started = optional_time(info, "started", rp) if runner_started is not None else None
        ended = optional_time(info, "ended", rp) if runner_started is not None else None
    except AnalysisError as e:
        t.unreadable += 1
        if rp.exists():
            run.diag.warn_error(e, "this run is left out of the testbed overhead")
        return None
    t.runs += 1
    t.work_s += wall
    if settle_s is not None:
        t.settle_s = (t.settle_s or 0.0) + settle_s
    if runner_started is not None and started is not None and ended is not None:
        t.spans.append((runner_started, started, ended, wall, settle_s))
    return info


def _sweep_fidelity(run: Run, rdir: Path, info: Optional[dict], fid: Fidelity,
                    interval_ns: float, jiffy_ns: float) -> None:
    prof = rdir / "profile.csv"
    if not prof.exists():
        run.diag.warn(prof, "no such file; this repeat is left out of the fidelity at N*")
        return
    try:
        fid.add_profile(prof, interval_ns, jiffy_ns)
    except AnalysisError as e:
        run.diag.warn_error(e, "this repeat is left out of the fidelity at N*")
        return
    stats = []
    for when in ("before", "after"):
        sp = rdir / f"pfprof-stats-{when}.txt"
        try:
            stats.append(read_stats(sp) if sp.exists() else None)
        except AnalysisError as e:
            run.diag.warn_error(e, "ticks merged and records dropped of this repeat unknown")
            stats.append(None)
    fid.add_counters(stats[0], stats[1], (info or {}).get("monitor"))
