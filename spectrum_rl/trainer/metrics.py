"""Per-step accumulators, reduced over processes once per step.

``Sums`` holds what is only logged (losses, clip ratios, reward parts, timings' neighbours);
``SignalSums`` holds what the scheduler reads, per domain, and turns into its ``StepSignals``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from spectrum_rl.scheduler.blend import StepWeights
from spectrum_rl.scheduler.step import DomainSignals, StepPlan, StepSignals


@dataclass
class Sums:
    """Logged metric accumulator: name -> [sum, count] (a count of 0 means "log the sum")."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, total: float, count: float = 1.0) -> None:
        slot = self.values.setdefault(name, [0.0, 0.0])
        slot[0] += total
        slot[1] += count

    def merge(self, other: Sums) -> None:
        """Add every entry of ``other`` (a stage's statistics) into these."""
        for name, (total, count) in other.values.items():
            self.add(name, total, count)


class DeviceSums:
    """Like ``Sums``, for values still on the device: adding one does not wait for it (a ``float()``
    of a GPU tensor drains the launch queue); ``to_sums`` reads them all in one transfer."""

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor | float]] = {}

    def add(self, name: str, total: torch.Tensor, count: torch.Tensor | float = 1.0) -> None:
        slot = self.values.setdefault(name, [0.0, 0.0])
        slot[0] = slot[0] + total.detach().float()
        slot[1] = slot[1] + (count.detach().float() if isinstance(count, torch.Tensor) else count)

    def to_sums(self) -> Sums:
        out = Sums()
        if not self.values:
            return out
        device = next(v for pair in self.values.values() for v in pair if isinstance(v, torch.Tensor)).device
        flat = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device) for pair in self.values.values()
                            for v in pair]).tolist()  # fmt: skip
        for i, name in enumerate(self.values):
            out.add(name, flat[2 * i], flat[2 * i + 1])
        return out


# per domain: reward sum, rollouts scored, |advantage| sum, valid samples, entropy sum, entropy
# tokens, rollout groups, groups with all rewards equal at 0
_FIELDS = ("reward", "rollouts", "advantage_abs", "samples", "entropy", "entropy_tokens", "groups", "blind_groups")


class SignalSums:
    """Sums behind each domain's DomainSignals, in a fixed layout (``names`` x fields) so that
    every process reduces the same vector."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.values = {n: dict.fromkeys(_FIELDS, 0.0) for n in self.names}

    def add(self, domain: str, **amounts: float) -> None:
        for key, amount in amounts.items():
            self.values[domain][key] += amount

    def merge(self, other: SignalSums) -> None:
        """Add ``other``'s sums (a further round of rollouts of the same step) into these."""
        for name, values in other.values.items():
            self.add(name, **values)

    def flat(self) -> list[float]:
        return [self.values[n][f] for n in self.names for f in _FIELDS]

    def signals(self, flat: Sequence[float], alignment: dict[str, dict[str, float]] | None) -> StepSignals:
        """StepSignals from the reduced ``flat()`` vector: one entry per domain that had rollouts."""
        domains = {}
        for i, name in enumerate(self.names):
            v = dict(zip(_FIELDS, flat[i * len(_FIELDS) : (i + 1) * len(_FIELDS)]))
            if v["rollouts"] == 0:
                continue
            domains[name] = DomainSignals(
                reward=v["reward"] / v["rollouts"],
                advantage_abs=v["advantage_abs"] / v["samples"] if v["samples"] else 0.0,
                entropy=v["entropy"] / v["entropy_tokens"] if v["entropy_tokens"] else None,
                samples=int(v["samples"]),
                blind=v["blind_groups"] / v["groups"] if v["groups"] else None,
            )
        return StepSignals(domains, alignment)


def plan_metrics(plan: StepPlan, weights: StepWeights, learning_rate: float) -> dict[str, Any]:
    """The plan as executed, for the step's log line: mean and per-domain mu, mixture, rate, reason."""
    return {
        "mu": round(weights.mean_mu, 6),
        "mixture": {k: round(v, 6) for k, v in plan.mixture.items()},
        "learning_rate": learning_rate,
        "scheduler/reason": plan.reason,
        **{f"mu/{d}": round(m, 6) for d, m in weights.mu.items()},
        **{k: round(v, 6) for k, v in plan.stats.items()},
    }
