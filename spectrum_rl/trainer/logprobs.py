"""Log-probs of completion tokens under the policy: what both parts of the spectrum loss read.

The loss itself, ``L = (1 - mu) * L_RL + mu * L_SFT`` with each part a mean over its own tokens,
is summed in ``trainer/learner.py`` from the formulas in ``objectives/losses.py``. Here: the
training forward (each distinct prompt once, its keys and values gathered to the G rows that
share it) and ``log softmax(logits / T)`` at the sampled tokens.
"""

from __future__ import annotations

import torch

from spectrum_rl.models import cache_kwarg, position_ids
from spectrum_rl.trainer import shared_prefix
from spectrum_rl.trainer.batch import MicroBatch


def completion_logits(model, mb: MicroBatch, share_prefix: bool = True, checkpointed: bool = False) -> torch.Tensor:
    """Logits [B, T, V] that predict each completion token of ``mb``.

    Plain: one forward over ``[prompt | completion]`` ([B, P + T]). Shared prefix (when rows share
    prompts, U < B): the U distinct prompts go through the model once ([U, P]) and the completions
    ([B, T - 1]) attend to their keys and values, gathered to the B rows. The result is the same
    (the same attention over the same keys) with U * P instead of B * P prompt tokens: with group
    size G, (G - 1) / G of the prompt compute is saved, and of the activations kept for the
    backward. Gradients flow through the gathered keys and values into the prompt forward.
    Llama-family models run it layer by layer (``trainer/shared_prefix.py``), each layer
    checkpointed when ``checkpointed`` (activation checkpointing is on); others through their own
    KV cache, which checkpointing rules out (they then take the plain forward). Position ids come
    from the masks, so left padding does not shift positions.
    """
    n_prompts, n_rows, n_completion = mb.prompt_ids.shape[0], mb.group.shape[0], mb.n_completion
    if share_prefix and n_prompts < n_rows and n_completion > 1:
        if shared_prefix.supports(model, mb.prompt_ids.shape[1] + n_completion):
            return shared_prefix.shared_prefix_logits(model, mb, checkpointed)
    if not share_prefix or n_prompts == n_rows or checkpointed:
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


def token_logprobs(
    model, mb: MicroBatch, temperature: float = 1.0, share_prefix: bool = True, checkpointed: bool = False
) -> torch.Tensor:
    """Log-probs [B, T] of each completion token of ``mb`` under ``softmax(logits / temperature)``.
    (The rollout entropy is measured while sampling, in ``rollout.sample``.)"""
    logits = completion_logits(model, mb, share_prefix, checkpointed).float() / temperature  # [B, T, V]
    logz = torch.logsumexp(logits, dim=-1)  # [B, T]
    return logits.gather(-1, mb.completion_ids.unsqueeze(-1)).squeeze(-1) - logz  # [B, T]
