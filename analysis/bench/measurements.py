"""Everything the report is made of, read and computed once: per machine its bench/, its sweep, the figures."""
from __future__ import annotations

from typing import Optional

from analysis.bench.bench_dir import Bench, load_bench
from analysis.bench.format import NOT_MEASURED, machine_label
from analysis.bench.readers import in_element, read_stats
from analysis.bench.stats import handler_fit, handler_rows, overhead_rows
from analysis.bench.sweep import Sweep, load_sweep
from analysis.errors import AnalysisError
from analysis.load import Machine, Run, number, read_json


class Measurements:
    """The run's benchmark: testbed.json and its steps, the machines' labels, their bench/ (``benches``)
    and case2 sweeps (``sweeps``), the overhead rows, the handler rows and their fitted lines."""

    def __init__(self, run: Run):
        self.run = run
        with_bench = [m for m in run.machines if (m.dir / "bench").is_dir()]
        if not with_bench:
            raise AnalysisError(run.path, None, "no machine has a bench/ directory: this run has no benchmark "
                                                "(run the benchmark command, ./bench.sh)")
        self.testbed_path = run.path / "testbed.json"
        self.testbed = read_json(self.testbed_path) if self.testbed_path.exists() else None
        self.steps = self._steps() if self.testbed is not None else None
        acc = self.testbed.get("accelerator") if self.testbed else None
        self.labels = {m.name: machine_label(m, acc if isinstance(acc, str) else None) for m in run.machines}
        self.benches: dict[str, Bench] = {}
        for m in run.machines:
            if m.name in {w.name for w in with_bench}:
                self.benches[m.name] = load_bench(run, m, self.labels[m.name])
            else:
                run.diag.warn(m.dir / "bench", "no such directory; this machine is left out of the "
                                               "overhead, handler-time and idle-fidelity tables")
        self.sweeps: dict[str, Optional[Sweep]] = {}
        for m in run.machines:
            b = self.benches.get(m.name)
            interval, jiffy = (b.interval_ns, b.jiffy_ns) if b else self._interval_from_stats(m)
            self.sweeps[m.name] = load_sweep(run, m, interval, jiffy) if (m.dir / "case2").is_dir() else None
        self.overhead = [r for b in self.benches.values() for r in overhead_rows(b)]
        self.handler = {name: handler_rows(b) for name, b in self.benches.items()}
        self.fits = {name: handler_fit(b, self.handler[name]) for name, b in self.benches.items()}

    def _interval_from_stats(self, m: Machine):
        """interval_ms and hz of a machine without bench/: from its first case2 stats copy."""
        for sp in sorted((m.dir / "case2").glob("n-*/r-*/pfprof-stats-before.txt")):
            try:
                st = read_stats(sp)
            except AnalysisError:
                continue
            if st.get("interval_ms", 0) > 0 and st.get("hz", 0) > 0:
                return st["interval_ms"] * 1e6, 1e9 / st["hz"]
        return None, None

    def _steps(self) -> list[tuple[str, float]]:
        p = self.testbed_path
        steps = self.testbed.get("steps")
        if not isinstance(steps, list):
            raise AnalysisError(p, None, "key 'steps': expected a list of {name, seconds}")
        out = []
        for i, s in enumerate(steps, start=1):
            if not isinstance(s, dict) or not isinstance(s.get("name"), str):
                raise AnalysisError(p, None, f"step {i}: expected an object with a 'name'")
            try:
                out.append((s["name"], number(s, "seconds", p, minimum=0)))
            except AnalysisError as e:
                raise in_element(p, f"step {i} ({s['name']})", e) from None
        return out

    def overall(self) -> Optional[dict]:
        if self.steps is None:
            return None
        sweep = sum(s for n, s in self.steps if n == "sweep") if any(n == "sweep" for n, _ in self.steps) else None
        measured = [m for m in self.run.machines if self.sweeps.get(m.name) is not None]
        if not measured:
            return {"sweep_s": sweep, "ratio": None, "why": f"no case2 sweep: {NOT_MEASURED}"}
        big = max(measured, key=lambda m: m.memory_mb)
        work = self.sweeps[big.name].timing.work_s
        if sweep is None:
            return {"sweep_s": None, "ratio": None, "machine": big.name, "label": self.labels[big.name],
                    "work_s": work, "why": "testbed.json has no 'sweep' step"}
        return {"sweep_s": sweep, "machine": big.name, "label": self.labels[big.name], "work_s": work,
                "ratio": sweep / work if work > 0 else None}
