"""The two messages between scheduler and trainer, once per step.

- ``StepPlan`` (scheduler -> trainer): which domains, how many prompts and demonstrations of each,
  and how much SFT (mu) each domain gets. The trainer executes it and decides nothing.
- ``StepSignals`` (trainer -> scheduler): what the step measured, per domain. The scheduler reads
  only these numbers (and held-out scores), never tensors; the step's logged metrics are derived
  from the same object (``StepSignals.metrics``), so a metric name is not part of this contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepPlan:
    """What to train on in one step.

    mixture: domain -> RL share of the step (sums to 1).
    mu: domain -> SFT weight in [0, 1] of the spectrum loss ``(1 - mu) L_RL + mu L_SFT``.
    reason: why, in words (logged as ``scheduler/reason``).
    prompts: domain -> rollout prompts to draw this step (all processes together).
    demos: domain -> expert demonstrations to draw this step (all processes together).
    gate: domain -> gamma, for domains whose mu is decided per prompt from its rollouts (HPT).
    prompt_weights: domain -> a sampling weight per prompt of its training pool, for domains with
        ``sampling: pass_rate`` (the trainer draws that domain's prompts with these weights).
    levels: domain -> {difficulty level: share of its prompts}, for domains with a range knob.
    stats: the scheduler's own numbers for the step's log line (name -> value).
    """

    mixture: dict[str, float]
    mu: dict[str, float]
    reason: str
    prompts: dict[str, int] = field(default_factory=dict)
    demos: dict[str, int] = field(default_factory=dict)
    gate: dict[str, float] = field(default_factory=dict)
    prompt_weights: dict[str, list[float]] = field(default_factory=dict)
    levels: dict[str, dict[int, float]] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def mean_mu(self) -> float:
        """The step's one mu (logged as ``mu``; it blends the learning rates and sets per-layer mu):
        the mean of mu over the step's rows by domain, each rollout prompt and each demonstration
        one unit, ``sum_d (prompts_d + demos_d) mu_d / sum_d (prompts_d + demos_d)``. So it is the
        schedule's mu when every domain has the same, and the SFT-heavy domain counts by the
        demonstrations it gets when SFT is routed by need; mixture-weighted for a plan without rows."""
        units = {d: self.prompts.get(d, 0) + self.demos.get(d, 0) for d in self.mu}
        total = sum(units.values())
        if not total:
            return sum(self.mixture[d] * self.mu[d] for d in self.mixture)
        return sum(units[d] * self.mu[d] for d in units) / total


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
