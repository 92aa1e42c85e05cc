"""Errors and warnings about input files, worded the same way everywhere.

An :class:`AnalysisError` names the file and, where there is one, the line:
``FILE:LINE: what`` (or ``FILE: what``).  The command line prints it as
``analysis: error: FILE:LINE: what`` and exits with status 2.

Where the rest of the run can still answer (one repeat of many is broken, a
PSI file is missing), the problem is reported through :class:`Diagnostics`
as ``analysis: warning: FILE:LINE: what; consequence`` on stderr and the
analysis goes on without that piece.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional, Union

PathLike = Union[str, Path]


class AnalysisError(ValueError):
    """A missing, truncated or corrupt input file (or a run that cannot answer)."""

    def __init__(self, path: PathLike, line: Optional[int], what: str):
        self.path = str(path)
        self.line = line
        self.what = what
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.what}"


class Diagnostics:
    """Collects warnings; by default also prints each one once to stderr.

    ``sink`` receives the full line (``analysis: warning: ...``); pass
    ``sink=None`` to collect silently (the report lists them).
    """

    def __init__(self, sink: Optional[Callable[[str], None]] = "stderr"):  # type: ignore[assignment]
        if sink == "stderr":
            sink = _print_stderr
        self._sink = sink
        self.warnings: list[str] = []

    def warn(self, where: PathLike, what: str, line: Optional[int] = None) -> None:
        text = str(AnalysisError(where, line, what))
        self._emit(text)

    def warn_error(self, err: AnalysisError, consequence: str) -> None:
        self._emit(f"{err}; {consequence}")

    def _emit(self, text: str) -> None:
        if text in self.warnings:
            return
        self.warnings.append(text)
        if self._sink is not None:
            self._sink(f"analysis: warning: {text}")


def _print_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
