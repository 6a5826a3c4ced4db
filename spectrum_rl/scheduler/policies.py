"""Mixture policies: given the signals (numbers only), which domains to train and how much.

Each policy returns a Decision (mixture summing to 1, a reason, optional mu raises, and optionally
the difficulty levels of domains with a range knob; without those the Planner's difficulty mode
picks them). Learnability is measured from success rates (scheduler/signals.py): a group of
rollouts with pass fraction s scores 4 s (1 - s). A bandit arm is a domain, or, for the policies
that choose levels too (``sec``, ``dump``, ``thompson``), one difficulty level of a domain
(``domain@level``), as in the papers, whose arms are difficulty levels or categories.

- joint: fixed weights.
- sequential: an explicit order, ``phase_steps`` per phase, ``replay`` share of earlier domains.
- bwt (Omni-Thinker style, arXiv:2507.14783): order from the transfer matrix and kinds
  (structured before creative unless T says otherwise; prerequisites hard), phases advance on a
  held-out plateau or the step budget, with replay.
- learnability: SEC (arXiv:2505.14970) ``Q(c) <- alpha r(c) + (1 - alpha) Q(c)``, r = the arm's
  learnability, weights softmax(Q / tau); or DUMP (arXiv:2504.09710) UCB
  ``L(c) + sqrt(2 ln(n+1) / (n_c+1))`` over a window of learnability, softmax with tau; over domains.
- sec, dump: the same two bandits over (domain, level) arms.
- thompson (BOTS, arXiv:2510.26374): per arm a Beta posterior of its pass rate (discounted pass and
  fail counts); each step draws p from each posterior and weights the arm by p (1 - p), so arms
  whose pass rate is likely near 1/2 get the rollouts and an uncertain arm is drawn again.
- oracle_static: hand-set weights over domains (``weights``) and levels (``level_weights``),
  e.g. zero on the slices one knows are saturated or unsolvable.
- oracle_ladder: hand-set domain weights; each range climbs from its easiest to its hardest level
  (of ``level_weights``' levels when given) in equal shares of the run, ``replay`` on the levels
  below.
- transfer (TAC, arXiv:2606.25178): learnability plus ``transfer_weight`` times the domain's mean
  gradient alignment with the others.
- adaptive (ours): the mission's scheduler. Each domain's score is
  ``UCB learnability + transfer_weight * alignment + bwt_weight * b_i`` (an unmeasured domain's
  learnability counts as 1, the most, so it is measured first) with ``b_i = mean_{j != i}
  T[i, j]``, the estimated change of the other domains' held-out scores from training on i (T from
  the online fit or a probe; entries within two standard errors of 0 count as 0), and the mixture
  is proportional to the scores (not a softmax: a noisy lead does not take the whole step), with a
  floor. Difficulty levels come from the Planner's frontier and prompts from the pass-rate
  sampler, so it decides at all three levels. On top: the entropy monitor's collapse guard (a
  domain behaving creatively whose entropy collapsed cuts the weight of the structured ones and
  gets its mu raised, unless its recent pass rate is >= 0.9: solved, not collapsed; a
  declared-structured domain whose entropy rises is treated as creative), a
  forgetting guard (boost a domain whose held-out score fell below its best by more than the
  margin or two standard errors of the eval, whichever is larger) and prerequisite gating (a lock
  opens when the prerequisite reaches ``unlock_score``, plateaus, or ``unlock_share`` of the run
  has passed). The reason names every signal that moved a weight by at least ``MOVED`` and every
  guard that fired.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from spectrum_rl.registry import Registry
from spectrum_rl.scheduler.difficulty import DifficultyConfig
from spectrum_rl.scheduler.order import best_order, significant_transfer
from spectrum_rl.scheduler.prompts import PromptSamplingConfig
from spectrum_rl.scheduler.signals import EntropyMonitor, GradientAlignment, Learnability, arm
from spectrum_rl.schema import StrictModel


class Policy(ABC):
    """A mixture policy: ``decide`` returns the step's mixture; ``observe_eval`` sees each evaluation."""

    uses_alignment: ClassVar[bool] = False  # reads gradient alignment (so the trainer computes it)

    def __init__(self, cfg: SchedulerConfig, names: list[str]) -> None:
        self.cfg, self.names = cfg, names

    @abstractmethod
    def decide(self, step: int, view: View) -> Decision: ...

    def observe_eval(self, step: int, view: View) -> None:
        """Called after each evaluation (default: nothing)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


POLICIES: Registry[type[Policy]] = Registry("policy")
"""``scheduler.policy`` name -> Policy class. A new policy: one class below with ``@POLICIES.register``."""


class SchedulerConfig(StrictModel):
    """`scheduler:` — which domains each step trains on (the policies below)."""

    policy: str = Field(
        "joint",
        description="joint (fixed weights) | sequential (explicit order) | bwt (order from "
        "transfer, phases) | learnability (SEC/DUMP bandit) | transfer (TAC bandit) | adaptive (ours), "
        "or any registered policy.",
    )
    weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="`joint`: mixture weight per domain name (normalised); null = uniform."
    )
    order: list[str] | None = Field(
        None, description="`sequential`/`bwt`: explicit domain order (`bwt` computes one when null)."
    )
    phase_steps: int = Field(50, ge=1, description="`sequential`/`bwt`: steps per phase (budget).")
    replay: float = Field(0.1, ge=0, lt=1, description="`sequential`/`bwt`: mixture share of earlier domains.")
    plateau_patience: int = Field(2, ge=1, description="`bwt`: evals without improvement before the next phase.")
    plateau_delta: float = Field(0.01, ge=0, description="`bwt`: improvement that resets the plateau count.")
    transfer_file: str | None = Field(
        None,
        description="`bwt`: transfer.json from `spectrum-rl order` "
        "(relative to the config); null = online estimate or kinds.",
    )
    bandit: Literal["sec", "dump"] = Field(
        "sec", description="`learnability`/`transfer`/`adaptive`: SEC (TD update) or DUMP (UCB)."
    )
    alpha: float = Field(0.5, gt=0, le=1, description="SEC learning rate of Q.")
    tau: float = Field(0.1, gt=0, description="Softmax temperature of the bandits.")
    window: int = Field(20, ge=1, description="Window (steps) of the learnability and entropy signals.")
    min_weight: float = Field(0.02, ge=0, lt=1, description="Bandits: floor on every domain's weight.")
    level_weights: dict[str, dict[int, Annotated[float, Field(ge=0)]]] | None = Field(
        None,
        description="`oracle_static`/`oracle_ladder`: per domain with a range knob, weight per difficulty level "
        "(levels not named get 0); null = every level of the range.",
    )
    explore: float = Field(
        0.1, ge=0, description="`adaptive`: weight of the UCB exploration bonus sqrt(2 ln(N+1) / (n_d+1)) (groups)."
    )
    success_threshold: float = Field(
        1.0,
        description="A rollout passes when its total reward is at least this (exact match: 1.0); learnability, "
        "the difficulty frontier and the pass-rate sampler all count passes with it.",
    )
    discount: float = Field(
        0.95, gt=0, le=1, description="`thompson`: discount of an arm's past pass/fail counts at each observation."
    )
    transfer_weight: float = Field(1.0, ge=0, description="`transfer`/`adaptive`: weight of gradient alignment.")
    bwt_weight: float = Field(
        1.0,
        ge=0,
        description="`adaptive`: weight of a domain's estimated backward transfer (the mean change of the other "
        "domains' held-out scores per window of training on it; needs a transfer estimate).",
    )
    alignment_every: int = Field(
        5, ge=0, description="Compute gradient alignment every N steps (`transfer`/`adaptive`; 0 = never)."
    )
    alignment_dim: int = Field(4096, ge=16, description="Dimension of the gradient sketch.")
    forgetting_margin: float = Field(
        0.05,
        ge=0,
        description="`adaptive`: score drop below best that boosts a domain (at least two standard errors of the "
        "domain's eval score, sqrt(p (1 - p) / n), so eval noise does not fire it).",
    )
    forgetting_boost: float = Field(2.0, ge=1, description="`adaptive`: weight multiplier of a forgotten domain.")
    entropy_collapse: float = Field(
        0.5, gt=0, lt=1, description="Entropy below this fraction of its early baseline counts as collapse."
    )
    entropy_guard_cut: float = Field(
        0.5,
        ge=0,
        le=1,
        description="`adaptive`: structured weight multiplier while a creative domain's entropy has collapsed.",
    )
    entropy_guard_mu: float = Field(
        0.3, ge=0, le=1, description="`adaptive`: minimum mu of a collapsed creative domain."
    )
    unlock_score: float = Field(0.3, description="`adaptive`: held-out score prerequisites must reach.")
    unlock_patience: int = Field(
        3,
        ge=1,
        description="`adaptive`: a prerequisite that has not gained more than `plateau_delta` (or two standard "
        "errors of its eval score) over its best for this many evals counts as done (plateaued).",
    )
    unlock_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="`adaptive`: no prerequisite lock holds past this share of `training.steps`.",
    )

    difficulty: DifficultyConfig = Field(
        default_factory=DifficultyConfig,
        description="The difficulty frontier of domains whose generator knob is a range.",
    )
    prompt_sampling: PromptSamplingConfig = Field(
        default_factory=PromptSamplingConfig,
        description="The per-prompt pass-rate sampler of domains with `sampling: pass_rate`.",
    )

    @field_validator("policy")
    @classmethod
    def _registered(cls, v: str) -> str:
        return POLICIES.check(v)

    @field_validator("weights")
    @classmethod
    def _some_positive(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            if not any(w > 0 for w in v.values()):
                raise ValueError("at least one weight must be > 0")
        return v


@dataclass
class View:
    """Everything a policy may read. Scores are held-out means by domain."""

    names: list[str]
    kinds: dict[str, str]
    prerequisites: dict[str, list[str]]
    entropy: EntropyMonitor
    learnability: Learnability
    alignment: GradientAlignment
    scores: dict[str, float] = field(default_factory=dict)
    start: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    transfer: np.ndarray | None = None  # T[i, j] in `names` order
    transfer_stderr: np.ndarray | None = None  # its standard errors (online fit, or a probe that recorded them)
    ladders: dict[str, tuple[int, int]] = field(default_factory=dict)  # domain -> (easiest, hardest) level
    eval_n: dict[str, int] = field(default_factory=dict)  # domain -> held-out prompts per eval
    total_steps: int | None = None  # the run's budget

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


def normalise(w: Mapping[str, float]) -> dict[str, float]:
    """Weights scaled to sum to 1 (uniform when they sum to 0)."""
    total = sum(w.values())
    return {k: v / total for k, v in w.items()} if total > 0 else {k: 1 / len(w) for k in w}


@POLICIES.register("joint")
class Joint(Policy):
    """Fixed weights (`weights`; uniform when null)."""

    def decide(self, step: int, view: View) -> Decision:
        weights = self.cfg.weights or {n: 1.0 for n in self.names}
        return Decision(normalise({n: float(weights.get(n, 0.0)) for n in self.names}), "joint: fixed weights")


def phase_mixture(order: list[str], phase: int, replay: float) -> dict[str, float]:
    """Current domain gets 1 - replay, earlier ones share ``replay`` (all of it on the first phase)."""
    current, earlier = order[phase], order[:phase]
    mixture = {n: 0.0 for n in order}
    mixture[current] = 1.0 - (replay if earlier else 0.0)
    for n in earlier:
        mixture[n] = replay / len(earlier)
    return mixture


@POLICIES.register("sequential")
class Sequential(Policy):
    """An explicit `order`, `phase_steps` per phase, a `replay` share for earlier domains."""

    def decide(self, step: int, view: View) -> Decision:
        order = list(self.cfg.order or self.names)
        phase = min(step // self.cfg.phase_steps, len(order) - 1)
        reason = f"sequential: phase {phase + 1}/{len(order)} ({order[phase]})"
        return Decision({**{n: 0.0 for n in self.names}, **phase_mixture(order, phase, self.cfg.replay)}, reason)


@POLICIES.register("bwt")
class BWT(Policy):
    """Ordered phases from the transfer matrix; advance on plateau or budget."""

    def __init__(self, cfg: SchedulerConfig, names: list[str]) -> None:
        super().__init__(cfg, names)
        self.order: list[str] | None = None
        self.phase, self.phase_start, self.stale, self.phase_best = 0, 0, 0, -math.inf
        self.why = ""
        self._planned_from: np.ndarray | None = None  # the transfer matrix the order was made from

    def _ensure_order(self, view: View, step: int) -> None:
        """The order of phases: explicit, else the best order for the current transfer matrix. When
        a new matrix arrives (the online estimate appears or is refitted after an eval), the
        domains not started yet are re-ordered; finished and current phases stay."""
        if self.cfg.order:
            if self.order is None:
                self.order, self.why = list(self.cfg.order), "explicit order"
            return
        if self.order is not None and view.transfer is self._planned_from:
            return
        T = view.transfer if view.transfer is not None else np.zeros((len(self.names), len(self.names)))
        if view.transfer_stderr is not None:  # order only on what the data determine
            T = significant_transfer(T, view.transfer_stderr)
        best = best_order(self.names, T, view.kinds, view.prerequisites).order
        self._planned_from = view.transfer
        if self.order is None:
            self.order = best
            self.why = "transfer matrix" if view.transfer is not None else "kinds (no transfer estimate yet)"
            return
        started = self.order[: self.phase + 1]
        replanned = started + [n for n in best if n not in started]
        if replanned != self.order:
            self.order, self.why = replanned, f"transfer matrix (re-planned at step {step}: new estimate)"

    def decide(self, step: int, view: View) -> Decision:
        self._ensure_order(view, step)
        assert self.order is not None
        if step - self.phase_start >= self.cfg.phase_steps and self.phase < len(self.order) - 1:
            self._advance(step)
        current = self.order[self.phase]
        reason = f"bwt: phase {self.phase + 1}/{len(self.order)} ({current}); order by {self.why}"
        mixture = {**{n: 0.0 for n in self.names}, **phase_mixture(self.order, self.phase, self.cfg.replay)}
        return Decision(mixture, reason)

    def _advance(self, step: int) -> None:
        self.phase += 1
        self.phase_start, self.stale, self.phase_best = step, 0, -math.inf

    def observe_eval(self, step: int, view: View) -> None:
        if self.order is None or self.phase >= len(self.order) - 1:
            return
        score = view.scores.get(self.order[self.phase])
        if score is None or step == self.phase_start:
            return
        if score > self.phase_best + self.cfg.plateau_delta:
            self.phase_best, self.stale = score, 0
        else:
            self.stale += 1
            if self.stale >= self.cfg.plateau_patience:
                self._advance(step)

    def state_dict(self) -> dict:
        return {
            "order": self.order,
            "phase": self.phase,
            "phase_start": self.phase_start,
            "stale": self.stale,
            "phase_best": None if self.phase_best == -math.inf else self.phase_best,  # JSON has no -inf
            "why": self.why,
        }

    def load_state_dict(self, state: dict) -> None:
        self.order, self.phase, self.phase_start = state["order"], state["phase"], state["phase_start"]
        best = state["phase_best"]
        self.stale, self.phase_best, self.why = state["stale"], -math.inf if best is None else best, state["why"]


@POLICIES.register("learnability")
class LearnabilityBandit(Policy):
    """SEC or DUMP (``scheduler.bandit``) over domains, or over (domain, level) arms."""

    over_levels: ClassVar[bool] = False  # arms are (domain, level) pairs for domains with a range
    bandit: ClassVar[str | None] = None  # fixed bandit; None = ``scheduler.bandit``

    def __init__(self, cfg: SchedulerConfig, names: list[str]) -> None:
        super().__init__(cfg, names)
        self.q: dict[str, float] = {}
        self.seen: dict[str, int] = {}

    def arms(self, view: View) -> list[str]:
        """Bandit arms: each domain, or each level of a domain with a range when ``over_levels``."""
        out = []
        for n in self.names:
            lo_hi = view.ladders.get(n) if self.over_levels else None
            out += [arm(n, level) for level in range(lo_hi[0], lo_hi[1] + 1)] if lo_hi else [n]
        return out

    def scores(self, view: View) -> dict[str, float]:
        arms, learn = self.arms(view), view.learnability
        if (self.bandit or self.cfg.bandit) == "sec":
            return {a: self.q.get(a, 0.0) for a in arms}
        total = sum(learn.count(a) for a in arms)
        return {a: (learn.value(a) or 0.0) + ucb_bonus(total, learn.count(a)) for a in arms}

    def update_q(self, view: View) -> None:
        """SEC's TD update, once per new learnability observation of each arm."""
        for a in self.arms(view):
            count = view.learnability.count(a)
            if count != self.seen.get(a, 0) and view.learnability.values.get(a):
                r = view.learnability.values[a][-1]
                self.q[a] = self.cfg.alpha * r + (1 - self.cfg.alpha) * self.q.get(a, 0.0)
                self.seen[a] = count

    def decide(self, step: int, view: View) -> Decision:
        self.update_q(view)
        scores = self.scores(view)
        mixture, levels = split_arms(softmax_with_floor(scores, self.cfg.tau, self.cfg.min_weight), self.names)
        top = max(scores, key=scores.get)
        label = self.bandit or f"learnability ({self.cfg.bandit})"
        return Decision(mixture, f"{label}: highest {top} ({scores[top]:.3f})", {}, levels)

    def state_dict(self) -> dict:
        return {"q": self.q, "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.q, self.seen = dict(state["q"]), dict(state["seen"])


def ucb_bonus(total: int, count: int) -> float:
    """DUMP's exploration term sqrt(2 ln(N + 1) / (n + 1)): N groups over all arms, n of this arm."""
    return math.sqrt(2 * math.log(total + 1) / (count + 1))


@POLICIES.register("sec")
class SEC(LearnabilityBandit):
    """SEC (arXiv:2505.14970) over (domain, level) arms."""

    over_levels, bandit = True, "sec"


@POLICIES.register("dump")
class DUMP(LearnabilityBandit):
    """DUMP (arXiv:2504.09710) over (domain, level) arms."""

    over_levels, bandit = True, "dump"


@POLICIES.register("thompson")
class Thompson(LearnabilityBandit):
    """BOTS-style Thompson sampling over (domain, level) arms (module docstring). The draws are
    seeded by the step, so a resumed run draws what the uninterrupted one did."""

    over_levels = True

    def decide(self, step: int, view: View) -> Decision:
        rng = np.random.default_rng(step)
        draws = {a: rng.beta(*view.learnability.posterior(a)) for a in self.arms(view)}
        scores = {a: p * (1 - p) for a, p in draws.items()}
        mixture, levels = split_arms(proportional_with_floor(scores, self.cfg.min_weight), self.names)
        top = max(scores, key=scores.get)
        return Decision(mixture, f"thompson: drew {top} at pass rate {draws[top]:.2f}", {}, levels)


def level_shares(cfg: SchedulerConfig, view: View, domain: str) -> dict[int, float]:
    """The hand-set level weights of ``domain`` (``level_weights``), else every level of its range."""
    lo, hi = view.ladders[domain]
    given = (cfg.level_weights or {}).get(domain)
    return {lvl: w for lvl, w in given.items() if w > 0} if given else dict.fromkeys(range(lo, hi + 1), 1.0)


@POLICIES.register("oracle_static")
class OracleStatic(Policy):
    """Hand-set weights over domains (``weights``) and difficulty levels (``level_weights``)."""

    def decide(self, step: int, view: View) -> Decision:
        weights = self.cfg.weights or {n: 1.0 for n in self.names}
        mixture = normalise({n: float(weights.get(n, 0.0)) for n in self.names})
        levels = {d: normalise(level_shares(self.cfg, view, d)) for d in view.ladders}
        return Decision(mixture, "oracle_static: hand-set weights", {}, levels)


@POLICIES.register("oracle_ladder")
class OracleLadder(Policy):
    """Hand-set domain weights; every range climbs its levels in equal shares of the run, with
    ``replay`` spread over the levels below the current one."""

    def decide(self, step: int, view: View) -> Decision:
        weights = self.cfg.weights or {n: 1.0 for n in self.names}
        mixture = normalise({n: float(weights.get(n, 0.0)) for n in self.names})
        total = view.total_steps or 1
        levels, at = {}, []
        for d in view.ladders:
            ladder = sorted(level_shares(self.cfg, view, d))
            k = min(len(ladder) - 1, step * len(ladder) // total)
            levels[d] = phase_mixture([str(lvl) for lvl in ladder], k, self.cfg.replay)
            levels[d] = {int(lvl): w for lvl, w in levels[d].items() if w > 0}
            at.append(f"{d}@{ladder[k]}")
        return Decision(mixture, "oracle_ladder: " + (", ".join(at) or "no range"), {}, levels)


@POLICIES.register("transfer")
class TransferBandit(LearnabilityBandit):
    """Learnability plus gradient-alignment transfer (TAC)."""

    uses_alignment = True

    def scores(self, view: View) -> dict[str, float]:
        base = super().scores(view)
        return {n: s + self.cfg.transfer_weight * (view.alignment.mean_alignment(n) or 0.0) for n, s in base.items()}

    def decide(self, step: int, view: View) -> Decision:
        d = super().decide(step, view)
        return Decision(d.mixture, d.reason.replace("learnability", "transfer", 1), {}, d.levels)


MOVED = 0.02  # a signal "moved the mixture" when some domain's weight differs by this much without it
CONVERGED = 0.9  # a domain whose recent pass rate is this high has converged: low entropy is expected there


def converged(view: View, domain: str) -> bool:
    """Whether ``domain``'s recent pass rate (its discounted Beta posterior mean) is at least CONVERGED:
    its entropy fell because it is solved, which the collapse guard must not treat as a collapse."""
    passes, fails = view.learnability.posterior(domain)
    return passes / (passes + fails) >= CONVERGED


def backward_transfer(view: View) -> dict[str, float]:
    """``b_i = mean_{j != i} T[i, j]`` per domain (0 without a transfer estimate); entries within
    two standard errors of 0 count as 0, so only what the data determine can move the mixture."""
    T = view.transfer
    if T is None or len(view.names) < 2:
        return dict.fromkeys(view.names, 0.0)
    if view.transfer_stderr is not None:
        T = significant_transfer(T, view.transfer_stderr)
    off = ~np.eye(len(view.names), dtype=bool)
    return {n: float(T[i][off[i]].mean()) for i, n in enumerate(view.names)}


@POLICIES.register("adaptive")
class Adaptive(TransferBandit):
    """Learnability + backward transfer + gradient alignment, with the entropy, forgetting and
    prerequisite guards (module docstring).

    A domain is locked while a prerequisite is not done; a prerequisite is done once its held-out
    score reaches ``unlock_score`` or it has plateaued (no gain above ``plateau_delta`` over its
    best for ``unlock_patience`` evals). An unlock is permanent and its reason is logged once."""

    def __init__(self, cfg: SchedulerConfig, names: list[str]) -> None:
        super().__init__(cfg, names)
        self.peak: dict[str, float] = {}  # best held-out score so far, per domain
        self.stale: dict[str, int] = {}  # evals since the last gain above plateau_delta
        self.done: dict[str, str] = {}  # prerequisite -> why it counts as done
        self.news: list[str] = []  # unlock and re-kind reasons not reported yet
        self.creative: list[str] = []  # declared structured, but their entropy rose under training

    def observe_eval(self, step: int, view: View) -> None:
        super().observe_eval(step, view)
        for n, score in view.scores.items():
            gain = max(self.cfg.plateau_delta, 2 * view.stderr(n, score))  # a gain the eval's noise cannot make
            if n not in self.peak or score > self.peak[n] + gain:
                self.peak[n], self.stale[n] = max(score, self.peak.get(n, score)), 0
            else:
                self.stale[n] += 1
            if n in self.done:
                continue
            if score >= self.cfg.unlock_score:
                self.done[n] = f"{n} reached {score:.2f} >= unlock_score {self.cfg.unlock_score} at step {step}"
            elif self.stale[n] >= self.cfg.unlock_patience:
                self.done[n] = (
                    f"{n} plateaued at {self.peak[n]:.2f} (no gain > {gain:.3f} in {self.stale[n]} evals, step {step})"
                )
            if n in self.done and any(n in view.prerequisites.get(m, []) for m in self.names):
                self.news.append(f"prerequisite {self.done[n]}")

    def _unlock_by_budget(self, step: int, view: View) -> None:
        """No lock holds past ``unlock_share`` of the run: its prerequisites count as done then."""
        if view.total_steps is None or step < self.cfg.unlock_share * view.total_steps:
            return
        for n in self.names:
            for pre in view.prerequisites.get(n, []):
                if pre not in self.done:
                    self.done[pre] = (
                        f"{pre} held its lock for unlock_share {self.cfg.unlock_share} of the run (step {step})"
                    )
                    self.news.append(f"prerequisite {self.done[pre]}")

    def _signals(self, view: View) -> tuple[dict[str, float], list[str]]:
        """The mixture from the three score terms, and what each term that moved it says."""
        learn_view = view.learnability
        total = sum(learn_view.count(n) for n in self.names)
        learn = {  # an unmeasured domain counts as fully learnable (optimism: it is measured first)
            n: (1.0 if learn_view.value(n) is None else learn_view.value(n))
            + self.cfg.explore * ucb_bonus(total, learn_view.count(n))
            for n in self.names
        }
        align = {n: self.cfg.transfer_weight * (view.alignment.mean_alignment(n) or 0.0) for n in self.names}
        bwt = backward_transfer(view)
        terms = {"learnability": learn, "alignment": align, "bwt": {n: self.cfg.bwt_weight * b for n, b in bwt.items()}}

        def mixture(flat: str | None = None) -> dict[str, float]:
            """The mixture, with term ``flat`` replaced by its mean over domains (it then tells them
            apart no more, but adds the same mass)."""
            parts = {
                k: v if k != flat else dict.fromkeys(v, float(np.mean(list(v.values())))) for k, v in terms.items()
            }
            total = {n: sum(part[n] for part in parts.values()) for n in self.names}
            return proportional_with_floor(total, self.cfg.min_weight)

        weights = mixture()
        notes = []
        for k in terms:
            without = mixture(k)
            if max(abs(weights[n] - without[n]) for n in self.names) < MOVED:
                continue
            if k == "learnability":
                top = max(learn, key=learn.get)
                notes.append(f"learnability favours {top} ({learn[top]:.3f} with exploration)")
            elif k == "alignment":
                top = max(align, key=align.get)
                notes.append(f"gradient alignment favours {top} ({align[top]:+.3f})")
            else:
                low, high = min(bwt, key=bwt.get), max(bwt, key=bwt.get)
                said = [f"damps {low} ({bwt[low]:+.3f})"] if bwt[low] < 0 else []
                said += [f"favours {high} ({bwt[high]:+.3f})"] if bwt[high] > 0 else []
                notes.append("backward transfer " + ", ".join(said))
        return weights, notes

    def _kinds(self, view: View) -> dict[str, str]:
        """The kinds the entropy monitor observed: a declared-structured domain whose entropy rises
        under training (the monitor's ``contradicts_kind``) behaves creatively and is treated as
        creative from then on (its collapse is guarded, the guard does not cut it)."""
        for n in self.names:
            state = view.entropy.state(n)
            if (
                view.kinds[n] == "structured"
                and n not in self.creative
                and state is not None
                and state.contradicts_kind
            ):
                self.creative.append(n)
                self.news.append(f"entropy: {n} is declared structured but its entropy rises; treated as creative")
        return {n: "creative" if n in self.creative else view.kinds[n] for n in self.names}

    def decide(self, step: int, view: View) -> Decision:
        self._unlock_by_budget(step, view)
        weights, notes = self._signals(view)
        kinds = self._kinds(view)
        notes += self.news
        self.news = []
        mu_raise: dict[str, float] = {}
        locked = [n for n in self.names if any(p not in self.done for p in view.prerequisites.get(n, []))]
        for n in locked:
            weights[n] = 0.0
        if locked:
            notes.append(
                f"locked until prerequisites reach {self.cfg.unlock_score}, plateau or {self.cfg.unlock_share:.0%} of "
                f"the run has passed: {', '.join(locked)}"
            )
        for n in self.names:
            best, now = view.best.get(n), view.scores.get(n)
            margin = max(self.cfg.forgetting_margin, 2 * view.stderr(n, best or 0.0))
            if n not in locked and best is not None and now is not None and now < best - margin:
                weights[n] *= self.cfg.forgetting_boost
                notes.append(f"forgetting guard: {n} {now:.2f} < best {best:.2f}")
        collapsed = [
            n
            for n in self.names
            if kinds[n] == "creative"
            and n not in locked
            and (s := view.entropy.state(n)) is not None
            and s.collapsed
            and not converged(view, n)
        ]
        if collapsed:
            for n in self.names:
                if kinds[n] == "structured":
                    weights[n] *= self.cfg.entropy_guard_cut
            mu_raise = {n: self.cfg.entropy_guard_mu for n in collapsed}
            notes.append(f"entropy guard: {', '.join(collapsed)} collapsed; structured weight cut, mu raised")
        if sum(weights.values()) <= 0:  # everything locked: train the unlocked roots
            weights = {n: float(not view.prerequisites.get(n)) for n in self.names}
        reason = "adaptive: " + ("; ".join(notes) if notes else "no signal has moved the mixture yet")
        return Decision(normalise(weights), reason, mu_raise)

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "peak": self.peak,
            "stale": self.stale,
            "done": self.done,
            "creative": self.creative,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.peak, self.stale, self.done = state["peak"], state["stale"], state["done"]
        self.creative = list(state["creative"])
