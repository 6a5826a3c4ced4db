"""Reward component interface. A component scores one group: G completions of the same prompt."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from spectrum_rl.registry import Registry
from spectrum_rl.schema import StrictModel
from spectrum_rl.sources.base import Example

OnError = Literal["fail", "zero", "skip"]  # what a component's failure does (RewardSpec.on_error)


class RewardSpec(StrictModel):
    """Fields shared by every reward component in YAML."""

    type: str = Field(description="Component type (one of the reward types below).")
    weight: float = Field(1.0, ge=0, description="Weight of this component in the hybrid sum.")
    name: str | None = Field(None, description="Name used in logs (default: the component type).")
    on_error: OnError = Field(
        "fail",
        description="When the component raises, times out or returns NaN/inf: fail (stop with a "
        "clear error naming domain, component and sample), zero (score 0), or skip (drop the sample "
        "from the loss). Failures are counted in `reward_errors/<domain>/<component>`.",
    )
    timeout_s: float | None = Field(
        60.0,
        gt=0,
        description="Wall-clock limit on one call (one group); overrunning counts as "
        "a failure of every sample of the group. null: no limit.",
    )

    def build(self, base_dir: Path) -> RewardComponent:  # pragma: no cover - overridden
        raise NotImplementedError

    def unusable_reference(self, value: Any) -> str | None:
        """Why this component cannot score against the row value ``value`` of the field it reads
        (None: it can). Checked over a finite pool at load, so bad data stop the run before it starts
        rather than at whichever step draws the row."""
        return None

    def slowest_group(self, group_size: int) -> tuple[float, str] | None:
        """(seconds, how they add up): the longest one call on ``group_size`` completions may take by
        this component's own limits; None when it sets none. A `timeout_s` below it is a config
        error, since it would fail groups that are only running their course."""
        return None


def _model_hint(name: str) -> str:
    """TRL takes a reward model's id in ``reward_funcs``; here it is a component of its own."""
    return f"; a reward model is {{type: reward_model, model: {name}}}" if "/" in name else ""


REWARDS: Registry[type[RewardSpec]] = Registry("reward type", hint=_model_hint)
"""``domains[i].reward[j].type`` -> spec class. A new component: a ``RewardSpec`` subclass with
``@REWARDS.register("name")`` whose ``build`` returns its ``RewardComponent``, in one file."""


@dataclass(frozen=True)
class Scores:
    """What a component may return instead of a plain list: the scores, and which samples its own
    machinery failed on (``crashed``, e.g. a code sandbox that broke). A crashed sample scores 0 and
    is counted in ``reward_errors/<domain>/<component>``, but it is the sample's failure, not the
    component's: ``on_error`` does not apply, so it never stops training."""

    values: Sequence[float]
    crashed: Sequence[bool]


class RewardComponent(ABC):
    """Scores completions. Subclasses implement ``score`` for one group of the same prompt."""

    def __init__(self, spec: RewardSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name or self.spec.type

    @abstractmethod
    def score(self, completions: Sequence[str], example: Example) -> Sequence[float] | Scores:
        """Return one float per completion (any scale; the hybrid weights them)."""

    def prefetch(self, groups: Sequence[tuple[Sequence[str], Example]]) -> None:
        """Called with a step's groups before they are scored one by one: a component that calls
        a server sends them concurrently here (default: nothing)."""

    def events(self) -> dict[str, int]:
        """Counts of this component's own failure classes since the last call (default: none)."""
        return {}

    def explain(self, completion: str, example: Example) -> tuple[float, list[str]]:
        """One completion's score and lines that say how it came about (``spectrum-rl score``)."""
        scored = self.score([completion], example)
        values = scored.values if isinstance(scored, Scores) else scored
        return float(values[0]), []
