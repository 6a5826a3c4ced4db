"""Held-out evaluation: greedy completions of each domain's eval prompts, scored by its reward."""
from __future__ import annotations

from typing import Sequence

from spectrum_rl.models import apply_prompt_format
from spectrum_rl.tasks.domain import Domain
from spectrum_rl.trainer.generation import generate_texts


def evaluate(
    model,
    tokenizer,
    domains: Sequence[Domain],
    *,
    max_new_tokens: int,
    batch_size: int = 64,
    chat_template: bool | None = None,
    limit: int | None = None,
) -> dict[str, float]:
    """Mean hybrid reward of greedy completions on each domain's held-out set (``limit`` caps
    the prompts per domain). All domains are generated in one batched pass."""
    examples = [(d, e) for d in domains for e in d.eval_examples()[:limit]]
    prompts = [apply_prompt_format(tokenizer, e.prompt, chat_template) for _, e in examples]
    completions = generate_texts(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    totals: dict[str, list[float]] = {d.name: [] for d in domains}
    for (domain, example), completion in zip(examples, completions):
        result = domain.reward.score([completion], example)
        totals[domain.name].append(float(result.total[0]))
    return {name: sum(v) / len(v) for name, v in totals.items() if v}
