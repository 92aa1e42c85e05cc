"""Planning (pure): the sizes and N values that `auto` resolves to, and the
parsing of the case variables (N lists, work specs, fill)."""
from __future__ import annotations

import math
import os
import re

from .common import RunnerError
from .values import positive_int

# Planning constants (see plan_work_mb, plan_n_values, plan_case1_mb).
BOOT_OVERHEAD_MB = 100       # RAM a booted Debian guest does not have available (measured: 97-113 MiB)
EDGE_CLEARANCE = 0.3         # auto case2_work_mb keeps MemAvailable / work_mb this far from an integer
SIZE_LATITUDE = 0.15         # ... moving the lab's common size by at most this share either way
CASE1_SHARE = 0.30           # each Case Study 1 process gets this share of MemAvailable
CASE1_COURSE_MB = 1024       # the course's size, used when the machine has room for it


def plan_work_mb(lab_min_memory_mb: int) -> int:
    """Case Study 2's common per-process size for a lab (auto moves it a little per
    machine: :func:`plan_case2_work_mb`).

    A quarter of what the lab's smallest machine has available after boot
    (estimated as its RAM minus BOOT_OVERHEAD_MB), rounded down to a multiple of
    4 MiB (8 MiB from 64 MiB up): the smallest machine then thrashes from about
    N = 4-5, and every machine's knee is at N = its available RAM / this size,
    on the same scale. Computed from the lab file, not measured, so that every
    run of a lab uses the same size. 256 MiB -> 36; 192 -> 20; 1 GiB -> 224.
    """
    est = max(int(lab_min_memory_mb) - BOOT_OVERHEAD_MB, 32)
    quarter = est / 4.0
    step = 8 if quarter >= 64 else 4
    return max(8, int(quarter // step) * step)


def edge_distance(p: float) -> float:
    """How far the prediction p is from the nearest integer (0: on the edge, 0.5: midway)."""
    return abs(p - round(p))


def plan_case2_work_mb(avail_mb: float, lab_min_memory_mb: int) -> dict:
    """``case2_work_mb: auto`` on one machine, from its MemAvailable measured after it settled.

    Start from the lab's common size (:func:`plan_work_mb`) and take the whole
    MiB closest to it, within SIZE_LATITUDE of it (twice that when whole MiB
    step over the window: small sizes at large p), for which the working-set
    prediction p = avail_mb / work_mb is at least EDGE_CLEARANCE from an
    integer.  With p near an integer, N = round(p) fills memory to within a
    few MiB and whether it thrashes is a coin toss, so N* flips between runs
    (issue 16: 4 x 36 MiB against 145.5 MiB).  The machines of a lab then get
    sizes a few MiB apart (default lab: 34-36 MiB against a common 36);
    each machine's prediction uses its own size (case2/params.json), so the
    comparison stays exact.  If no size within the latitude clears the edge
    (p below about 1.3, or beyond about 40 processes of a few MiB, where one
    MiB moves p by more than the window), the one farthest from it is taken,
    with a warning.
    """
    if avail_mb <= 0:
        raise RunnerError("plan: available memory must be positive (got %r)" % avail_mb)
    common = plan_work_mb(lab_min_memory_mb)
    warnings = []
    for latitude in (SIZE_LATITUDE, 2 * SIZE_LATITUDE):
        low = max(4, int(math.ceil(common * (1 - latitude))))
        high = int(math.floor(common * (1 + latitude)))
        candidates = sorted(range(low, high + 1), key=lambda w: (abs(w - common), -w))
        clear = [w for w in candidates if edge_distance(avail_mb / w) >= EDGE_CLEARANCE - 1e-9]
        if clear:
            work_mb = clear[0]
            break
    else:
        work_mb = max(candidates, key=lambda w: (round(edge_distance(avail_mb / w), 6), -abs(w - common)))
        warnings.append("no size within %d%% of %d MiB puts the prediction %.1f or more from an integer: "
                        "%d MiB (prediction %.2f)" % (round(2 * SIZE_LATITUDE * 100), common, EDGE_CLEARANCE,
                                                      work_mb, avail_mb / work_mb))
    return {"work_mb": work_mb, "common_mb": common, "predicted_n": round(avail_mb / work_mb, 3),
            "edge_distance": round(edge_distance(avail_mb / work_mb), 3), "warnings": warnings}


def plan_n_values(avail_mb: float, swap_mb: float, work_mb: float, points: int = 6,
                  max_factor: float = 1.5, swap_fraction: float = 0.8) -> dict:
    """The N values of a Case Study 2 sweep: from 1 to about max_factor times the
    working-set prediction p = avail_mb / work_mb, at most ``points`` values,
    dense (steps of 1) around the first N that does not fit, capped so that
    N * work_mb stays below avail_mb + swap_fraction * swap_mb (no OOM kill).

    Priority: 1, k = floor(p) + 1 (first N past the available memory), k - 1,
    k + 1, the top, about k/2, halfway between k + 1 and the top; then the
    largest gaps are split until ``points`` values are chosen.
    """
    if work_mb <= 0 or avail_mb <= 0:
        raise RunnerError("plan: available memory and work_mb must be positive (got %r, %r)" % (avail_mb, work_mb))
    points = max(1, int(points))
    p = avail_mb / work_mb
    k = int(math.floor(p)) + 1
    cap = int(math.floor((avail_mb + swap_fraction * max(swap_mb, 0)) / work_mb))
    top = max(int(math.ceil(max_factor * p)), k + 1)
    warnings = []
    if cap < top:
        if cap < k:
            warnings.append("swap too small for the sweep to pass the prediction: N <= %d keeps "
                            "N x %g MiB below %g MiB available + %d%% of %g MiB swap, the first N "
                            "past the available memory is %d" % (cap, work_mb, avail_mb,
                                                                  round(swap_fraction * 100), swap_mb, k))
        top = cap
    top = max(top, 1)
    chosen: list[int] = []
    for n in (1, k, k - 1, k + 1, top, int(k / 2.0 + 0.5), int((k + 1 + top) / 2.0 + 0.5)):
        if 1 <= n <= top and n not in chosen and len(chosen) < points:
            chosen.append(n)
    while len(chosen) < points:
        s = sorted(chosen)
        gaps = [(b - a, a, b) for a, b in zip(s, s[1:]) if b - a > 1]
        if not gaps:
            break
        width, a, b = max(gaps, key=lambda g: (g[0], g[1]))
        chosen.append(a + width // 2)
    # the knee is only located when the sweep has an N on each side of the prediction
    if not (any(n <= p for n in chosen) and any(n > p for n in chosen)):
        warnings.append("the sweep %s does not bracket the prediction %.2f (an N at or below it and "
                        "one above it)" % (sorted(chosen), p))
    return {"n_values": sorted(chosen), "predicted_n": round(p, 3), "first_n_past_available": k,
            "n_cap": cap, "warnings": warnings}


def plan_case1_mb(avail_mb: float) -> int:
    """Case Study 1's per-process size: the course's 1024 MiB when two of them
    take at most 60% of MemAvailable, else 30% of MemAvailable each, rounded down
    to a multiple of 8 MiB (a pair then fits in memory: no major faults)."""
    each = avail_mb * CASE1_SHARE
    if each >= CASE1_COURSE_MB:
        return CASE1_COURSE_MB
    return max(8, int(each // 8) * 8)


def parse_n_values(text: str) -> list[int]:
    vals = []
    for part in re.split(r"[,\s]+", text.strip().strip("[]")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise RunnerError("n_values: %r is not a positive integer (in %r)" % (part, text))
        vals.append(int(part))
    if not vals:
        raise RunnerError("n_values: empty list")
    if len(set(vals)) != len(vals):
        raise RunnerError("n_values: duplicates in %r" % text)
    return vals


COURSE_ACCESSES = {"many": 50000, "few": 10000}   # the course's, for 1024 MiB processes


def case1_accesses(value, name: str, mb: int) -> int:
    """Accesses per iteration of Case Study 1's busier ('many') or quieter ('few')
    process: an integer, or auto: the course's 50000 / 10000 scaled by mb / 1024 MiB,
    so that accesses per page, and so the share of the region the 20 iterations
    touch (P x (1 - exp(-A/P))), are the course's at any size."""
    if str(value) == "auto":
        return max(1, int(round(COURSE_ACCESSES[name] * mb / float(CASE1_COURSE_MB))))
    return positive_int(value, "case1_accesses_%s" % name)


def parse_work_spec(spec: str, default_mb: int | None, iterations: int | None,
                    named_accesses: dict | None = None) -> dict:
    """'MB MODE ACCESSES [ITERATIONS]' (the course's `work` arguments; MB may be
    'auto', ACCESSES 'many' or 'few' (case1_accesses_*)) -> {"mb", "mode",
    "accesses_per_iteration", "iterations"}."""
    fields = spec.split()
    if len(fields) not in (3, 4):
        raise RunnerError("work spec %r: expected 'MB MODE ACCESSES [ITERATIONS]'" % spec)
    mb, mode, acc = fields[:3]
    if mb == "auto":
        if default_mb is None:
            raise RunnerError("work spec %r: 'auto' size but no planned size" % spec)
        mb = default_mb
    elif mb.isdigit() and int(mb) > 0:
        mb = int(mb)
    else:
        raise RunnerError("work spec %r: size %r is not a positive integer (MiB) or 'auto'" % (spec, mb))
    if mode not in ("R", "L"):
        raise RunnerError("work spec %r: mode must be R or L" % spec)
    if named_accesses and acc in named_accesses:
        acc = str(named_accesses[acc](mb))
    if not acc.isdigit() or int(acc) < 1:
        raise RunnerError("work spec %r: accesses %r is not a positive integer%s" % (
            spec, acc, " or one of " + ", ".join(sorted(named_accesses)) if named_accesses else ""))
    it = fields[3] if len(fields) == 4 else iterations
    if it is not None:
        if not str(it).isdigit() or int(it) < 1:
            raise RunnerError("work spec %r: iterations %r is not a positive integer" % (spec, it))
        it = int(it)
    return {"mb": mb, "mode": mode, "accesses_per_iteration": int(acc), "iterations": it}


def case2_points(n_values: list[int], repeats: int) -> list[dict]:
    """The order of a sweep: repeat 1 over every N (ascending), then repeat 2, ...
    so that a drift of the machine over time does not line up with N."""
    return [{"n": n, "repeat": r} for r in range(1, repeats + 1) for n in sorted(n_values)]


def point_dir_name(n: int, repeat: int) -> str:
    return os.path.join("n-%02d" % n, "r-%d" % repeat)


def resolve_case2_work_mb(requested, avail_mb: float, lab_min_memory_mb) -> tuple:
    """``case2_work_mb`` as run: an integer as given, or auto (:func:`plan_case2_work_mb`).
    Returns (work_mb, sizing facts or None, warnings)."""
    if requested != "auto":
        return positive_int(requested, "case2_work_mb"), None, []
    if lab_min_memory_mb is None:
        raise RunnerError("case2_work_mb is auto but --lab-min-memory-mb is not given")
    sizing = plan_case2_work_mb(avail_mb, lab_min_memory_mb)
    return sizing["work_mb"], sizing, sizing.pop("warnings")


FILL_DATA = ("random", "zero", "text")


def parse_fill(value, name: str, allow_phase: bool) -> tuple:
    """A fill variable as (fill phase?, data): random, zero or text (what
    work's fill writes: what a compressing swap sees); with allow_phase also
    true/false (case1_fill: first-touch the region or not; true means random).
    """
    v = str(value).strip().lower()
    if v in FILL_DATA:
        return True, v
    if allow_phase and v in ("true", "yes", "on", "1"):
        return True, "random"
    if allow_phase and v in ("false", "no", "off", "0", "none", ""):
        return False, None
    raise RunnerError("%s must be %s, not %r" % (
        name, ("false, true, " if allow_phase else "") + ", ".join(FILL_DATA[:-1]) + " or " + FILL_DATA[-1], value))


def work_fill_args(fill: bool, fill_data) -> list:
    """work's options for a fill phase writing ``fill_data`` (default random), or none."""
    return ["--fill", fill_data or "random"] if fill else ["--no-fill"]
