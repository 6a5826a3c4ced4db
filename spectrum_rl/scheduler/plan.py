"""StepPlan — what the scheduler decides for one step — and the Planner that produces it.

The Planner combines a mixture policy (which domains, how much) with the `mu` schedules (how
much SFT per domain). It sees only numbers (held-out scores, per-domain step metrics), never
tensors; the trainer executes the plan and reports back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from spectrum_rl.trainer.mu import AdaptiveMu, MuSchedule, scheduled_mu

if TYPE_CHECKING:
    from spectrum_rl.config import Config


@dataclass(frozen=True)
class StepPlan:
    """mixture: domain -> weight (sums to 1); mu: domain -> SFT weight in [0, 1];
    gate: domains whose mu is decided per prompt (HPT); reason: why, for humans and logs."""

    mixture: dict[str, float]
    mu: dict[str, float]
    reason: str
    gate: frozenset[str] = field(default_factory=frozenset)

    def mean_mu(self) -> float:
        """Mixture-weighted mu (the single number shown in progress and logs)."""
        return sum(self.mixture[d] * self.mu[d] for d in self.mixture)


def normalise(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


class Planner:
    """Fixed mixture (`scheduler.policy: joint`) + per-domain mu schedules."""

    def __init__(self, config: "Config") -> None:
        names = config.domain_names
        weights = config.scheduler.weights or {n: 1.0 for n in names}
        self.mixture = normalise({n: float(weights.get(n, 0.0)) for n in names})
        sft = config.training.sft
        self.schedules: dict[str, MuSchedule] = {n: sft.per_domain.get(n, sft.mu) for n in names}
        self.adaptive = {n: AdaptiveMu(s) for n, s in self.schedules.items() if s.schedule == "adaptive"}

    def plan(self, step: int) -> StepPlan:
        mu = {n: self.adaptive[n].mu(n) if n in self.adaptive else scheduled_mu(s, step)
              for n, s in self.schedules.items()}
        gate = frozenset(n for n, s in self.schedules.items() if s.is_gate)
        kinds = sorted({s.schedule for s in self.schedules.values()})
        reason = f"joint mixture; mu schedule {'/'.join(kinds)}"
        return StepPlan(dict(self.mixture), mu, reason, gate)

    def observe_eval(self, step: int, scores: dict[str, float]) -> None:
        """Held-out scores after ``step`` (feeds the adaptive mu controllers)."""
        for name, controller in self.adaptive.items():
            if name in scores:
                controller.observe({name: scores[name]})

    def state_dict(self) -> dict:
        return {"adaptive": {n: c.state_dict() for n, c in self.adaptive.items()}}

    def load_state_dict(self, state: dict) -> None:
        for n, s in state.get("adaptive", {}).items():
            self.adaptive[n].load_state_dict(s)


def allocate(mixture: dict[str, float], total: int, names: Sequence[str] | None = None) -> dict[str, int]:
    """Split ``total`` items across domains by weight (largest remainder; deterministic)."""
    names = list(names or mixture)
    raw = {n: mixture.get(n, 0.0) * total for n in names}
    counts = {n: int(v) for n, v in raw.items()}
    left = total - sum(counts.values())
    for n in sorted(names, key=lambda n: (-(raw[n] - counts[n]), names.index(n)))[:left]:
        counts[n] += 1
    return counts
