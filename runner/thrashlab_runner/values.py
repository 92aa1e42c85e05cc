"""Checking the step's values (a RunnerError naming the variable) and
formatting numbers for the work command line and the summaries."""
from __future__ import annotations

import math

from .common import RunnerError


def positive_int(v, name) -> int:
    try:
        i = int(str(v))
    except ValueError:
        raise RunnerError("%s: %r is not an integer" % (name, v))
    if i < 1:
        raise RunnerError("%s: %r must be at least 1" % (name, v))
    return i


def positive_float(v, name) -> float:
    try:
        f = float(str(v))
    except ValueError:
        raise RunnerError("%s: %r is not a number" % (name, v))
    if not f > 0 or math.isinf(f):
        raise RunnerError("%s: %r must be positive" % (name, v))
    return f


def fmt_num(x) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def human(x) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return "%.1f%s" % (x / div, unit)
    return "%d" % x if x.is_integer() else "%.1f" % x
