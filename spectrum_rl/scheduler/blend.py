"""How much SFT versus RL: mu schedules, the HPT gate, per-layer mu, and the weight of every row.

The spectrum loss ``L = (1 - mu) * L_RL + mu * L_SFT`` is decided here; the trainer only applies
the numbers. Three functions carry a step's decision to the trainer:
- ``allocate_rows``: how many rollout prompts and expert demonstrations to draw per domain
  (whole items from fractional shares: ``Credit`` carries each domain's unmet share from step to
  step, so a mixture is met over time, not only rounded each step; see ``Credit``);
- ``gate_switches``, ``gate_counts``, ``gate_mu`` and ``row_weights``: the weight of each rollout group's rows and
  of each demonstration, once the rollouts are scored (the gate switches a prompt to SFT here);
- ``layer_factors``: per-layer mu as gradient factors (``training.sft.layer_mu``).

mu schedules (``training.sft.mu.schedule``; one class each, registered in ``MU_SCHEDULES``):
- constant: ``mu = value``.
- linear: from ``start`` to ``end`` over ``steps`` (then ``end``).
- cosine (CHORD-mu, Zhang et al. 2025, arXiv:2508.11408): warmup ``mu = s/W * peak`` for s < W;
  decay ``mu = valley + (peak - valley) * 0.5 * (1 + cos(pi * (s - W) / D))`` for W <= s < W+D;
  ``valley`` after. Published: peak 0.9, valley 0.05, W 0, D 200.
- staged: ``mu = 1`` for the first ``sft_steps`` steps, then 0 (SFT-then-RL as one schedule).
- sft_only / rl_only: ``mu = 1`` / ``mu = 0``.
- adaptive (ours): SFT routed to where RL is blind, per domain (HPT's switch at domain level,
  smoothed), with a disruption feedback on top. Each step the domain's *blindness*
  ``x = max(b, u)``: ``b`` the fraction of its rollout groups whose rewards are all equal at 0
  (no RL signal, HPT's gamma = 0 condition), ``u = 1`` while its last held-out score is below
  ``blind_below`` (else 0); a step without rollouts of the domain has ``x = u``. Then
  ``need <- need + smoothing * (valley + (peak - valley) * x - need)``, so a blind domain's mu
  climbs to ``peak`` and decays to ``valley`` as its rollouts start to differ. Disruption (held-out
  score below its pre-training value by more than ``margin``) raises a second term by ``up`` (up to
  ``peak``), which otherwise decays by ``decay`` toward ``valley``; ``mu = max(need, disruption)``.
  Its demonstrations are allocated by mu, not by the RL mixture (``allocate_rows``).
- gate (HPT, Lv et al. 2025, arXiv:2509.04419): per prompt, SFT on the prompt's expert
  demonstration when the group's success rate is <= ``gamma``, else RL on its rollouts. The
  switch happens once the rollouts are scored (``gate_switches``); the step's mu for the domain
  is then the fraction of its prompts switched, ``f = switched / prompts``, so each prompt
  weighs one unit out of one shared denominator, either as its RL group or as its demonstration.

A new schedule is one class here: subclass ``MuRule``, register it, add any new parameter to
``MuSchedule``, and test it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from spectrum_rl.registry import Registry
from spectrum_rl.scheduler.policies import normalise
from spectrum_rl.scheduler.step import GroupOutcome, StepPlan
from spectrum_rl.schema import StrictModel


class MuRule:
    """One domain's mu over training, built from its ``MuSchedule``."""

    per_prompt: ClassVar[bool] = False  # True: mu is switched per prompt in row_weights (the gate)
    by_need: ClassVar[bool] = False  # True: demonstrations go to the domain by its mu, not its RL share

    def __init__(self, spec: MuSchedule) -> None:
        self.spec = spec

    def mu(self, step: int) -> float:
        """mu at ``step``."""
        raise NotImplementedError

    def max_mu(self) -> float:
        """The largest mu this rule can give: 0 means the domain never trains on demonstrations."""
        return 1.0

    def observe(self, score: float) -> None:
        """The domain's held-out score after an evaluation (the first call: before training)."""

    def observe_step(self, blind: float | None) -> None:
        """After each step: the fraction of the domain's rollout groups with no RL signal at
        reward 0 (None when the step had no rollouts of the domain)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


MU_SCHEDULES: Registry[type[MuRule]] = Registry("mu schedule")


class MuSchedule(StrictModel):
    """`training.sft.mu` — how the SFT weight moves over training (schedules in scheduler/blend.py)."""

    schedule: str = Field(
        "rl_only",
        description="constant | linear | cosine (CHORD-mu) | staged | sft_only | "
        "rl_only | adaptive | gate (HPT per-prompt), or any registered schedule.",
    )
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
    blind_below: float = Field(
        0.05,
        ge=0,
        le=1,
        description="`adaptive`: a held-out score below this counts as blind to RL (mu rises toward `peak`).",
    )
    smoothing: float = Field(
        0.5, gt=0, le=1, description="`adaptive`: step size of mu toward its blindness target, per step."
    )
    gamma: float = Field(0.0, ge=0, lt=1, description="`gate`: success rate at or below which a prompt gets SFT.")

    @field_validator("schedule")
    @classmethod
    def _registered(cls, v: str) -> str:
        return MU_SCHEDULES.check(v)

    @model_validator(mode="after")
    def _ordered(self) -> MuSchedule:
        if self.valley > self.peak:
            raise ValueError(f"valley ({self.valley}) must be <= peak ({self.peak})")
        return self


class SFTConfig(StrictModel):
    """`training.sft:` — the SFT side of the spectrum and how it is blended with RL."""

    mu: MuSchedule = Field(default_factory=MuSchedule, description="Schedule of the SFT weight mu (all domains).")
    per_domain: dict[str, MuSchedule] = Field(
        default_factory=dict, description="Per-domain overrides of `mu` (domain name -> schedule)."
    )
    expert_ratio: float = Field(
        0.5,
        ge=0,
        le=8,
        description="Expert demonstrations per step, as a fraction of prompts_per_step; they only enter the SFT loss.",
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="Learning rate of a pure-SFT step (mu = 1); a step blending SFT and RL uses "
        "`(1 - mu) * training.learning_rate + mu * this` (mu: the step's mixture-weighted mu), following "
        "the same warmup/decay. Unset: `training.learning_rate`. SFT recipes usually run a higher rate than "
        "RL ones (e.g. ~1e-5 vs ~1e-6 for 7B models).",
    )
    phi: bool = Field(False, description="CHORD-phi: weight each expert token by p(1-p).")
    luffy: bool = Field(
        False,
        description="LUFFY: add each prompt's expert completion to its rollout group "
        "(shaped importance weight pi/(pi+luffy_gamma), no clipping).",
    )
    luffy_gamma: float = Field(0.1, gt=0, description="LUFFY shaping constant gamma.")
    layer_mu: Literal["uniform", "increasing", "decreasing"] = Field(
        "uniform",
        description="Per-layer mu: a ramp over depth around the step's mean mu (increasing: less SFT at the "
        "bottom, more at the top, 0 to 2*mu while mu <= 0.5; decreasing: the reverse), applied to gradients "
        "layer by layer. The layers' average is always the step's mu: above 0.5 the ramp flattens to stay "
        "in [0, 1] (mu 0.9: 0.8 to 1.0).",
    )
    gate_threshold: float = Field(
        1.0, description="`gate` schedule: a rollout counts as a success when its total reward is >= this."
    )

    def schedule_of(self, domain: str) -> MuSchedule:
        """The domain's schedule: its ``per_domain`` entry, else ``mu``."""
        return self.per_domain.get(domain, self.mu)


def mu_rule(spec: MuSchedule) -> MuRule:
    """A fresh rule for ``spec`` (one per domain: closed-loop rules keep per-domain state)."""
    return MU_SCHEDULES.get(spec.schedule, field="training.sft.mu.schedule")(spec)


# ---------------------------------------------------------------------------------------------
# The schedules
# ---------------------------------------------------------------------------------------------


def chord_mu(step: int, peak: float, valley: float, warmup: int, decay_steps: int) -> float:
    """CHORD-mu (arXiv:2508.11408): linear warmup to ``peak``, cosine decay to ``valley``."""
    if step < warmup:
        return step / warmup * peak
    if step < warmup + decay_steps:
        return valley + (peak - valley) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / decay_steps))
    return valley


@MU_SCHEDULES.register("constant")
class Constant(MuRule):
    """mu = value."""

    def mu(self, step: int) -> float:
        return self.spec.value

    def max_mu(self) -> float:
        return self.spec.value


@MU_SCHEDULES.register("linear")
class Linear(MuRule):
    """From start to end over steps, then end."""

    def mu(self, step: int) -> float:
        return self.spec.start + (self.spec.end - self.spec.start) * min(step / self.spec.steps, 1.0)

    def max_mu(self) -> float:
        return max(self.spec.start, self.spec.end)


@MU_SCHEDULES.register("cosine")
class Cosine(MuRule):
    """CHORD-mu: warmup to peak, cosine decay to valley."""

    def mu(self, step: int) -> float:
        s = self.spec
        return chord_mu(step, s.peak, s.valley, s.warmup, s.decay_steps)

    def max_mu(self) -> float:
        return self.spec.peak


@MU_SCHEDULES.register("staged")
class Staged(MuRule):
    """SFT-then-RL: mu = 1 for sft_steps steps, then 0."""

    def mu(self, step: int) -> float:
        return 1.0 if step < self.spec.sft_steps else 0.0

    def max_mu(self) -> float:
        return float(self.spec.sft_steps > 0)


@MU_SCHEDULES.register("sft_only")
class SFTOnly(MuRule):
    """mu = 1: demonstrations only."""

    def mu(self, step: int) -> float:
        return 1.0


@MU_SCHEDULES.register("rl_only")
class RLOnly(MuRule):
    """mu = 0: rollouts only."""

    def mu(self, step: int) -> float:
        return 0.0

    def max_mu(self) -> float:
        return 0.0


@MU_SCHEDULES.register("adaptive")
class Adaptive(MuRule):
    """SFT where RL is blind (smoothed blindness), raised further on disruption (ours)."""

    by_need = True

    def __init__(self, spec: MuSchedule) -> None:
        super().__init__(spec)
        self.baseline: float | None = None  # held-out score before training
        self.under: float = 0.0  # 1 while the last held-out score is below blind_below
        self.need: float = spec.initial
        self.disruption: float = spec.initial

    def mu(self, step: int) -> float:
        return max(self.need, self.disruption)

    def max_mu(self) -> float:
        return max(self.spec.initial, self.spec.peak)

    def observe(self, score: float) -> None:
        s = self.spec
        self.under = float(score < s.blind_below)
        if self.baseline is None:  # the first evaluation is the pre-training baseline
            self.baseline = score
            return
        if score < self.baseline - s.margin:
            self.disruption = min(s.peak, self.disruption + s.up)
        else:
            self.disruption = max(s.valley, self.disruption * s.decay)

    def observe_step(self, blind: float | None) -> None:
        s = self.spec
        x = self.under if blind is None else max(blind, self.under)
        self.need += s.smoothing * (s.valley + (s.peak - s.valley) * x - self.need)

    def state_dict(self) -> dict:
        return {"baseline": self.baseline, "under": self.under, "need": self.need, "disruption": self.disruption}

    def load_state_dict(self, state: dict) -> None:
        self.baseline = state["baseline"]
        self.under, self.need, self.disruption = state["under"], state["need"], state["disruption"]


@MU_SCHEDULES.register("gate")
class Gate(MuRule):
    """HPT: per prompt, SFT when the group's success rate <= gamma, else RL (see row_weights)."""

    per_prompt = True

    def mu(self, step: int) -> float:
        return 0.0


# ---------------------------------------------------------------------------------------------
# From mu to rows
# ---------------------------------------------------------------------------------------------


class Credit:
    """Whole items per domain, step after step, so that the mixture is met over time (deficit counters).

    A step's share of a domain, ``weight * total``, is rarely whole: rounded afresh each step, 8
    prompts over 6 equal domains would give the same two domains 2 and the rest 1 forever, and a
    2% floor (0.16 of a prompt) would round to 0 forever. Instead each domain keeps ``credit[d]``,
    its shares so far minus the items it got. Each step, over the domains with weight > 0,
    ``want[d] = credit[d] + weight[d] * total``; each gets ``floor(want[d])`` (at least 0), the
    items left go one each to the largest ``want[d] - given[d]`` (ties: ``names`` order), and
    ``credit[d] = want[d] - given[d]``. The step's total is exact and each credit stays within an
    item of 0 (a little more just after domains drop out and return), so over any window a
    domain's count differs from the sum of its per-step shares by less than about 2, for fixed and
    time-varying mixtures alike (a 2% domain of 8 prompts gets its first within 7 steps).
    Deterministic: the credit is the whole state (``state_dict``), so a resumed run allocates as an
    uninterrupted one.

    A domain with weight 0 gets nothing and its credit is left as it was: its share that step is 0,
    so no debt or credit builds up while it is out, and it returns with the remainder (about an
    item at most) it left with, which cannot make a burst. Resetting that remainder instead would
    forgive it, and keeping the total exact would push it onto the other domains; every change of
    mixture would then shift counts by up to an item, a drift that grows with the changes.
    Kept, every domain's count is always the sum of its shares minus its credit.
    """

    def __init__(self, credit: Mapping[str, float] | None = None) -> None:
        self.credit: dict[str, float] = dict(credit or {})

    def allocate(self, mixture: Mapping[str, float], total: int, names: Sequence[str] | None = None) -> dict[str, int]:
        """Split ``total`` items over ``names`` (default: the mixture's) by weight (normalised over
        the positive ones) and update the credit; every name is in the answer, 0 if its weight is 0."""
        names = list(names or mixture)
        weight = {n: mixture.get(n, 0.0) for n in names if mixture.get(n, 0.0) > 0}
        if not weight:
            return dict.fromkeys(names, 0)
        norm = sum(weight.values())
        want = {n: self.credit.get(n, 0.0) + w / norm * total for n, w in weight.items()}
        given = {n: max(0, math.floor(v)) for n, v in want.items()}
        order = {n: i for i, n in enumerate(names)}

        def owed(n: str) -> float:  # rounded, so that equal shares tie (then names order decides)
            return round(want[n] - given[n], 9)

        while (left := total - sum(given.values())) > 0:  # one pass, unless credits are far below 0
            for n in sorted(weight, key=lambda n: (-owed(n), order[n]))[:left]:
                given[n] += 1
        for _ in range(-left):  # the floors overshoot (credits below 0 elsewhere): the least owed give back
            n = min((n for n in weight if given[n] > 0), key=lambda n: (owed(n), -order[n]))
            given[n] -= 1
        self.credit.update({n: want[n] - given[n] for n in weight})
        return {n: given.get(n, 0) for n in names}

    def state_dict(self) -> dict[str, float]:
        return dict(self.credit)

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.credit = {n: float(c) for n, c in state.items()}


def allocate(mixture: Mapping[str, float], total: int, names: Sequence[str] | None = None) -> dict[str, int]:
    """One step's split of ``total`` items by weight, with no credit carried in or out: largest
    remainder, deterministic. Across steps use a ``Credit``, which meets the mixture over time."""
    return Credit().allocate(mixture, total, names)


def allocate_rows(
    mixture: Mapping[str, float],
    mu: Mapping[str, float],
    gate: Mapping[str, float],
    prompts_per_step: int,
    expert_ratio: float,
    by_need: Collection[str] = (),
    credit: tuple[Credit, Credit] | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """(rollout prompts, demonstrations) per domain for one step.

    Only domains the mixture trains (weight > 0) get rows. Rollouts go to those with an RL part
    (mu < 1, or gated), by mixture weight. Demonstrations, ``ceil(expert_ratio *
    prompts_per_step)`` of them, go to those with mu > 0 (gated domains take theirs from their
    failed prompts instead), in proportion to the mixture weight, or, for ``by_need`` domains, to
    mu itself: a domain RL cannot learn gets its demonstrations however small its RL share.
    ``credit``: the (prompts, demonstrations) ``Credit`` carried from step to step (the Planner's),
    updated here; without it each step is rounded on its own (``allocate``).
    """
    prompt_credit, demo_credit = credit if credit is not None else (Credit(), Credit())
    rl = {d: w for d, w in mixture.items() if w > 0 and (mu[d] < 1 or d in gate)}
    sft = {d: mu[d] if d in by_need else w for d, w in mixture.items() if w > 0 and mu[d] > 0 and d not in gate}
    prompts = prompt_credit.allocate(normalise(rl), prompts_per_step)
    demos = demo_credit.allocate(normalise(sft), math.ceil(expert_ratio * prompts_per_step))
    return prompts, demos


@dataclass(frozen=True)
class RowWeights:
    """rl[i]: weight of each rollout row of group i; gated[i]: weight of group i's demonstration
    when the gate switched its prompt to SFT (0 otherwise); sft[j]: weight of the j-th drawn
    demonstration. A weight of 0 leaves the row out of the loss."""

    rl: list[float]
    gated: list[float]
    sft: list[float]


def gate_switches(plan: StepPlan, groups: Sequence[GroupOutcome], sft: SFTConfig, group_size: int) -> list[bool]:
    """HPT's switch, per group: True when the prompt's rollouts succeed (total reward >=
    ``gate_threshold``) at a rate <= the domain's gamma and the prompt has a demonstration."""
    out = []
    for g in groups:
        switch = False
        if g.domain in plan.gate:
            rollouts = g.rewards[:group_size]
            success = sum(r >= sft.gate_threshold for r in rollouts) / len(rollouts)
            switch = success <= plan.gate[g.domain] and g.has_expert
        out.append(switch)
    return out


def gate_counts(plan: StepPlan, groups: Sequence[GroupOutcome], switched: Sequence[bool]) -> list[float]:
    """This process's (switched, prompts) per gate domain, flat in ``plan.gate`` order (the trainer
    sums them over processes for ``gate_mu``)."""
    counts = []
    for d in plan.gate:
        counts += [
            float(sum(s for g, s in zip(groups, switched) if g.domain == d)),
            float(sum(g.domain == d for g in groups)),
        ]
    return counts


def gate_mu(plan: StepPlan, counts: Sequence[float]) -> dict[str, float]:
    """The gate's mu per gate domain: ``switched / prompts`` from ``gate_counts`` summed over every
    process, so the fraction is the whole step's."""
    pairs = dict(zip(plan.gate, zip(counts[::2], counts[1::2])))
    return {d: switched / prompts if prompts else 0.0 for d, (switched, prompts) in pairs.items()}


def row_weights(
    plan: StepPlan,
    groups: Sequence[GroupOutcome],
    switched: Sequence[bool],
    demo_domains: Sequence[str],
    sft: SFTConfig,
    drop_zero_variance: bool = False,
) -> RowWeights:
    """Turn a step's plan and its scored rollout groups into the weight of every row.

    - A rollout row weighs ``1 - mu_d``; a drawn demonstration ``mu_d``.
    - Gate domains (HPT): ``plan.mu[d]`` is the fraction ``f_d`` of the domain's prompts switched
      to SFT (``gate_mu``; the trainer puts it in the plan it executes). A switched prompt's
      demonstration weighs ``f_d`` and its rollouts 0; any other prompt's rollouts weigh ``1 - f_d``.
      The RL and SFT parts are each a mean over their own tokens, so each part carries its share
      of prompts: every prompt counts one unit, as RL or as SFT, over one denominator (the
      domain's prompts).
    - ``drop_zero_variance`` (DAPO dynamic sampling): a group whose rewards are all equal weighs 0.
    - Per-layer mu (``layer_mu`` not uniform): every row in the loss weighs 1; mu acts on the
      gradients layer by layer instead (``layer_factors``).
    """
    rl, gated = [], []
    for g, switch in zip(groups, switched):
        mu = plan.mu[g.domain]
        weight = 0.0 if switch or (drop_zero_variance and g.zero_variance) else 1.0 - mu
        rl.append(weight)
        gated.append(mu if switch else 0.0)
    demo = [plan.mu[d] for d in demo_domains]
    if sft.layer_mu != "uniform":
        rl, gated, demo = ([float(w > 0) for w in ws] for ws in (rl, gated, demo))
    return RowWeights(rl, gated, demo)


def lr_factor(mu: float, sft: SFTConfig, learning_rate: float) -> float:
    """Multiplier of the scheduled learning rate for a step with mixture-weighted ``mu``:
    ``(1 - mu) + mu * sft.learning_rate / learning_rate`` (1 when ``sft.learning_rate`` is unset),
    so a pure-RL step runs the RL rate, a pure-SFT step the SFT rate, a blend the blend."""
    if sft.learning_rate is None:
        return 1.0
    return (1 - mu) + mu * sft.learning_rate / learning_rate


def layer_factors(depth: Sequence[float], mu: float, mode: str) -> tuple[list[float], list[float]]:
    """Per-parameter gradient factors (RL part, SFT part) for per-layer mu, from each parameter's
    depth fraction f in [0, 1] (``mode`` increasing; decreasing uses ``1 - f``).

    A ramp around mu that keeps its mean: ``mu_l = mu + k * (f - f_bar)`` with ``f_bar`` the mean
    depth over ``depth`` and the slope ``k = min(2 mu, mu / (f_bar - f_min), (1 - mu) / (f_max -
    f_bar))``, the steepest that keeps every ``mu_l`` in [0, 1] (``2 mu``, i.e. ``mu_l = 2 mu f``
    on evenly spread depths, while mu <= 0.5). So the average mu over the parameter tensors is always the
    schedule's mu; above mu = 0.5 the ramp flattens instead of clipping (CHORD's peak 0.9 gives
    0.8 to 1.0). The factors are ``1 - mu_l`` and ``mu_l``."""
    shape = list(depth) if mode == "increasing" else [1 - f for f in depth]
    if not shape:
        return [], []
    mean, low, high = sum(shape) / len(shape), min(shape), max(shape)
    slopes = [2 * mu]
    if mean > low:
        slopes.append(mu / (mean - low))
    if high > mean:
        slopes.append((1 - mu) / (high - mean))
    k = max(0.0, min(slopes))
    mu_l = [min(max(mu + k * (f - mean), 0.0), 1.0) for f in shape]  # the clip only absorbs rounding
    return [1 - m for m in mu_l], mu_l
