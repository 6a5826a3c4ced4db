"""The spectrum loss: ``L = (1 - mu) * L_RL + mu * L_SFT``, each part a mean over its own tokens.

RL part (PPO-clip with group-relative advantages; GRPO, arXiv:2402.03300; DAPO clip-higher,
arXiv:2503.14476), per completion token t of sequence i with advantage A_i:
    rho_t = exp(logp_t - logp_old_t)
    l_t   = -min(rho_t * A_i, clip(rho_t, 1 - eps_low, 1 + eps_high) * A_i) + beta * kl_t
    kl_t  (k3) = exp(ref_t - logp_t) - (ref_t - logp_t) - 1      (k1: logp_t - ref_t)
Aggregation over completion tokens (mask m), matching TRL's GRPOTrainer loss types:
    token_mean              (dapo)    = sum(l*m) / sum(m)                   over the whole batch
    seq_mean_token_mean     (grpo)    = mean_i( sum_t(l*m) / sum_t(m) )
    seq_mean_token_sum_norm (dr_grpo) = sum(l*m) / (n_seq * max_new_tokens)
The per-sequence weight (1 - mu_d) of the sequence's domain multiplies l before aggregation, so
a batch that mixes domains with different mu is still one loss.

SFT part: mean NLL over expert tokens, each sequence weighted by mu_d; CHORD-phi
(arXiv:2508.11408) further weights each token by phi = p (1 - p), p = exp(logp) detached.

LUFFY (arXiv:2504.14945): an expert completion in the group gets the regularised importance
weight f = pi / (pi + gamma) instead of the clipped ratio: l_t = -f_t * A_i, no clipping.

Denominators are passed in so that micro-batches of one step add up to the full-batch loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from spectrum_rl.models import cache_kwarg, position_ids
from spectrum_rl.trainer.batch import MicroBatch

Aggregation = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]
TRL_LOSS_TYPE = {"token_mean": "dapo", "seq_mean_token_mean": "grpo", "seq_mean_token_sum_norm": "dr_grpo"}


def completion_logits(model, mb: MicroBatch, share_prefix: bool = True) -> torch.Tensor:
    """Logits [B, T, V] that predict each completion token of ``mb``.

    Plain: one forward over ``[prompt | completion]`` ([B, P + T]). Shared prefix (when rows share
    prompts, U < B): the U distinct prompts go through the model once ([U, P]), their KV cache is
    gathered to the B rows, and the completions ([B, T - 1]) attend to it. The result is the same
    (the same attention over the same keys) with U * P instead of B * P prompt tokens: with group
    size G, (G - 1) / G of the prompt compute is saved. Gradients flow through the cache into the
    prompt forward. Needs a KV cache (off with gradient checkpointing). Position ids come from the
    masks, so left padding does not shift positions.
    """
    n_prompts, n_rows, n_completion = mb.prompt_ids.shape[0], mb.group.shape[0], mb.n_completion
    if not share_prefix or n_prompts == n_rows:
        mask = mb.attention_mask
        logits = model(
            input_ids=mb.input_ids,
            attention_mask=mask,
            position_ids=position_ids(mask),
            logits_to_keep=n_completion + 1,
        ).logits  # [B, T+1, V]
        return logits[:, :-1]  # predicts tokens P..P+T-1
    cache_kw = cache_kwarg(model)
    positions = position_ids(mb.prompt_mask)  # [U, P]
    out = model(
        input_ids=mb.prompt_ids, attention_mask=mb.prompt_mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    first = out.logits[mb.group]  # [B, 1, V] predicts token 0
    if n_completion == 1:
        return first
    cache = getattr(out, cache_kw)
    cache.batch_select_indices(mb.group)  # [U, ...] -> [B, ...]
    attention_mask = torch.cat([mb.prompt_mask[mb.group], mb.completion_mask[:, :-1]], 1)  # [B, P + T - 1]
    steps = torch.arange(1, n_completion, device=positions.device)
    rest = model(
        input_ids=mb.completion_ids[:, :-1],
        attention_mask=attention_mask,
        position_ids=positions[mb.group, -1:] + steps,
        use_cache=True,
        **{cache_kw: cache},
    ).logits
    return torch.cat([first, rest], 1)  # [B, T, V]


def token_logprobs(model, mb: MicroBatch, temperature: float = 1.0, share_prefix: bool = True) -> torch.Tensor:
    """Log-probs [B, T] of each completion token of ``mb`` under ``softmax(logits / temperature)``.
    (The rollout entropy is measured while sampling, in ``rollout.sample``.)"""
    logits = completion_logits(model, mb, share_prefix).float() / temperature  # [B, T, V]
    logz = torch.logsumexp(logits, dim=-1)  # [B, T]
    return logits.gather(-1, mb.completion_ids.unsqueeze(-1)).squeeze(-1) - logz  # [B, T]


@dataclass
class RLTerms:
    per_token: torch.Tensor  # [B, T] loss per token (before weights and mask)
    clipped_low: torch.Tensor  # [B, T] bool: ratio < 1 - eps_low with A < 0
    clipped_high: torch.Tensor  # [B, T] bool: ratio > 1 + eps_high with A > 0
    kl: torch.Tensor | None  # [B, T]


def rl_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    kl_estimator: Literal["k1", "k3"] = "k3",
    luffy: torch.Tensor | None = None,
    luffy_gamma: float = 0.1,
) -> RLTerms:
    """Per-token clipped surrogate (+ beta * KL). advantages: [B]; luffy: [B] bool marks expert rows."""
    adv = advantages.unsqueeze(1)  # [B, 1]
    ratio = torch.exp(logp - old_logp)  # [B, T]
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    if luffy is not None and luffy.any():
        pi = logp.exp()
        per_token = torch.where(luffy.unsqueeze(1), -(pi / (pi + luffy_gamma)) * adv, per_token)
    kl = None
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs reference log-probs")
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1 if kl_estimator == "k3" else -delta
        per_token = per_token + beta * kl
    return RLTerms(per_token, (ratio < 1 - eps_low) & (adv < 0), (ratio > 1 + eps_high) & (adv > 0), kl)


def rl_denominator(mask: torch.Tensor, aggregation: Aggregation, max_new_tokens: int) -> float:
    """The normaliser of the whole step's RL batch (mask [B, T]) for ``aggregate``."""
    if aggregation == "token_mean":
        return float(mask.sum().clamp(min=1))
    if aggregation == "seq_mean_token_mean":
        return float(mask.shape[0])
    if aggregation == "seq_mean_token_sum_norm":
        return float(mask.shape[0] * max_new_tokens)
    raise ValueError(f"unknown aggregation {aggregation!r}")


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    aggregation: Aggregation,
    denominator: float,
    seq_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of this micro-batch's share of the aggregated loss (see module docstring)."""
    m = mask.to(per_token.dtype)
    if seq_weight is not None:
        m = m * seq_weight.unsqueeze(1)
    if aggregation == "seq_mean_token_mean":
        per_seq = (per_token * m).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / denominator
    return (per_token * m).sum() / denominator


def sft_token_loss(logp: torch.Tensor, phi: bool = False) -> torch.Tensor:
    """Per-token NLL [B, T]; with ``phi`` each token is weighted by p(1-p) (CHORD-phi)."""
    nll = -logp
    if phi:
        p = logp.detach().exp()
        nll = nll * p * (1 - p)
    return nll
