"""Bandits over learnability: the mixture goes where rollouts teach something. Learnability is
measured from success rates (scheduler/signals.py): a group of rollouts with pass fraction s
scores 4 s (1 - s). An arm is a domain, or, for ``sec``, ``dump`` and ``thompson``, one difficulty
level of a domain (``domain@level``), as in the papers, whose arms are difficulty levels.

- learnability: SEC (arXiv:2505.14970) ``Q(c) <- alpha r(c) + (1 - alpha) Q(c)``, r = the arm's
  learnability, weights softmax(Q / tau); or DUMP (arXiv:2504.09710) UCB
  ``L(c) + sqrt(2 ln(n+1) / (n_c+1))`` over a window of learnability, softmax with tau; over domains.
- sec, dump: the same two bandits over (domain, level) arms.
- thompson (BOTS, arXiv:2510.26374): per arm a Beta posterior of its pass rate (discounted pass and
  fail counts); each step draws p from each posterior and weights the arm by p (1 - p), so arms
  whose pass rate is likely near 1/2 get the rollouts and an uncertain arm is drawn again.
- transfer (TAC, arXiv:2606.25178): learnability plus ``transfer_weight`` times the domain's mean
  gradient alignment with the others.
- target_pass (as NVIDIA's Nemotron 3 Nano RL data blend samples by target pass rate per domain,
  with a schedule): each arm's weight is ``exp(-(p - target(t))^2 / (2 width^2))``, p its posterior
  mean pass rate, the target moving linearly from ``start`` to ``end`` over the run, so training
  goes where the pass rate is near the target: easy arms first, harder ones later.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from spectrum_rl.scheduler.policies.base import (
    POLICIES,
    Decision,
    MinWeight,
    Policy,
    View,
    proportional_with_floor,
    softmax_with_floor,
    split_arms,
    ucb_bonus,
)
from spectrum_rl.scheduler.signals import arm


class BanditParams(MinWeight):
    """A softmax bandit over learnability."""

    alpha: float = Field(0.5, gt=0, le=1, description="SEC: learning rate of Q.")
    tau: float = Field(0.1, gt=0, description="Softmax temperature.")


class LearnabilityParams(BanditParams):
    """SEC or DUMP over domains."""

    bandit: Literal["sec", "dump"] = Field("sec", description="SEC (TD update of Q) or DUMP (UCB).")


@POLICIES.register("learnability")
class LearnabilityBandit(Policy):
    """SEC or DUMP (``bandit``) over domains, or over (domain, level) arms."""

    Params = LearnabilityParams
    over_levels: ClassVar[bool] = False  # arms are (domain, level) pairs for domains with a range
    bandit: ClassVar[str | None] = None  # fixed bandit; None = the parameter ``bandit``

    def __init__(self, params: BanditParams, names: list[str]) -> None:
        super().__init__(params, names)
        self.q: dict[str, float] = {}
        self.seen: dict[str, int] = {}

    @property
    def kind(self) -> str:
        return self.bandit or self.params.bandit

    def arms(self, view: View) -> list[str]:
        """Bandit arms: each domain, or each level of a domain with a range when ``over_levels``."""
        out = []
        for n in self.names:
            lo_hi = view.ladders.get(n) if self.over_levels else None
            out += [arm(n, level) for level in range(lo_hi[0], lo_hi[1] + 1)] if lo_hi else [n]
        return out

    def scores(self, view: View) -> dict[str, float]:
        arms, learn = self.arms(view), view.learnability
        if self.kind == "sec":
            return {a: self.q.get(a, 0.0) for a in arms}
        total = sum(learn.count(a) for a in arms)
        return {a: (learn.value(a) or 0.0) + ucb_bonus(total, learn.count(a)) for a in arms}

    def update_q(self, view: View) -> None:
        """SEC's TD update, once per new learnability observation of each arm."""
        for a in self.arms(view):
            count = view.learnability.count(a)
            if count != self.seen.get(a, 0) and view.learnability.values.get(a):
                r = view.learnability.values[a][-1]
                self.q[a] = self.params.alpha * r + (1 - self.params.alpha) * self.q.get(a, 0.0)
                self.seen[a] = count

    def decide(self, step: int, view: View) -> Decision:
        self.update_q(view)
        scores = self.scores(view)
        weights = softmax_with_floor(scores, self.params.tau, self.params.min_weight)
        mixture, levels = split_arms(weights, self.names)
        top = max(scores, key=scores.get)
        label = self.bandit or f"learnability ({self.params.bandit})"
        return Decision(mixture, f"{label}: highest {top} ({scores[top]:.3f})", {}, levels)

    def state_dict(self) -> dict:
        return {"q": self.q, "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.q, self.seen = dict(state["q"]), dict(state["seen"])


@POLICIES.register("sec")
class SEC(LearnabilityBandit):
    """SEC (arXiv:2505.14970) over (domain, level) arms."""

    Params = BanditParams
    over_levels, bandit = True, "sec"


@POLICIES.register("dump")
class DUMP(LearnabilityBandit):
    """DUMP (arXiv:2504.09710) over (domain, level) arms."""

    Params = BanditParams
    over_levels, bandit = True, "dump"


@POLICIES.register("thompson")
class Thompson(Policy):
    """BOTS-style Thompson sampling over (domain, level) arms (module docstring). The draws are
    seeded by (run seed, step): a resumed run draws what the uninterrupted one did, and runs of
    different seeds draw independently."""

    Params = MinWeight

    def decide(self, step: int, view: View) -> Decision:
        rng = np.random.default_rng([view.seed, step])
        arms = [arm(n, level) for n in self.names for level in _levels(view, n)]
        draws = {a: rng.beta(*view.learnability.posterior(a)) for a in arms}
        scores = {a: p * (1 - p) for a, p in draws.items()}
        mixture, levels = split_arms(proportional_with_floor(scores, self.params.min_weight), self.names)
        top = max(scores, key=scores.get)
        return Decision(mixture, f"thompson: drew {top} at pass rate {draws[top]:.2f}", {}, levels)


def _levels(view: View, domain: str) -> list[int | None]:
    """A domain's levels as arms (None: the domain is one arm)."""
    lo_hi = view.ladders.get(domain)
    return list(range(lo_hi[0], lo_hi[1] + 1)) if lo_hi else [None]


class TransferParams(LearnabilityParams):
    """Learnability and gradient alignment."""

    transfer_weight: float = Field(1.0, ge=0, description="Weight of the domain's mean gradient alignment.")


@POLICIES.register("transfer")
class TransferBandit(LearnabilityBandit):
    """Learnability plus gradient-alignment transfer (TAC)."""

    Params = TransferParams
    uses_alignment = True

    def scores(self, view: View) -> dict[str, float]:
        base = super().scores(view)
        weight = self.params.transfer_weight
        return {n: s + weight * (view.alignment.mean_alignment(n) or 0.0) for n, s in base.items()}

    def decide(self, step: int, view: View) -> Decision:
        d = super().decide(step, view)
        return Decision(d.mixture, d.reason.replace("learnability", "transfer", 1), {}, d.levels)


class TargetPassParams(MinWeight):
    """A pass-rate target that moves over the run."""

    start: float = Field(0.7, ge=0, le=1, description="Target pass rate at the first step.")
    end: float = Field(0.3, ge=0, le=1, description="Target pass rate at the last step (the run's budget).")
    width: float = Field(0.15, gt=0, description="How far from the target an arm's pass rate may be and still draw.")


@POLICIES.register("target_pass")
class TargetPass(Policy):
    """Weights by closeness of each (domain, level) arm's pass rate to a target that moves from
    ``start`` to ``end`` over the run (module docstring)."""

    Params = TargetPassParams

    def decide(self, step: int, view: View) -> Decision:
        p = self.params
        target = p.start + (p.end - p.start) * view.spent(step)
        rates = {}
        for n in self.names:
            for level in _levels(view, n):
                a, b = view.learnability.posterior(arm(n, level))
                rates[arm(n, level)] = a / (a + b)
        scores = {a: float(np.exp(-((r - target) ** 2) / (2 * p.width**2))) for a, r in rates.items()}
        mixture, levels = split_arms(proportional_with_floor(scores, p.min_weight), self.names)
        top = max(scores, key=scores.get)
        return Decision(mixture, f"target_pass {target:.2f}: nearest {top} at {rates[top]:.2f}", {}, levels)
