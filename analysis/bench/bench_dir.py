"""``RUN/<machine>/bench/``: the benchmark's parameters, its overhead rounds (cells) and its idle run."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from analysis.bench.fidelity import Fidelity
from analysis.bench.readers import in_element, stats_delta, stats_dict
from analysis.errors import AnalysisError, Diagnostics
from analysis.load import Machine, Run, number, read_json

BASELINE = "none"                # the condition without a profiler
_ROUND = re.compile(r"^r-(\d+)\.json$")


@dataclass
class Cell:
    path: Path
    round: int
    n: int
    condition: str
    wall_s: float
    cpu_s: Optional[float] = None
    ticks: Optional[int] = None
    work_ns_sum: Optional[int] = None
    records_dropped: Optional[int] = None


@dataclass
class Bench:
    machine: Machine
    label: str
    params: dict
    interval_ms: float
    hz: float
    rounds_planned: Optional[int]
    rounds: list = field(default_factory=list)
    cells: list = field(default_factory=list)
    idle: Optional[Fidelity] = None
    idle_handler: Optional[tuple] = None      # (us per tick, ticks) from the idle stats deltas
    overhead_dir: Optional[Path] = None

    @property
    def interval_ns(self) -> float:
        return self.interval_ms * 1e6

    @property
    def jiffy_ns(self) -> float:
        return 1e9 / self.hz

    @property
    def n_values(self) -> list[int]:
        planned = [n for n in self.params.get("processes") or [] if isinstance(n, int)]
        return sorted(set(planned) | {c.n for c in self.cells})

    @property
    def profilers(self) -> list[str]:
        planned = [c for c in self.params.get("conditions") or [] if isinstance(c, str)]
        seen = sorted({c.condition for c in self.cells} - set(planned))
        return [c for c in planned + seen if c != BASELINE]


def load_bench(run: Run, machine: Machine, label: str) -> Bench:
    base = machine.dir / "bench"
    pp = base / "params.json"
    params = read_json(pp)
    interval = number(params, "interval_ms", pp, minimum=1e-9)
    hz = number(params, "hz", pp, minimum=1)
    rounds = number(params, "rounds", pp, required=False, minimum=1, integer=True)
    for key in ("processes", "conditions"):
        if key in params and not isinstance(params[key], list):
            raise AnalysisError(pp, None, f"key '{key}': expected a list")
    b = Bench(machine=machine, label=label, params=params, interval_ms=interval, hz=hz, rounds_planned=rounds)
    _load_overhead(run, b, base / "overhead")
    _load_idle(run, b, base / "idle")
    return b


def _load_overhead(run: Run, b: Bench, odir: Path) -> None:
    if not odir.is_dir():
        run.diag.warn(odir, "no such directory; overhead and handler time not measured for this machine")
        return
    b.overhead_dir = odir
    files = sorted((int(m.group(1)), p) for p in odir.iterdir() if (m := _ROUND.match(p.name)))
    if not files:
        run.diag.warn(odir, "no r-NN.json; overhead and handler time not measured for this machine")
    for _, path in files:
        obj = read_json(path)
        rnd = number(obj, "round", path, minimum=1, integer=True)
        if rnd in b.rounds:
            raise AnalysisError(path, None, f"round {rnd} appears in two files")
        b.rounds.append(rnd)
        cells = obj.get("cells")
        if not isinstance(cells, list):
            raise AnalysisError(path, None, "key 'cells': expected a list of cells")
        seen = set()
        for i, raw in enumerate(cells, start=1):
            cell = _cell(path, rnd, i, raw, run.diag)
            if cell is None:
                continue
            if (cell.n, cell.condition) in seen:
                raise AnalysisError(path, None, f"cell {i}: a second cell for N={cell.n} {cell.condition}")
            seen.add((cell.n, cell.condition))
            b.cells.append(cell)
    if b.rounds_planned is not None and files and len(b.rounds) != b.rounds_planned:
        run.diag.warn(odir, f"{len(b.rounds)} round file(s), params.json says rounds {b.rounds_planned}")


def _cell(path: Path, rnd: int, i: int, raw, diag: Diagnostics) -> Optional[Cell]:
    what = f"cell {i}"
    if not isinstance(raw, dict):
        raise AnalysisError(path, None, f"{what}: expected an object")
    try:
        n = number(raw, "n", path, minimum=1, integer=True)
        cond = raw.get("condition")
        if not isinstance(cond, str) or not cond:
            raise AnalysisError(path, None, f"key 'condition': expected a name, found {json.dumps(cond)}")
        ok = raw.get("ok")
        if not isinstance(ok, bool):
            raise AnalysisError(path, None, f"key 'ok': expected true or false, found {json.dumps(ok)}")
        if not ok:
            diag.warn(path, f"{what} (N={n} {cond}) failed (ok false, exit codes "
                            f"{raw.get('exit_codes')}); left out")
            return None
        wall = number(raw, "wall_s", path)
        if wall <= 0:
            raise AnalysisError(path, None, f"key 'wall_s': {wall} is not positive")
        cell = Cell(path=path, round=rnd, n=n, condition=cond, wall_s=wall)
        prof = raw.get("profiler")
        if prof is not None:
            if not isinstance(prof, dict):
                raise AnalysisError(path, None, "key 'profiler': expected an object or null")
            # while the work ran (cpu_during_s), else the process's whole life
            during = number(prof, "cpu_during_s", path, required=False, minimum=0)
            cell.cpu_s = during if during is not None else number(prof, "cpu_s", path, required=False, minimum=0)
        pf = raw.get("pfprof")
        if pf is not None:
            if not isinstance(pf, dict):
                raise AnalysisError(path, None, "key 'pfprof': expected an object or null")
            cell.ticks = number(pf, "ticks", path, required=False, minimum=0, integer=True)
            cell.work_ns_sum = number(pf, "work_ns_sum", path, required=False, minimum=0, integer=True)
            cell.records_dropped = number(pf, "records_dropped", path, required=False, minimum=0,
                                          integer=True)
            # pfprof's cost is the monitor's CPU plus the module's sampling work in the kernel
            if cell.cpu_s is not None and cell.work_ns_sum is not None:
                cell.cpu_s += cell.work_ns_sum / 1e9
    except AnalysisError as e:
        raise in_element(path, what, e) from None
    return cell


def _load_idle(run: Run, b: Bench, idir: Path) -> None:
    if not idir.is_dir():
        run.diag.warn(idir, "no such directory; idle fidelity not measured for this machine")
        return
    rp = idir / "run.json"
    info = read_json(rp)
    before = stats_dict(info, "pfprof_stats_before", rp)
    after = stats_dict(info, "pfprof_stats_after", rp)
    monitor = info.get("monitor")
    if isinstance(monitor, dict) and monitor.get("exit_code") not in (0, None):
        run.diag.warn(rp, f"the monitor exited with status {monitor.get('exit_code')}")
    fid = Fidelity(scope="idle")
    fid.add_profile(idir / "profile.csv", b.interval_ns, b.jiffy_ns)
    fid.add_counters(before, after, monitor)
    b.idle = fid
    ticks, work = stats_delta(before, after, "ticks"), stats_delta(before, after, "work_ns_sum")
    if ticks and work is not None:
        b.idle_handler = (work / ticks / 1000, ticks)
