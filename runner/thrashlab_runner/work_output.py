"""What the work processes printed (one JSON line each at exit), and what a
run's numbers say about them."""
from __future__ import annotations

import json


def overlap_s(works: list) -> float | None:
    """How long all timed phases ran together: max of starts to min of ends (0 if
    they never overlapped). None when a work JSON or its timestamps are missing."""
    starts, ends = [], []
    for w in works:
        if not isinstance(w, dict):
            return None
        s, e = w.get("start_mono_ns"), w.get("end_mono_ns")
        if not isinstance(s, int) or not isinstance(e, int) or isinstance(s, bool) or isinstance(e, bool):
            return None
        starts.append(s)
        ends.append(e)
    if not starts:
        return None
    return round(max(0, min(ends) - max(starts)) / 1e9, 3)


def parse_work_output(text: str) -> dict | None:
    """The JSON object a work process printed at exit: its last stdout line that parses as one."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def work_totals(works: list, missing: list[int]) -> dict:
    """The keys of run.json summing up the work JSONs: the longest fill, the sum
    and spread of the throughputs, the major faults (the last two only when no
    JSON is missing)."""
    info: dict = {}
    fills = [w.get("fill_s") for w in works if isinstance(w, dict) and isinstance(w.get("fill_s"), (int, float))]
    if fills:
        info["fill_s_max"] = max(fills)
    throughputs = [w.get("accesses_per_s") for w in works if isinstance(w, dict)]
    if throughputs and all(isinstance(t, (int, float)) for t in throughputs) and not missing:
        info["accesses_per_s_sum"] = sum(throughputs)
        # Past the available memory Linux does not slow every process alike: the
        # processes that stay resident run at full speed while the others starve
        # (measured: the sum hardly drops while the slowest process falls 100-1000x).
        # The spread says so; starved = processes under 1% of the fastest one.
        ordered = sorted(throughputs)
        info["accesses_per_s_min"] = ordered[0]
        info["accesses_per_s_median"] = ordered[len(ordered) // 2] if len(ordered) % 2 else \
            (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
        info["accesses_per_s_max"] = ordered[-1]
        info["starved"] = sum(1 for t in ordered if t < 0.01 * ordered[-1])
    majs = [w.get("majflt") for w in works if isinstance(w, dict)]
    if majs and all(isinstance(m, int) for m in majs) and not missing:
        info["majflt_sum"] = sum(majs)
    return info
