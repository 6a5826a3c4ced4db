"""Rule-based components: exact match, numeric tolerance, regex format, keywords, length, constraints."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from spectrum_rl.rewards.base import REWARDS, RewardComponent, RewardSpec
from spectrum_rl.rewards.text import (
    answer_text,
    extract_answer,
    last_number,
    marked_answer,
    normalize,
    references,
    row_field,
)
from spectrum_rl.sources.base import Example
from spectrum_rl.sources.builtin import check_constraint

_FIELD_DOC = "Row field holding the reference (`answer` = the domain's answer field)."
_EXTRACT_DOC = (
    "Score the extracted answer instead of the whole text: after the last `</think>` if any, the last "
    "`\\boxed{...}`, else the last `<answer>...</answer>`, else what follows the last `####` that a number "
    "follows, else the line after the last `answer:`, else the first line."
)


@REWARDS.register("exact_match")
class ExactMatchSpec(RewardSpec):
    """`exact_match`: 1 when the normalised answer equals a normalised reference, else 0."""

    field: str = Field("answer", description=_FIELD_DOC + " A list of strings accepts any of them.")
    extract: bool = Field(
        True,
        description=_EXTRACT_DOC + " A reference that marks its answer (GSM8K's `... #### 72`) is read the same way.",
    )

    def build(self, base_dir: Path) -> RewardComponent:
        return ExactMatch(self)


class ExactMatch(RewardComponent):
    spec: ExactMatchSpec

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        refs = references(example, self.spec.field)
        if self.spec.extract:  # both sides read alike: a worked reference compares by its final answer
            refs = [r if (marked := marked_answer(r)) is None else marked for r in refs]
        refs = {normalize(r) for r in refs}
        return [float(normalize(answer_text(c, self.spec.extract)) in refs) for c in completions]


@REWARDS.register("numeric")
class NumericSpec(RewardSpec):
    """`numeric`: 1 when the last number of the answer is within tolerance of the reference number."""

    field: str = Field("answer", description=_FIELD_DOC + " A list accepts any of its numbers.")
    abs_tol: float = Field(1e-6, ge=0, description="Absolute tolerance.")
    rel_tol: float = Field(0.0, ge=0, description="Relative tolerance (fraction of |reference|).")

    def build(self, base_dir: Path) -> RewardComponent:
        return Numeric(self)

    def unusable_reference(self, value: Any) -> str | None:
        refs = value if isinstance(value, (list, tuple)) else [value]
        if not refs:
            return "is an empty list"
        bad = [r for r in refs if reference_number(r) is None]
        return f"holds no number ({str(bad[0])[:40]!r})" if bad else None


def reference_number(ref: Any) -> float | None:
    """The number a reference holds: itself, or the last number in its text (GSM8K's ``#### 72``)."""
    return float(ref) if isinstance(ref, (int, float)) else last_number(str(ref))


class Numeric(RewardComponent):
    spec: NumericSpec

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        ref = row_field(example, self.spec.field)
        ys = [reference_number(r) for r in (ref if isinstance(ref, (list, tuple)) else [ref])]
        if not ys or None in ys:
            raise ValueError(f"reference {ref!r} holds no number")
        tols = [max(self.spec.abs_tol, self.spec.rel_tol * abs(y)) for y in ys]
        values = [last_number(extract_answer(c)) for c in completions]
        return [float(x is not None and any(abs(x - y) <= t for y, t in zip(ys, tols))) for x in values]


@REWARDS.register("format")
class FormatSpec(RewardSpec):
    """`format`: 1 when the completion matches a regular expression, else 0."""

    pattern: str = Field(..., description="Python regular expression.")
    mode: Literal["search", "fullmatch"] = Field(
        "search", description="search: match anywhere; fullmatch: the whole completion must match."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return v

    def build(self, base_dir: Path) -> RewardComponent:
        return Format(self)


class Format(RewardComponent):
    spec: FormatSpec

    def __init__(self, spec: FormatSpec) -> None:
        super().__init__(spec)
        self._match = getattr(re.compile(spec.pattern), spec.mode)

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        return [float(self._match(c) is not None) for c in completions]


@REWARDS.register("contains")
class ContainsSpec(RewardSpec):
    """`contains`: fraction of the required strings that occur in the completion."""

    strings: list[str] = Field(default_factory=list, description="Strings that must occur.")
    field: str | None = Field(None, description="Row field holding more required strings (a string or a list).")
    ignore_case: bool = Field(True, description="Compare case-insensitively.")

    @model_validator(mode="after")
    def _has_targets(self) -> ContainsSpec:
        if not self.strings and self.field is None:
            raise ValueError("contains needs `strings`, `field`, or both")
        return self

    def build(self, base_dir: Path) -> RewardComponent:
        return Contains(self)


class Contains(RewardComponent):
    spec: ContainsSpec

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        wanted = self.spec.strings + (references(example, self.spec.field) if self.spec.field else [])
        fold = str.lower if self.spec.ignore_case else str
        wanted = [fold(w) for w in wanted]
        return [sum(w in fold(c) for w in wanted) / len(wanted) for c in completions]


@REWARDS.register("length")
class LengthSpec(RewardSpec):
    """`length`: 1 inside [min_chars, max_chars] (stripped completion), linearly less outside."""

    min_chars: int = Field(0, ge=0, description="Shortest length with full reward.")
    max_chars: int = Field(..., ge=0, description="Longest length with full reward.")
    tolerance: int = Field(20, ge=1, description="Characters outside the range at which the reward reaches 0.")

    @model_validator(mode="after")
    def _ordered(self) -> LengthSpec:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must be <= max_chars ({self.max_chars})")
        return self

    def build(self, base_dir: Path) -> RewardComponent:
        return Length(self)


class Length(RewardComponent):
    spec: LengthSpec

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        lo, hi, tol = self.spec.min_chars, self.spec.max_chars, self.spec.tolerance
        lengths = [len(c.strip()) for c in completions]
        return [max(0.0, 1.0 - max(lo - n, n - hi, 0) / tol) for n in lengths]


@REWARDS.register("constraint")
class ConstraintSpec(RewardSpec):
    """`constraint`: degree in [0, 1] to which the answer satisfies the row's creative constraint."""

    field: str = Field("constraint", description="Row field holding the constraint spec (a dict with a `type`).")
    extract: bool = Field(True, description=_EXTRACT_DOC)

    def build(self, base_dir: Path) -> RewardComponent:
        return Constraint(self)


class Constraint(RewardComponent):
    spec: ConstraintSpec

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        constraint = row_field(example, self.spec.field)
        return [check_constraint(constraint, answer_text(c, self.spec.extract)) for c in completions]
