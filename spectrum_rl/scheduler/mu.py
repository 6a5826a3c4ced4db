"""mu schedules: how much SFT a domain gets over training, in ``L = (1 - mu) L_RL + mu L_SFT``.

``training.sft.mu: {type: NAME, ...its parameters}`` (or a bare ``NAME``; per domain in
``training.sft.per_domain``). Each schedule is one class registered in ``MU_SCHEDULES`` with its
parameters beside it (its ``Params``):

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
  Its demonstrations are allocated by mu, not by the RL mixture (scheduler/blend.py).
- gate (HPT, Lv et al. 2025, arXiv:2509.04419): per prompt, SFT on the prompt's expert
  demonstration when the share of its rollouts that succeed (total reward >= ``threshold``) is
  <= ``gamma``, else RL on its rollouts. The switch happens once the rollouts are scored
  (scheduler/blend.py ``weigh``); the step's mu for the domain is then the fraction of its
  prompts switched.

A new schedule is one class here (or in your own module): subclass ``MuSchedule``, give it a
``Params`` model, register it with ``@MU_SCHEDULES.register("name")``.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field, model_validator

from spectrum_rl.registry import Registry
from spectrum_rl.schema import StrictModel


class MuParams(StrictModel):
    """What every mu schedule's parameters hold: its registered name."""

    type: str = Field(..., description="The schedule (a name registered in MU_SCHEDULES).")


class MuSchedule:
    """One domain's mu over training, from its ``Params`` (a fresh instance per domain: closed-loop
    schedules keep per-domain state)."""

    Params: ClassVar[type[MuParams]] = MuParams
    per_prompt: ClassVar[bool] = False  # True: mu is switched per prompt once rollouts are scored (the gate)
    by_need: ClassVar[bool] = False  # True: demonstrations go to the domain by its mu, not its RL share

    def __init__(self, params: MuParams) -> None:
        self.params = params

    def mu(self, step: int) -> float:
        """mu at ``step``."""
        raise NotImplementedError

    def max_mu(self) -> float:
        """The largest mu this schedule can give: 0 means the domain never trains on demonstrations."""
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


MU_SCHEDULES: Registry[type[MuSchedule]] = Registry("mu schedule")
"""``training.sft.mu.type`` -> schedule class."""


def mu_schedule(params: MuParams) -> MuSchedule:
    """A fresh schedule for ``params`` (one per domain)."""
    return MU_SCHEDULES.get(params.type, field="training.sft.mu.type")(params)


def chord_mu(step: int, peak: float, valley: float, warmup: int, decay_steps: int) -> float:
    """CHORD-mu (arXiv:2508.11408): linear warmup to ``peak``, cosine decay to ``valley``."""
    if step < warmup:
        return step / warmup * peak
    if step < warmup + decay_steps:
        return valley + (peak - valley) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / decay_steps))
    return valley


class ConstantParams(MuParams):
    """`constant`: one mu all along."""

    value: float = Field(0.1, ge=0, le=1, description="mu.")


@MU_SCHEDULES.register("constant")
class Constant(MuSchedule):
    """mu = value."""

    Params = ConstantParams

    def mu(self, step: int) -> float:
        return self.params.value

    def max_mu(self) -> float:
        return self.params.value


class LinearParams(MuParams):
    """`linear`: a straight ramp."""

    start: float = Field(1.0, ge=0, le=1, description="mu at step 0.")
    end: float = Field(0.0, ge=0, le=1, description="mu at the end of the ramp and after.")
    steps: int = Field(100, ge=1, description="Length of the ramp in steps.")


@MU_SCHEDULES.register("linear")
class Linear(MuSchedule):
    """From start to end over steps, then end."""

    Params = LinearParams

    def mu(self, step: int) -> float:
        p = self.params
        return p.start + (p.end - p.start) * min(step / p.steps, 1.0)

    def max_mu(self) -> float:
        return max(self.params.start, self.params.end)


class PeakValley(MuParams):
    """A highest and a lowest mu."""

    peak: float = Field(0.9, ge=0, le=1, description="Highest mu.")
    valley: float = Field(0.05, ge=0, le=1, description="Lowest mu.")

    @model_validator(mode="after")
    def _ordered(self) -> PeakValley:
        if self.valley > self.peak:
            raise ValueError(f"valley ({self.valley}) must be <= peak ({self.peak})")
        return self


class CosineParams(PeakValley):
    """`cosine`: CHORD-mu's warmup and cosine decay."""

    warmup: int = Field(0, ge=0, description="Warmup steps W (mu rises linearly to `peak`).")
    decay_steps: int = Field(200, ge=1, description="Decay steps D (cosine from `peak` to `valley`).")


@MU_SCHEDULES.register("cosine")
class Cosine(MuSchedule):
    """CHORD-mu: warmup to peak, cosine decay to valley."""

    Params = CosineParams

    def mu(self, step: int) -> float:
        p = self.params
        return chord_mu(step, p.peak, p.valley, p.warmup, p.decay_steps)

    def max_mu(self) -> float:
        return self.params.peak


class StagedParams(MuParams):
    """`staged`: SFT first, RL after."""

    sft_steps: int = Field(50, ge=0, description="SFT steps (mu = 1) before RL (mu = 0).")


@MU_SCHEDULES.register("staged")
class Staged(MuSchedule):
    """SFT-then-RL: mu = 1 for sft_steps steps, then 0."""

    Params = StagedParams

    def mu(self, step: int) -> float:
        return 1.0 if step < self.params.sft_steps else 0.0

    def max_mu(self) -> float:
        return float(self.params.sft_steps > 0)


@MU_SCHEDULES.register("sft_only")
class SFTOnly(MuSchedule):
    """mu = 1: demonstrations only."""

    def mu(self, step: int) -> float:
        return 1.0


@MU_SCHEDULES.register("rl_only")
class RLOnly(MuSchedule):
    """mu = 0: rollouts only."""

    def mu(self, step: int) -> float:
        return 0.0

    def max_mu(self) -> float:
        return 0.0


class AdaptiveMuParams(PeakValley):
    """`adaptive`: mu from blindness and disruption (module docstring)."""

    margin: float = Field(0.02, ge=0, description="Held-out score drop below the start that counts as disruption.")
    up: float = Field(0.2, gt=0, le=1, description="mu increase per disrupted evaluation.")
    decay: float = Field(0.7, gt=0, lt=1, description="mu multiplier per evaluation without disruption.")
    initial: float = Field(0.0, ge=0, le=1, description="mu before the first feedback.")
    blind_below: float = Field(
        0.05, ge=0, le=1, description="A held-out score below this counts as blind to RL (mu rises toward `peak`)."
    )
    smoothing: float = Field(0.5, gt=0, le=1, description="Step size of mu toward its blindness target, per step.")


@MU_SCHEDULES.register("adaptive")
class AdaptiveMu(MuSchedule):
    """SFT where RL is blind (smoothed blindness), raised further on disruption (ours)."""

    Params = AdaptiveMuParams
    by_need = True

    def __init__(self, params: AdaptiveMuParams) -> None:
        super().__init__(params)
        self.baseline: float | None = None  # held-out score before training
        self.under: float = 0.0  # 1 while the last held-out score is below blind_below
        self.need: float = params.initial
        self.disruption: float = params.initial

    def mu(self, step: int) -> float:
        return max(self.need, self.disruption)

    def max_mu(self) -> float:
        return max(self.params.initial, self.params.peak)

    def observe(self, score: float) -> None:
        p = self.params
        self.under = float(score < p.blind_below)
        if self.baseline is None:  # the first evaluation is the pre-training baseline
            self.baseline = score
            return
        if score < self.baseline - p.margin:
            self.disruption = min(p.peak, self.disruption + p.up)
        else:
            self.disruption = max(p.valley, self.disruption * p.decay)

    def observe_step(self, blind: float | None) -> None:
        p = self.params
        x = self.under if blind is None else max(blind, self.under)
        self.need += p.smoothing * (p.valley + (p.peak - p.valley) * x - self.need)

    def state_dict(self) -> dict:
        return {"baseline": self.baseline, "under": self.under, "need": self.need, "disruption": self.disruption}

    def load_state_dict(self, state: dict) -> None:
        self.baseline = state["baseline"]
        self.under, self.need, self.disruption = state["under"], state["need"], state["disruption"]


class GateParams(MuParams):
    """`gate`: HPT's per-prompt switch."""

    gamma: float = Field(0.0, ge=0, lt=1, description="Success rate at or below which a prompt gets SFT.")
    threshold: float = Field(1.0, description="A rollout succeeds when its total reward is at least this.")


@MU_SCHEDULES.register("gate")
class Gate(MuSchedule):
    """HPT: per prompt, SFT when the group's success rate <= gamma, else RL (the switch: scheduler/blend.py weigh)."""

    Params = GateParams
    per_prompt = True

    def mu(self, step: int) -> float:
        return 0.0
