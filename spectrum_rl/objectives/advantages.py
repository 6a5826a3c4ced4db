"""Group-relative advantages (GRPO: Shao et al. 2024, arXiv:2402.03300).

For a group of G completions of one prompt with rewards r:
    A_i = (r_i - mean(r)) / (std(r) + eps)
``training.advantage`` (``{type: NAME}`` or a bare NAME) names the registered estimator that
scales the centred rewards:
``group`` (std per prompt, GRPO), ``batch`` (one std over the whole batch, as TRL's
``scale_rewards="batch"``), or ``none`` (no division: Dr. GRPO, arXiv:2503.20783).
std is the unbiased estimate and eps = 1e-4, as in TRL. Samples marked invalid (a reward
component's ``on_error: skip``) are left out of mean/std and get advantage 0.
A new estimator: one ``AdvantageEstimator`` subclass with ``@ADVANTAGES.register("name")`` (and a
``Params`` model when it has parameters).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from spectrum_rl.registry import Registry
from spectrum_rl.schema import StrictModel

EPS = 1e-4


class AdvantageParams(StrictModel):
    """What every advantage estimator's parameters hold: its registered name."""

    type: str = Field(..., description="The estimator (a name registered in ADVANTAGES).")


class AdvantageEstimator:
    """How centred rewards become advantages: ``scale(centred [N, G], group variance [N, 1],
    rewards [N, G], valid [N, G]) -> advantages [N, G]``; ``Params``, its parameters."""

    Params: ClassVar[type[AdvantageParams]] = AdvantageParams

    def __init__(self, params: AdvantageParams) -> None:
        self.params = params

    def scale(self, centered: Tensor, var: Tensor, rewards: Tensor, valid: Tensor) -> Tensor:
        raise NotImplementedError


ADVANTAGES: Registry[type[AdvantageEstimator]] = Registry("advantage estimator")
"""``training.advantage.type`` -> how centred rewards become advantages."""


@ADVANTAGES.register("group")
class GroupStd(AdvantageEstimator):
    """Divided by the group's std (GRPO)."""

    def scale(self, centered: Tensor, var: Tensor, rewards: Tensor, valid: Tensor) -> Tensor:
        return centered / (var.sqrt() + EPS)


@ADVANTAGES.register("batch")
class BatchStd(AdvantageEstimator):
    """Divided by one std over the whole batch (TRL's scale_rewards: batch)."""

    def scale(self, centered: Tensor, var: Tensor, rewards: Tensor, valid: Tensor) -> Tensor:
        flat = rewards[valid]
        std = flat.std() if flat.numel() > 1 else flat.new_tensor(0.0)
        return centered / (std + EPS)


@ADVANTAGES.register("none")
class Unscaled(AdvantageEstimator):
    """Not divided (Dr. GRPO)."""

    def scale(self, centered: Tensor, var: Tensor, rewards: Tensor, valid: Tensor) -> Tensor:
        return centered


def group_advantages(
    rewards: torch.Tensor, valid: torch.Tensor | None = None, estimator: str | AdvantageParams = "group"
) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards, valid: [N, G] -> (advantages [N, G], zero_variance [N] bool).

    ``zero_variance`` marks groups whose valid rewards are all equal (no learning signal;
    DAPO's dynamic sampling drops them).
    """
    valid = torch.ones_like(rewards, dtype=torch.bool) if valid is None else valid
    w = valid.to(rewards.dtype)
    n = w.sum(1, keepdim=True)  # [N, 1]
    mean = (rewards * w).sum(1, keepdim=True) / n.clamp(min=1)  # [N, 1]
    centered = (rewards - mean) * w  # [N, G]
    var = (centered**2).sum(1, keepdim=True) / (n - 1).clamp(min=1)  # [N, 1]
    zero_variance = (var.squeeze(1) <= 0) | (n.squeeze(1) < 2)
    params = AdvantageParams(type=estimator) if isinstance(estimator, str) else estimator
    scaler = ADVANTAGES.get(params.type, field="training.advantage.type")
    return scaler(scaler.Params.model_validate(params.model_dump())).scale(centered, var, rewards, valid), zero_variance
