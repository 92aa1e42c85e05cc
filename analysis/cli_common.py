"""Pieces shared by the subcommands: opening the run, the output format, where figures go."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from analysis.errors import Diagnostics
from analysis.load import Run


def open_run(args, diag: Diagnostics | None = None) -> Run:
    return Run(args.run, diag if diag is not None else Diagnostics())


def fmt(args) -> str:
    return "json" if getattr(args, "json", False) else getattr(args, "format", "text")


def out_dir(args, run: Run) -> Path:
    return Path(args.out) if getattr(args, "out", None) else run.path / "analysis"


def emit(text: str, figures: Sequence[Path], fmt: str) -> None:
    """The table on stdout; the figures' paths after it (text, Markdown) or on
    stderr (CSV, JSON), so that machine-readable output stays parseable."""
    sys.stdout.write(text)
    if figures:
        line = "figures written: " + " ".join(str(p) for p in figures)
        if fmt in ("text", "markdown"):
            sys.stdout.write("\n" + line + "\n")
        else:
            print(line, file=sys.stderr)
    sys.stdout.flush()
