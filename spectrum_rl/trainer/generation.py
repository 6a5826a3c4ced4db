"""Batched greedy/sampled text completion on top of the rollout sampler (for eval and tools)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spectrum_rl.models import end_token_ids
from spectrum_rl.trainer.rollout import Rollouts, sample


@torch.no_grad()
def complete(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    batch_size: int = 64,
    special_tokens: bool = True,
) -> tuple[list[str], list[Rollouts]]:
    """Complete each prompt (``temperature == 0``: greedy) in batches of ``batch_size``;
    ``special_tokens``: add the tokenizer's own (BOS) to each prompt, False for chat-templated text
    (``models.uses_chat_template``).

    Returns the decoded completions (special tokens dropped) and the raw rollout batches.
    """
    was_training = model.training
    model.eval()
    texts: list[str] = []
    batches: list[Rollouts] = []
    for start in range(0, len(prompts), batch_size):
        ids = [
            tokenizer(p, add_special_tokens=special_tokens)["input_ids"] for p in prompts[start : start + batch_size]
        ]
        ro = sample(
            model,
            ids,
            max_new_tokens=max_new_tokens,
            eos_id=end_token_ids(model, tokenizer),
            pad_id=tokenizer.pad_token_id,
            temperature=temperature,
        )
        batches.append(ro)
        texts += tokenizer.batch_decode(
            [c[m.bool()] for c, m in zip(ro.completion_ids, ro.completion_mask)], skip_special_tokens=True
        )
    model.train(was_training)
    return texts, batches


def generate_texts(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, temperature: float = 0.0, batch_size: int = 64
) -> list[str]:
    """Decoded completions only (see ``complete``)."""
    return complete(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size
    )[0]
