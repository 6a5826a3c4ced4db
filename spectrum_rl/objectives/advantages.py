"""Group-relative advantages (GRPO: Shao et al. 2024, arXiv:2402.03300).

For a group of G completions of one prompt with rewards r:
    A_i = (r_i - mean(r)) / (std(r) + eps)
``training.scale_rewards`` names the registered estimator that scales the centred rewards:
``group`` (std per prompt, GRPO), ``batch`` (one std over the whole batch, as TRL's
``scale_rewards="batch"``), or ``none`` (no division: Dr. GRPO, arXiv:2503.20783).
std is the unbiased estimate and eps = 1e-4, as in TRL. Samples marked invalid (a reward
component's ``on_error: skip``) are left out of mean/std and get advantage 0.
A new estimator: one function with ``@ADVANTAGES.register("name")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from spectrum_rl.registry import Registry

EPS = 1e-4

Scale = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(centred [N, G], group variance [N, 1], rewards [N, G], valid [N, G]) -> advantages [N, G]."""

ADVANTAGES: Registry[Scale] = Registry("advantage estimator")
"""``training.scale_rewards`` name -> how centred rewards become advantages."""


@ADVANTAGES.register("group")
def _per_group(centered: torch.Tensor, var: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Divided by the group's std (GRPO)."""
    return centered / (var.sqrt() + EPS)


@ADVANTAGES.register("batch")
def _per_batch(centered: torch.Tensor, var: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Divided by one std over the whole batch (TRL's scale_rewards: batch)."""
    flat = rewards[valid]
    std = flat.std() if flat.numel() > 1 else flat.new_tensor(0.0)
    return centered / (std + EPS)


@ADVANTAGES.register("none")
def _unscaled(centered: torch.Tensor, var: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Not divided (Dr. GRPO)."""
    return centered


def group_advantages(
    rewards: torch.Tensor, valid: torch.Tensor | None = None, scale: str = "group"
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
    return ADVANTAGES.get(scale, field="training.scale_rewards")(centered, var, rewards, valid), zero_variance
