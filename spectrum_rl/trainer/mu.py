"""`mu` schedules: the SFT weight of the spectrum loss ``L = (1 - mu) * L_RL + mu * L_SFT``.

Pure Python (no tensors): the scheduler asks a schedule for ``mu`` at each step and feeds it
held-out scores; the trainer only applies the value it is given.

- constant: ``mu = value``.
- linear: from ``start`` to ``end`` over ``steps`` (then ``end``).
- cosine (CHORD-mu, Zhang et al. 2025, arXiv:2508.11408): warmup ``mu = s/W * peak`` for s < W;
  decay ``mu = valley + (peak - valley) * 0.5 * (1 + cos(pi * (s - W) / D))`` for W <= s < W+D;
  ``valley`` after. Published: peak 0.9, valley 0.05, W 0, D 200.
- staged: ``mu = 1`` for the first ``sft_steps`` steps, then 0 (SFT-then-RL as one schedule).
- sft_only / rl_only: ``mu = 1`` / ``mu = 0``.
- adaptive: feedback on held-out scores. Disruption (score below its pre-training value by more
  than ``margin``) raises mu by ``up`` (up to ``peak``); otherwise mu decays by factor ``decay``
  toward ``valley``. Per domain.
- gate (HPT, Lv et al. 2025, arXiv:2509.04419): per prompt, mu = 1 (SFT on the expert
  demonstration) when the group's success rate is <= ``gamma``, else 0 (RL on the rollouts).
  The per-prompt decision is taken in the trainer from rewards; ``value`` here reports 0.5
  as "decided per prompt" only for logging — see ``is_gate``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from spectrum_rl.schema import StrictModel

ScheduleKind = Literal["constant", "linear", "cosine", "staged", "sft_only", "rl_only", "adaptive", "gate"]


class MuSchedule(StrictModel):
    """`training.sft.mu` — how the SFT weight moves over training (see module docstring)."""

    schedule: ScheduleKind = Field("rl_only", description="constant | linear | cosine (CHORD-mu) | staged | "
                                   "sft_only | rl_only | adaptive | gate (HPT per-prompt).")
    value: float = Field(0.1, ge=0, le=1, description="mu for `constant`.")
    start: float = Field(1.0, ge=0, le=1, description="mu at step 0 for `linear`.")
    end: float = Field(0.0, ge=0, le=1, description="mu at the end of `linear`.")
    steps: int = Field(100, ge=1, description="Length of the `linear` ramp.")
    peak: float = Field(0.9, ge=0, le=1, description="`cosine`/`adaptive`: highest mu.")
    valley: float = Field(0.05, ge=0, le=1, description="`cosine`/`adaptive`: lowest mu.")
    warmup: int = Field(0, ge=0, description="`cosine`: warmup steps W.")
    decay_steps: int = Field(200, ge=1, description="`cosine`: decay steps D.")
    sft_steps: int = Field(50, ge=0, description="`staged`: SFT steps before switching to RL.")
    margin: float = Field(0.02, ge=0, description="`adaptive`: score drop that counts as disruption.")
    up: float = Field(0.2, gt=0, le=1, description="`adaptive`: mu increase per disrupted eval.")
    decay: float = Field(0.7, gt=0, lt=1, description="`adaptive`: mu multiplier per recovered eval.")
    initial: float = Field(0.0, ge=0, le=1, description="`adaptive`: mu before the first eval feedback.")
    gamma: float = Field(0.0, ge=0, lt=1, description="`gate`: success rate at or below which a prompt gets SFT.")

    @model_validator(mode="after")
    def _ordered(self) -> "MuSchedule":
        if self.valley > self.peak:
            raise ValueError(f"valley ({self.valley}) must be <= peak ({self.peak})")
        return self

    @property
    def is_gate(self) -> bool:
        return self.schedule == "gate"


def scheduled_mu(spec: MuSchedule, step: int) -> float:
    """mu at ``step`` for the open-loop schedules (all but ``adaptive``, which needs feedback)."""
    kind = spec.schedule
    if kind == "constant":
        return spec.value
    if kind == "linear":
        frac = min(step / spec.steps, 1.0)
        return spec.start + (spec.end - spec.start) * frac
    if kind == "cosine":
        return chord_mu(step, spec.peak, spec.valley, spec.warmup, spec.decay_steps)
    if kind == "staged":
        return 1.0 if step < spec.sft_steps else 0.0
    if kind == "sft_only":
        return 1.0
    if kind in ("rl_only", "gate"):
        return 0.0
    raise ValueError(f"{kind} needs feedback; use AdaptiveMu")


def chord_mu(step: int, peak: float, valley: float, warmup: int, decay_steps: int) -> float:
    """CHORD-mu (arXiv:2508.11408): linear warmup to ``peak``, cosine decay to ``valley``."""
    if step < warmup:
        return step / warmup * peak
    if step < warmup + decay_steps:
        return valley + (peak - valley) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / decay_steps))
    return valley


@dataclass
class AdaptiveMu:
    """Closed-loop mu per domain: rises on disruption of the held-out score, decays on recovery."""

    spec: MuSchedule
    baseline: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] = field(default_factory=dict)

    def mu(self, domain: str) -> float:
        return self.current.get(domain, self.spec.initial)

    def observe(self, scores: dict[str, float]) -> None:
        """Feed held-out scores; the first call sets each domain's pre-training baseline."""
        for domain, score in scores.items():
            if domain not in self.baseline:
                self.baseline[domain] = score
                continue
            mu = self.mu(domain)
            if score < self.baseline[domain] - self.spec.margin:
                mu = min(self.spec.peak, mu + self.spec.up)
            else:
                mu = max(self.spec.valley, mu * self.spec.decay)
            self.current[domain] = mu

    def state_dict(self) -> dict:
        return {"baseline": dict(self.baseline), "current": dict(self.current)}

    def load_state_dict(self, state: dict) -> None:
        self.baseline, self.current = dict(state["baseline"]), dict(state["current"])
