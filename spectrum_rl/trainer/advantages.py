"""Group-relative advantages (GRPO: Shao et al. 2024, arXiv:2402.03300).

For a group of G completions of one prompt with rewards r:
    A_i = (r_i - mean(r)) / (std(r) + eps)
``scale`` picks the std: ``group`` (per prompt, GRPO), ``batch`` (one std over the whole batch,
as TRL's ``scale_rewards="batch"``), or ``none`` (no division: Dr. GRPO, arXiv:2503.20783).
std is the unbiased estimate and eps = 1e-4, as in TRL. Samples marked invalid (a reward
component's ``on_error: skip``) are left out of mean/std and get advantage 0.
"""

from __future__ import annotations

from typing import Literal

import torch

EPS = 1e-4


def group_advantages(
    rewards: torch.Tensor,
    valid: torch.Tensor | None = None,
    scale: Literal["group", "batch", "none"] = "group",
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
    if scale == "group":
        adv = centered / (var.sqrt() + EPS)
    elif scale == "batch":
        flat = rewards[valid]
        std = flat.std() if flat.numel() > 1 else flat.new_tensor(0.0)
        adv = centered / (std + EPS)
    elif scale == "none":
        adv = centered
    else:
        raise ValueError(f"unknown scale {scale!r}")
    return adv, zero_variance
