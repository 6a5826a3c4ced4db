"""The two messages between scheduler and trainer, once per step.

- ``StepPlan`` (scheduler -> trainer): one ``DomainPlan`` per domain: its share, how many prompts
  and demonstrations, how much SFT (mu). The trainer executes it and decides nothing; the weight
  of every row follows from it and the scored rollouts by one call (scheduler/blend.py ``weigh``).
- ``StepSignals`` (trainer -> scheduler): what the step measured, per domain. The scheduler reads
  only these numbers (and held-out scores), never tensors; the step's logged metrics are derived
  from the same object (``StepSignals.metrics``), so a metric name is not part of this contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DomainPlan:
    """One domain's part of a step.

    share: its RL share of the step (the mixture's weight; shares sum to 1 over the plan).
    mu: its SFT weight in the spectrum loss ``(1 - mu) L_RL + mu L_SFT``; a gated domain's is
        decided per prompt once its rollouts are scored (``gated``).
    prompts: rollout prompts to draw this step (all processes together).
    demos: expert demonstrations to draw this step (all processes together).
    gated: mu is decided per prompt from the prompt's rollouts (the ``gate`` schedule, HPT).
    prompt_weights: a sampling weight per prompt of its training pool (``sampling: pass_rate``).
    levels: {difficulty level: share of its prompts}, for a domain with a range knob.
    """

    share: float
    mu: float
    prompts: int = 0
    demos: int = 0
    gated: bool = False
    prompt_weights: list[float] | None = None
    levels: dict[int, float] | None = None


@dataclass(frozen=True)
class StepPlan:
    """What to train on in one step: one record per domain, why, and the scheduler's own numbers
    for the step's log line (``stats``: name -> value). ``mixture``, ``mu``, ``prompts``, ``demos``,
    ``levels`` and ``prompt_weights`` read one field of every record (domain -> value; all but the
    first two only where it is set)."""

    domains: dict[str, DomainPlan]
    reason: str
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def mixture(self) -> dict[str, float]:
        return {d: p.share for d, p in self.domains.items()}

    @property
    def mu(self) -> dict[str, float]:
        return {d: p.mu for d, p in self.domains.items()}

    @property
    def prompts(self) -> dict[str, int]:
        return {d: p.prompts for d, p in self.domains.items() if p.prompts}

    @property
    def demos(self) -> dict[str, int]:
        return {d: p.demos for d, p in self.domains.items() if p.demos}

    @property
    def levels(self) -> dict[str, dict[int, float]]:
        return {d: p.levels for d, p in self.domains.items() if p.levels is not None}

    @property
    def prompt_weights(self) -> dict[str, list[float]]:
        return {d: p.prompt_weights for d, p in self.domains.items() if p.prompt_weights is not None}


@dataclass(frozen=True)
class GroupOutcome:
    """One rollout group as the SFT/RL blend sees it: its domain, each completion's total reward
    (rollouts first; a LUFFY expert completion, when present, last), whether every reward of the
    group is equal (no RL signal), and whether its prompt has an expert demonstration."""

    domain: str
    rewards: tuple[float, ...]
    zero_variance: bool
    has_expert: bool


@dataclass(frozen=True)
class DomainSignals:
    """One domain's numbers from one step (means over all processes; None when not measured).

    reward: mean total reward of its scored rollouts.
    advantage_abs: mean |advantage| of those rollouts (learnability).
    entropy: mean token entropy of its rollouts (every sampled token, before any loss weighting).
    samples: number of scored rollouts.
    blind: fraction of its rollout groups whose rewards are all equal at 0 (RL has no signal there).
    """

    reward: float | None = None
    advantage_abs: float | None = None
    entropy: float | None = None
    samples: int = 0
    blind: float | None = None


@dataclass(frozen=True)
class StepSignals:
    """Per-domain signals of the domains that had rollouts this step, and the gradient alignment
    (domain -> domain -> cosine) when it was computed."""

    domains: dict[str, DomainSignals] = field(default_factory=dict)
    alignment: dict[str, dict[str, float]] | None = None
    # (domain, prompt index or None, level or None, rollout rewards) of every group (all processes)
    prompt_outcomes: tuple[tuple[str, int | None, int | None, tuple[float, ...]], ...] = ()

    def metrics(self) -> dict[str, Any]:
        """The logged form: ``reward/<d>``, ``advantage_abs/<d>``, ``entropy/<d>``, ``blind/<d>``,
        ``samples/<d>``, ``alignment``."""
        out: dict[str, Any] = {}
        for name, s in self.domains.items():
            values = (
                ("reward", s.reward),
                ("advantage_abs", s.advantage_abs),
                ("entropy", s.entropy),
                ("blind", s.blind),
            )
            for key, value in values:
                if value is not None:
                    out[f"{key}/{name}"] = round(value, 6)
            out[f"samples/{name}"] = s.samples
        if self.alignment is not None:
            out["alignment"] = self.alignment
        return out
