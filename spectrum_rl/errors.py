"""User-facing errors. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable


class SpectrumError(Exception):
    """Base class for errors caused by user input (config, data, paths), not by bugs."""


class ConfigError(SpectrumError):
    """A configuration problem, located by file, YAML field path and (when known) line/column.

    Rendered as ``file:line:col: field.path: message`` (without a file: ``field.path: message``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.field = field
        self.line = line
        self.column = column

    def located(
        self, *, file: str | None = None, field: str | None = None, line: int | None = None, column: int | None = None
    ) -> ConfigError:
        """Return a copy with missing location parts filled in (existing parts win)."""
        return ConfigError(
            self.message,
            file=self.file or file,
            field=self.field or field,
            line=self.line if self.line is not None else line,
            column=self.column if self.column is not None else column,
        )

    def under(self, prefix: str) -> ConfigError:
        """The same error with its field path nested under ``prefix`` (e.g. ``domains[2].``)."""
        field = prefix + self.field if self.field else prefix.rstrip(".")
        return ConfigError(self.message, file=self.file, field=field, line=self.line, column=self.column)

    def __str__(self) -> str:
        where = ""  # no file: an argument (RUN_DIR, --resume) or a config given as objects; the field says which
        if self.file:
            where = self.file + (f":{self.line}" if self.line is not None else "")
            where += f":{self.column}" if self.line is not None and self.column is not None else ""
            where += ": "
        field = f"{self.field}: " if self.field else ""
        # One line whatever the config held: a key or value with a newline is shown escaped.
        return f"{where}{field}{self.message}".translate(_ESCAPES)


# control characters as escapes (\n, \t, \x1b, ...), so an error message stays one line
_ESCAPES = {c: repr(chr(c))[1:-1] for c in [*range(32), 127]}


class RewardError(SpectrumError):
    """A reward component failed (raised, or returned NaN/inf) under ``on_error: fail``."""

    def __init__(self, domain: str, component: str, sample: int, message: str) -> None:
        where = f", sample {sample}" if sample >= 0 else ""  # -1: the component failed on the whole group
        super().__init__(f"reward failed: domain '{domain}', component '{component}'{where}: {message}")
        self.domain = domain
        self.component = component
        self.sample = sample


class TrainingError(SpectrumError):
    """Training cannot go on (e.g. NaN/inf losses several steps in a row). The CLI exits with 1."""


class TrainingInterrupted(SpectrumError):
    """SIGINT/SIGTERM arrived: the run stopped after a step and wrote a checkpoint. The CLI exits
    with 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, step: int, checkpoint: str | None) -> None:
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (not the main process)"
        super().__init__(
            f"interrupted by {signal.Signals(signum).name} after step {step}; wrote {where}; continue with --resume"
        )
        self.signum = signum


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """A hint like ``; did you mean 'addition'?`` (empty when nothing is close)."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
