"""What every mixture policy shares: the base class and its registry, what a policy may read
(``View``), what it returns (``Decision``), the `scheduler:` section, and the ways to turn scores
into a mixture.

A policy is one class registered in ``POLICIES`` with its parameters beside it (its ``Params``),
chosen by ``scheduler.policy: {type: NAME, ...}`` (or a bare ``NAME``). It reads numbers only (the
View: held-out scores, learnability, entropy, alignment, the transfer estimate), never tensors.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field, model_validator

from spectrum_rl.registry import Registered, Registry, renamed
from spectrum_rl.scheduler.difficulty import DifficultyConfig
from spectrum_rl.scheduler.progress import Falling, LearningProgress
from spectrum_rl.scheduler.prompts import PromptSamplingConfig
from spectrum_rl.scheduler.shares import normalise
from spectrum_rl.scheduler.signals import EntropyMonitor, GradientAlignment, Learnability
from spectrum_rl.schema import StrictModel


class PolicyParams(StrictModel):
    """What every policy's parameters hold: its registered name."""

    type: str = Field(..., description="The policy (a name registered in POLICIES).")


class Policy(ABC):
    """A mixture policy: ``decide`` returns the step's mixture; ``observe_eval`` sees each evaluation."""

    Params: ClassVar[type[PolicyParams]] = PolicyParams
    uses_alignment: ClassVar[bool] = False  # reads gradient alignment (so the trainer computes it)

    def __init__(self, params: PolicyParams, names: list[str]) -> None:
        self.params, self.names = params, names

    @abstractmethod
    def decide(self, step: int, view: View) -> Decision: ...

    def observe_eval(self, step: int, view: View) -> None:
        """Called after each evaluation (default: nothing)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


POLICIES: Registry[type[Policy]] = Registry("policy")
"""``scheduler.policy.type`` -> Policy class. A new policy: one class with ``@POLICIES.register``."""

PolicyField = Annotated[PolicyParams, Registered(POLICIES, shorthand=True)]

# Keys that were `scheduler:` fields before each policy held its own parameters.
_POLICY_KEYS = (
    "weights order phase_steps replay plateau_patience plateau_delta bandit alpha tau min_weight level_weights "
    "explore transfer_weight bwt_weight forgetting_boost entropy_guard_cut entropy_guard_mu "
    "unlock_score unlock_patience unlock_share"
).split()


class SchedulerConfig(StrictModel):
    """`scheduler:` — which domains each step trains on: the policy, and what every policy reads."""

    policy: PolicyField = Field(
        default_factory=lambda: POLICIES.get("joint").Params(type="joint"),
        description="The mixture policy: `{type: NAME, ...its parameters}`, or a bare NAME (each policy's "
        "parameters: below).",
    )
    transfer_file: str | None = Field(
        None,
        description="transfer.json from `spectrum-rl order` (relative to the config), for the policies that read "
        "a transfer estimate; null = the online estimate.",
    )
    success_threshold: float = Field(
        1.0,
        description="A rollout passes when its total reward is at least this (exact match: 1.0); learnability, "
        "the difficulty frontier and the pass-rate sampler all count passes with it.",
    )
    window: int = Field(20, ge=1, description="Window (steps) of the learnability and entropy signals.")
    discount: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Discount of the pass and fail counts behind each arm's pass-rate posterior at each new "
        "observation (the posterior `thompson` draws from and `adaptive` reads).",
    )
    entropy_collapse: float = Field(
        0.5, gt=0, lt=1, description="Entropy below this fraction of its early baseline counts as collapse."
    )
    alignment_every: int = Field(
        5,
        ge=0,
        description="Compute gradient alignment every N steps, for the policies that read it (0 = never).",
    )
    alignment_dim: int = Field(4096, ge=16, description="Dimension of the gradient sketch.")
    difficulty: DifficultyConfig = Field(
        default_factory=DifficultyConfig,
        description="The difficulty frontier of domains whose generator knob is a range.",
    )
    prompt_sampling: PromptSamplingConfig = Field(
        default_factory=PromptSamplingConfig,
        description="The per-prompt pass-rate sampler of domains with `sampling: pass_rate`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _policy_parameters_moved(cls, data: object) -> object:
        for key in _POLICY_KEYS:
            renamed(data, key, f"a policy's parameters are under `policy`, e.g. policy: {{type: NAME, {key}: ...}}")
        return data


@dataclass
class View:
    """Everything a policy may read. Scores are held-out means by domain."""

    names: list[str]
    kinds: dict[str, str]
    prerequisites: dict[str, list[str]]
    entropy: EntropyMonitor
    learnability: Learnability
    alignment: GradientAlignment
    progress: LearningProgress
    falling: Falling
    scores: dict[str, float] = field(default_factory=dict)
    start: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    transfer: np.ndarray | None = None  # T[i, j] in `names` order
    transfer_stderr: np.ndarray | None = None  # its standard errors (online fit, or a probe that recorded them)
    ladders: dict[str, tuple[int, int]] = field(default_factory=dict)  # domain -> (easiest, hardest) level
    eval_n: dict[str, int] = field(default_factory=dict)  # domain -> held-out prompts per eval
    total_steps: int | None = None  # the run's budget in optimizer steps
    max_rollouts: int | None = None  # ...and in completions generated (training.max_rollouts)
    rollouts: int = 0  # completions generated so far
    seed: int = 0  # the run's seed: a policy that draws derives its stream from (seed, step)

    def spent(self, step: int) -> float:
        """Share of the run's budget spent at ``step``: of its steps or of its rollouts, whichever runs
        out first (a run with ``max_rollouts`` ends on it, with ``steps`` only a cap); 0 when unknown."""
        shares = [step / self.total_steps] if self.total_steps else []
        shares += [self.rollouts / self.max_rollouts] if self.max_rollouts else []
        return min(max(shares, default=0.0), 1.0)

    def stderr(self, domain: str, score: float) -> float:
        """Binomial standard error of an eval score, sqrt(p (1 - p) / n) (0 when n is unknown)."""
        n = self.eval_n.get(domain)
        return math.sqrt(max(score * (1 - score), 0.0) / n) if n else 0.0


@dataclass(frozen=True)
class Decision:
    mixture: dict[str, float]
    reason: str
    mu_raise: dict[str, float] = field(default_factory=dict)  # domain -> minimum mu
    levels: dict[str, dict[int, float]] = field(default_factory=dict)  # domain -> {level: share}; else the Planner's


class MinWeight(PolicyParams):
    """A floor under every domain's weight."""

    min_weight: float = Field(0.02, ge=0, lt=1, description="Floor on every domain's weight.")


def softmax_with_floor(scores: dict[str, float], tau: float, floor: float) -> dict[str, float]:
    """softmax(scores / tau), then every weight raised to at least ``floor`` and renormalised."""
    names = list(scores)
    x = np.array([scores[n] for n in names]) / tau
    p = np.exp(x - x.max())
    p /= p.sum()
    p = np.maximum(p, floor)
    p /= p.sum()
    return dict(zip(names, p.tolist()))


def proportional_with_floor(scores: dict[str, float], floor: float) -> dict[str, float]:
    """Weights proportional to the positive part of ``scores``, each at least ``floor`` (uniform
    when no score is positive)."""
    w = normalise({n: max(v, 0.0) for n, v in scores.items()})
    w = {n: max(v, floor) for n, v in w.items()}
    return normalise(w)


def split_arms(weights: Mapping[str, float], names: list[str]) -> tuple[dict[str, float], dict[str, dict[int, float]]]:
    """Weights over arms (``domain`` or ``domain@level``) -> (domain mixture, per-domain level shares)."""
    mixture = dict.fromkeys(names, 0.0)
    levels: dict[str, dict[int, float]] = {}
    for a, w in weights.items():
        domain, _, level = a.partition("@")
        mixture[domain] += w
        if level:
            levels.setdefault(domain, {})[int(level)] = w
    return mixture, {d: normalise(shares) for d, shares in levels.items()}


def phase_mixture(order: list[str], phase: int, replay: float) -> dict[str, float]:
    """Current domain gets 1 - replay, earlier ones share ``replay`` (all of it on the first phase)."""
    current, earlier = order[phase], order[:phase]
    mixture = {n: 0.0 for n in order}
    mixture[current] = 1.0 - (replay if earlier else 0.0)
    for n in earlier:
        mixture[n] = replay / len(earlier)
    return mixture


def ucb_bonus(total: int, count: int) -> float:
    """DUMP's exploration term sqrt(2 ln(N + 1) / (n + 1)): N groups over all arms, n of this arm."""
    return math.sqrt(2 * math.log(total + 1) / (count + 1))
