"""Core task types: a row source, its YAML spec and the formatted examples a domain hands to the trainer."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from spectrum_rl.registry import Registry
from spectrum_rl.schema import StrictModel

RowDict = dict[str, Any]
"""One raw row of a source: its columns by name (``question``, ``answer``, ...)."""


@dataclass(frozen=True)
class Example:
    """One task instance, ready for rollouts, rewards and SFT.

    prompt: the formatted prompt text (before any chat template).
    answer: the reference answer (structured domains) or None; the first of ``answers`` when there
        are several.
    answers: every accepted reference, when the row's answer column holds a list of them (aliases,
        as TriviaQA's or Natural Questions'); empty otherwise.
    expert: an expert demonstration completion (SFT target) or None.
    fields: every raw column of the row (constraint specs, references, metadata) for rewards.
    system: the system message put before the prompt by the chat template, or None.
    """

    prompt: str
    answer: str | None
    expert: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    index: int | None = None  # its position in a finite training pool, when drawn by position
    level: int | None = None  # its difficulty level, when its source has a range knob
    system: str | None = None
    answers: tuple[str, ...] = ()

    @property
    def reference(self) -> str | list[str] | None:
        """The answer column as a reward function receives it (TRL passes the column): the list of
        accepted answers when the row gives several, else the answer."""
        return list(self.answers) or self.answer


def conversation(row: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The messages of a conversational row's prompt (kept as ``prompt`` when a source reads a
    conversation as its question: sources/pools.py), or None for a text row."""
    messages = row.get("prompt")
    return messages if isinstance(messages, list) and all(isinstance(m, Mapping) for m in messages) else None


@dataclass(frozen=True)
class SourceContext:
    """What a source needs besides its own spec.

    base_dir: folder that relative paths are resolved against (the config file's folder).
    seed: the run seed (sources derive their own streams from it and the domain name).
    domain: the domain name (for error messages and seed derivation).
    eval_size: number of held-out rows to keep for evaluation.
    eval_split: a source-specific name for the held-out split (a file path for `file`,
        a split name for `hub`); None means "hold out eval_size rows from the training data".
    """

    base_dir: Path
    seed: int
    domain: str
    eval_size: int
    eval_split: str | None = None


class RowSource(ABC):
    """Rows for one domain: a training stream and a fixed held-out eval set, disjoint by prompt."""

    @abstractmethod
    def eval_rows(self) -> list[RowDict]:
        """The held-out rows (same list on every call)."""

    @abstractmethod
    def train_rows(self, n: int, rng: random.Random) -> list[RowDict]:
        """Draw ``n`` training rows (never one of the eval rows)."""

    @property
    def size(self) -> int | None:
        """Number of distinct training rows, or None when the source is unlimited."""
        return None

    def rows_at(self, indices: list[int]) -> list[RowDict]:
        """The training rows at ``indices`` (finite pools only)."""
        raise TypeError(f"{self.describe()} has no fixed pool of training rows")

    @property
    def ladder(self) -> tuple[int, int] | None:
        """(easiest, hardest) level when a difficulty knob is a range, else None."""
        return None

    def rows_at_levels(self, levels: list[int], rng: random.Random) -> list[RowDict]:
        """One training row at each of ``levels`` (sources with a ladder only)."""
        raise TypeError(f"{self.describe()} has no difficulty range")

    def eval_levels(self) -> list[int] | None:
        """The difficulty level of each held-out row, where the source draws them over a range."""
        return None

    def describe(self) -> str:
        """A short human-readable description, e.g. ``builtin:addition(digits=2)``."""
        return type(self).__name__


class SourceSpec(StrictModel):
    """The ``source:`` section of a domain; a subclass per source type adds its own fields."""

    type: str = Field(description="Source type.")

    @abstractmethod
    def build(self, ctx: SourceContext) -> RowSource:
        """The source this spec describes (raises ConfigError on bad data or paths)."""


SOURCES: Registry[type[SourceSpec]] = Registry("source type")
"""``domains[i].source.type`` -> spec class. A new source: a ``SourceSpec`` subclass with
``@SOURCES.register("name")`` whose ``build`` returns its ``RowSource``."""
