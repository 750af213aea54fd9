"""One exception root for everything a user can get wrong, so the CLI can print it without a traceback."""

from __future__ import annotations

from dataclasses import dataclass

from .wording import counted


class TuningError(Exception):
    """Root of every error `tuning` raises on purpose.

    The CLI prints the message (no traceback unless `--debug`) and exits with `exit_code`.
    """

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where it is and what would be valid."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else (f"{self.file}: " if self.file else "")
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class SpecError(TuningError):
    """A search space that cannot be used; carries every problem found in one pass."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{counted(count, 'problem')} in the search space:"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


class DataError(TuningError):
    """Data that cannot be loaded or does not fit the spec (names the file and the field at fault)."""


class RunError(TuningError):
    """A run directory that cannot be used as asked (changed spec, missing files, ...)."""


class SearchAborted(TuningError):
    """The search stopped itself (too many consecutive failures); finished trials are kept."""

    exit_code = 1
