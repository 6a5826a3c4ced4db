"""Batched text generation with a Hugging Face causal LM (left padding, greedy or sampled)."""
from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 64,
) -> list[str]:
    """Complete each prompt; ``temperature == 0`` means greedy. Returns the decoded completions
    (special tokens dropped). Prompts are processed in left-padded batches of ``batch_size``."""
    out: list[str] = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True).to(device)
        seq = model.generate(
            **batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, **sampling,
        )
        completions = seq[:, batch["input_ids"].shape[1]:]  # [B, <=max_new_tokens]
        out += tokenizer.batch_decode(completions, skip_special_tokens=True)
    model.train(was_training)
    return out
