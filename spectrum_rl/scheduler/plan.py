"""StepPlan — what the scheduler decides for one step — and the Planner that produces it.

The Planner combines a mixture policy (which domains, how much; scheduler/policies.py) with
the `mu` schedules (how much SFT per domain; trainer/mu.py) and keeps the signals they read
(scheduler/signals.py). It sees only numbers — held-out scores, per-domain step metrics,
alignment matrices — never tensors; the trainer executes the plan and reports back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from spectrum_rl.scheduler.policies import POLICIES, View
from spectrum_rl.scheduler.signals import EntropyMonitor, GradientAlignment, Learnability, OnlineTransfer
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


class Planner:
    """``scheduler.policy`` + per-domain mu schedules + the signals both read."""

    def __init__(self, config: "Config", base_dir: Path | None = None) -> None:
        names = config.domain_names
        kinds = {t.name: t.kind for t in config.tasks}
        sc = config.scheduler
        self.names = names
        self.policy = POLICIES[sc.policy](sc, names)
        self.view = View(names, kinds, {t.name: list(t.after) for t in config.tasks},
                         EntropyMonitor(kinds, collapse_fraction=sc.entropy_collapse, window=sc.window),
                         Learnability(sc.window), GradientAlignment())
        self.online = OnlineTransfer(names)
        self._transfer_online = False  # True once the online fit has replaced a missing/old estimate
        self.transfer_stderr: np.ndarray | None = None
        if sc.transfer_file:
            self.view.transfer = load_transfer(Path(base_dir or ".") / sc.transfer_file, names)
        sft = config.training.sft
        self.schedules: dict[str, MuSchedule] = {n: sft.per_domain.get(n, sft.mu) for n in names}
        self.adaptive = {n: AdaptiveMu(s) for n, s in self.schedules.items() if s.schedule == "adaptive"}
        self.alignment_every = sc.alignment_every if sc.policy in ("transfer", "adaptive") else 0

    def plan(self, step: int) -> StepPlan:
        decision = self.policy.decide(step, self.view)
        mu = {n: self.adaptive[n].mu(n) if n in self.adaptive else scheduled_mu(s, step)
              for n, s in self.schedules.items()}
        for n, floor in decision.mu_raise.items():
            mu[n] = max(mu[n], floor)
        gate = frozenset(n for n, s in self.schedules.items() if s.is_gate)
        self.online.observe_mixture(decision.mixture)
        return StepPlan(decision.mixture, mu, decision.reason, gate)

    def wants_alignment(self, step: int) -> bool:
        return bool(self.alignment_every) and step % self.alignment_every == 0

    def observe_step(self, metrics: dict[str, Any]) -> None:
        """Per-domain rollout metrics of the step just taken (entropy, |A|, samples, alignment)."""
        self.view.entropy.update({n: metrics[f"entropy/{n}"] for n in self.names if f"entropy/{n}" in metrics})
        for n in self.names:
            if f"advantage_abs/{n}" in metrics:
                self.view.learnability.update(n, metrics[f"advantage_abs/{n}"], int(metrics.get(f"samples/{n}", 1)))
        if "alignment" in metrics:
            self.view.alignment.update(metrics["alignment"])

    def observe_eval(self, step: int, scores: dict[str, float]) -> None:
        """Held-out scores after ``step``: feeds the policy, adaptive mu and the online transfer fit."""
        v = self.view
        v.scores = dict(scores)
        for n, s in scores.items():
            v.start.setdefault(n, s)
            v.best[n] = max(v.best.get(n, s), s)
        for name, controller in self.adaptive.items():
            if name in scores:
                controller.observe({name: scores[name]})
        self.online.observe_eval(scores)
        if self.view.transfer is None or self._transfer_online:
            estimate = self.online.estimate()
            if estimate is not None:
                self.view.transfer, self.transfer_stderr = estimate
                self._transfer_online = True
        self.policy.observe_eval(step, v)

    def state_dict(self) -> dict:
        v = self.view
        return {"policy": self.policy.state_dict(), "adaptive": {n: c.state_dict() for n, c in self.adaptive.items()},
                "entropy": v.entropy.state_dict(), "learnability": v.learnability.state_dict(),
                "alignment": v.alignment.state_dict(), "online": self.online.state_dict(),
                "scores": v.scores, "start": v.start, "best": v.best,
                "transfer": None if v.transfer is None else v.transfer.tolist(),
                "transfer_online": self._transfer_online,
                "transfer_stderr": None if self.transfer_stderr is None else self.transfer_stderr.tolist()}

    def load_state_dict(self, state: dict) -> None:
        v = self.view
        self.policy.load_state_dict(state["policy"])
        for n, s in state.get("adaptive", {}).items():
            self.adaptive[n].load_state_dict(s)
        v.entropy.load_state_dict(state["entropy"])
        v.learnability.load_state_dict(state["learnability"])
        v.alignment.load_state_dict(state["alignment"])
        self.online.load_state_dict(state["online"])
        v.scores, v.start, v.best = state["scores"], state["start"], state["best"]
        v.transfer = None if state["transfer"] is None else np.asarray(state["transfer"])
        self._transfer_online = state["transfer_online"]
        stderr = state.get("transfer_stderr")
        self.transfer_stderr = None if stderr is None else np.asarray(stderr)


def load_transfer(path: Path, names: Sequence[str]) -> np.ndarray:
    """T from a transfer.json written by `spectrum-rl order` (rows/cols reordered to ``names``)."""
    from spectrum_rl.errors import ConfigError

    try:
        data = json.loads(Path(path).read_text())
        return np.array([[float(data["transfer"][a][b]) for b in names] for a in names])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read a transfer matrix for these domains from {path} ({type(exc).__name__}: "
                          f"{exc})", field="scheduler.transfer_file") from None


def allocate(mixture: dict[str, float], total: int, names: Sequence[str] | None = None) -> dict[str, int]:
    """Split ``total`` items across domains by weight (largest remainder; deterministic)."""
    names = list(names or mixture)
    raw = {n: mixture.get(n, 0.0) * total for n in names}
    counts = {n: int(v) for n, v in raw.items()}
    left = total - sum(counts.values())
    for n in sorted(names, key=lambda n: (-(raw[n] - counts[n]), names.index(n)))[:left]:
        counts[n] += 1
    return counts
