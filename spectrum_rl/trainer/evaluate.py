"""Held-out evaluation: greedy completions of each domain's eval prompts, scored by its reward,
and the KL of the policy from the base model on those completions.

A domain's held-out score is its *primary* reward component (``HybridReward.primary``: the one
with the largest weight), unweighted: exact match, numeric match or constraint satisfaction, a
rate in [0, 1] for every built-in component, so ``eval/mean`` averages like with like. The full
hybrid reward (shaping terms included) is reported beside it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from spectrum_rl.config import Config
from spectrum_rl.domains import BuiltDomain
from spectrum_rl.models import apply_prompt_format, position_ids, uses_chat_template
from spectrum_rl.trainer.distributed import gather_lists, sum_over_processes
from spectrum_rl.trainer.generation import complete
from spectrum_rl.trainer.rollout import Rollouts
from spectrum_rl.trainer.setup import TrainState
from spectrum_rl.trainer.sharding import gathered


@dataclass
class EvalResult:
    scores: dict[str, float]  # domain -> mean primary-component score of the greedy completion
    rewards: dict[str, float]  # domain -> mean hybrid reward of the greedy completion
    kl: float | None  # mean per-token KL(policy || base) on those completions
    levels: dict[str, dict[int, float]] = field(default_factory=dict)  # a ladder's score per level
    # the first ``log_completions`` held-out prompts of each domain, as the model saw and answered them
    samples: list[dict[str, Any]] = field(default_factory=list)


def evaluate(
    model,
    tokenizer,
    domains: Sequence[BuiltDomain],
    *,
    max_new_tokens: int,
    batch_size: int = 64,
    chat_template: bool | None = None,
    limit: int | None = None,
    base=None,
    rank: int = 0,
    world: int = 1,
    reduce: Callable[[list[float]], list[float]] | None = None,
    log_completions: int = 0,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Score greedy completions on every domain's held-out set (``limit`` caps prompts per domain).

    With several processes each takes every world-th prompt and ``reduce`` sums the partial
    (sum, count) pairs across processes, so all processes return the same result. The samples of
    the first ``log_completions`` prompts per domain are this process's share of them.
    """
    indexed = [(d, i, e) for d in domains for i, e in enumerate(d.eval_examples()[:limit])][rank::world]
    examples = [(d, e) for d, _, e in indexed]
    prompts = [
        apply_prompt_format(tokenizer, e.prompt, chat_template, e.system, chat_template_kwargs) for _, e in examples
    ]
    plain = not uses_chat_template(tokenizer, chat_template)
    texts, batches = complete(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, special_tokens=plain
    )
    scored = [d.reward.score([t], e) for (d, e), t in zip(examples, texts)]
    samples = [
        {"domain": d.name, "index": i, "prompt": prompt, "completion": text, "answer": e.reference}
        | {"score": round(float(r.parts[d.reward.primary][0]), 6), "reward": round(float(r.total[0]), 6)}
        for (d, i, e), prompt, text, r in zip(indexed, prompts, texts, scored)
        if i < log_completions
    ]
    partial: list[float] = []  # per domain: sum of primary scores, sum of rewards, count
    per_level: list[float] = []  # per (domain, level) of a ladder: sum of primary scores, count
    by_level: list[tuple[str, int]] = []
    for d in domains:
        results = [(e.level, r) for (dom, e), r in zip(examples, scored) if dom is d]
        primary = [(level, float(r.parts[d.reward.primary][0])) for level, r in results]
        partial += [sum(p for _, p in primary), sum(float(r.total[0]) for _, r in results), len(results)]
        # the levels from the whole held-out set, so every process appends the same entries
        for level in sorted({e.level for e in d.eval_examples()[:limit] if e.level is not None}):
            at_level = [p for lv, p in primary if lv == level]
            per_level += [sum(at_level), len(at_level)]
            by_level.append((d.name, level))
    kl_sum, kl_count = _kl_sums(model, base, batches) if base is not None else (0.0, 0.0)
    partial += [*per_level, kl_sum, kl_count]
    if reduce is not None:
        partial = reduce(partial)
    rows = [(d.name, partial[3 * i : 3 * i + 3]) for i, d in enumerate(domains)]
    scores = {name: p / n for name, (p, _, n) in rows if n}
    rewards = {name: r / n for name, (_, r, n) in rows if n}
    levels: dict[str, dict[int, float]] = {}
    for i, (name, level) in enumerate(by_level):
        p, n = partial[3 * len(domains) + 2 * i : 3 * len(domains) + 2 * i + 2]
        if n:
            levels.setdefault(name, {})[level] = p / n
    kl = partial[-2] / partial[-1] if base is not None and partial[-1] else None
    return EvalResult(scores, rewards, kl, levels, samples)


def evaluate_state(st: TrainState, domains: Sequence[BuiltDomain], config: Config) -> EvalResult:
    """``evaluate`` for a run's policy: all processes take part (each scores its share), sharded
    weights are gathered while decoding, in the training precision (training.bf16), and fp32 CPU
    linear layers run on oneDNN."""
    with st.acc.autocast(), st.kernels(), gathered(st.model, st.base):
        result = evaluate(
            st.policy,
            st.tokenizer,
            domains,
            max_new_tokens=config.eval.max_new_tokens or config.training.max_new_tokens,
            batch_size=config.eval.batch_size,
            chat_template=config.model.chat_template,
            base=st.base,
            rank=st.acc.process_index,
            world=st.acc.num_processes,
            reduce=lambda values: sum_over_processes(st.acc, values),
            log_completions=config.eval.log_completions,
            chat_template_kwargs=config.model.chat_template_kwargs,
        )
    order = {d.name: k for k, d in enumerate(domains)}
    result.samples = sorted(gather_lists(st.acc, result.samples), key=lambda s: (order[s["domain"]], s["index"]))
    return result


def eval_record(step: int, result: EvalResult, seconds: float) -> dict[str, Any]:
    """The eval.jsonl line of one evaluation."""
    scores = {name: round(v, 6) for name, v in result.scores.items()}
    record = {
        "step": step,
        **{f"eval/{k}": v for k, v in scores.items()},
        "eval/mean": round(sum(scores.values()) / len(scores), 6),
        **{f"eval_reward/{k}": round(v, 6) for k, v in result.rewards.items()},
        **{f"eval_level/{k}@{lv}": round(v, 6) for k, per in result.levels.items() for lv, v in per.items()},
        "time/eval": round(seconds, 3),
    }
    if result.kl is not None:
        record["kl_to_base"] = round(result.kl, 6)
    return record


@torch.no_grad()
def _kl_sums(model, base, batches: list[Rollouts]) -> tuple[float, float]:
    """Sum and count over completion tokens of the exact KL(pi || pi_base) of next-token distributions."""
    total, count = 0.0, 0.0
    device = next(model.parameters()).device
    for ro in batches:
        ids = torch.cat([ro.prompt_ids, ro.completion_ids], 1).to(device)
        mask = torch.cat([ro.prompt_mask, ro.completion_mask], 1).to(device)
        position = position_ids(mask)
        n = ro.completion_ids.shape[1]
        logits = [
            m(input_ids=ids, attention_mask=mask, position_ids=position, logits_to_keep=n + 1).logits[:, :-1]
            for m in (model, base)
        ]
        logp, logq = (torch.log_softmax(x.float(), -1) for x in logits)  # [B, T, V]
        kl = (logp.exp() * (logp - logq)).sum(-1)  # [B, T]
        m = ro.completion_mask.to(device).float()
        total += float((kl * m).sum())
        count += float(m.sum())
    return total, count
