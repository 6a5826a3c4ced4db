"""Policies whose mixture is set by hand: fixed weights, an explicit order of phases, and the two
oracles that know which slices of a world are worth training.

- joint: fixed weights (uniform by default): plain multi-domain RL.
- sequential: an explicit ``order``, ``phase_steps`` per phase, ``replay`` share of earlier domains.
- oracle_static: hand-set weights over domains (``weights``) and levels (``level_weights``),
  e.g. zero on the slices one knows are saturated or unsolvable.
- oracle_ladder: hand-set domain weights; each range climbs from its easiest to its hardest level
  (of ``level_weights``' levels when given) in equal shares of the run, ``replay`` on the levels
  below.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from spectrum_rl.scheduler.policies.base import (
    POLICIES,
    Decision,
    Policy,
    PolicyParams,
    View,
    phase_mixture,
)
from spectrum_rl.scheduler.shares import normalise


class Weights(PolicyParams):
    """Hand-set weights over domains."""

    weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="Mixture weight per domain name (normalised); null = uniform."
    )

    @field_validator("weights")
    @classmethod
    def _some_positive(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None and not any(w > 0 for w in v.values()):
            raise ValueError("at least one weight must be > 0")
        return v


def hand_set(weights: dict[str, float] | None, names: list[str]) -> dict[str, float]:
    """The normalised mixture of ``weights`` over ``names`` (uniform when None)."""
    weights = weights or dict.fromkeys(names, 1.0)
    return normalise({n: float(weights.get(n, 0.0)) for n in names})


@POLICIES.register("joint")
class Joint(Policy):
    """Fixed weights (`weights`; uniform when null)."""

    Params = Weights

    def decide(self, step: int, view: View) -> Decision:
        return Decision(hand_set(self.params.weights, self.names), "joint: fixed weights")


class SequentialParams(PolicyParams):
    """Domains one after another, with replay of the earlier ones."""

    order: list[str] | None = Field(None, description="The domain order (null: the config's order).")
    phase_steps: int = Field(50, ge=1, description="Steps per phase.")
    replay: float = Field(0.1, ge=0, lt=1, description="Mixture share of the earlier domains.")


@POLICIES.register("sequential")
class Sequential(Policy):
    """An explicit `order`, `phase_steps` per phase, a `replay` share for earlier domains."""

    Params = SequentialParams

    def decide(self, step: int, view: View) -> Decision:
        p = self.params
        order = list(p.order or self.names)
        phase = min(step // p.phase_steps, len(order) - 1)
        reason = f"sequential: phase {phase + 1}/{len(order)} ({order[phase]})"
        return Decision({**{n: 0.0 for n in self.names}, **phase_mixture(order, phase, p.replay)}, reason)


class LevelWeights(Weights):
    """Hand-set weights over domains and over the difficulty levels of each range."""

    level_weights: dict[str, dict[int, Annotated[float, Field(ge=0)]]] | None = Field(
        None,
        description="Per domain with a range knob, weight per difficulty level (levels not named get 0); null = "
        "every level of the range.",
    )


def level_shares(params: LevelWeights, view: View, domain: str) -> dict[int, float]:
    """The hand-set level weights of ``domain`` (``level_weights``), else every level of its range."""
    lo, hi = view.ladders[domain]
    given = (params.level_weights or {}).get(domain)
    return {lvl: w for lvl, w in given.items() if w > 0} if given else dict.fromkeys(range(lo, hi + 1), 1.0)


@POLICIES.register("oracle_static")
class OracleStatic(Policy):
    """Hand-set weights over domains (``weights``) and difficulty levels (``level_weights``)."""

    Params = LevelWeights

    def decide(self, step: int, view: View) -> Decision:
        levels = {d: normalise(level_shares(self.params, view, d)) for d in view.ladders}
        return Decision(hand_set(self.params.weights, self.names), "oracle_static: hand-set weights", {}, levels)


class LadderParams(LevelWeights):
    """Hand-set weights; each range climbed level by level."""

    replay: float = Field(0.1, ge=0, lt=1, description="Share of a domain's prompts on the levels below the current.")


@POLICIES.register("oracle_ladder")
class OracleLadder(Policy):
    """Hand-set domain weights; every range climbs its levels in equal shares of the run, with
    ``replay`` spread over the levels below the current one."""

    Params = LadderParams

    def decide(self, step: int, view: View) -> Decision:
        levels, at = {}, []
        for d in view.ladders:
            ladder = sorted(level_shares(self.params, view, d))
            k = min(len(ladder) - 1, int(view.spent(step) * len(ladder)))
            shares = phase_mixture([str(lvl) for lvl in ladder], k, self.params.replay)
            levels[d] = {int(lvl): w for lvl, w in shares.items() if w > 0}
            at.append(f"{d}@{ladder[k]}")
        mixture = hand_set(self.params.weights, self.names)
        return Decision(mixture, "oracle_ladder: " + (", ".join(at) or "no range"), {}, levels)
