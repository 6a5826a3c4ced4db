"""Training rows and micro-batches: every sequence the loss sees, RL rollout or SFT demonstration.

A row is one prompt + completion as token lists with its loss role:
- ``rl``: a rollout, weight (1 - mu_d), advantage A, sampling log-probs;
- ``luffy``: an expert completion inside a rollout group (LUFFY), weight (1 - mu_d), advantage A;
- ``sft``: an expert demonstration, weight mu_d.
A micro-batch holds each distinct prompt once ([U, P], left-padded) and maps every row to its
prompt (``group``, [B]); completions are right-padded ([B, T]). Rows of one rollout group share
their prompt, so the loss can run the prompt forward once per group and the completions on its
KV cache (see ``loss.token_logprobs``); ``input_ids = [prompt | completion]`` ([B, P + T]) is the
plain layout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

import torch

from spectrum_rl.trainer.rollout import distinct_prompts, right_pad


@dataclass
class Row:
    prompt: list[int]
    completion: list[int]
    role: Literal["rl", "luffy", "sft"]
    domain: str
    weight: float
    advantage: float = 0.0


@dataclass
class MicroBatch:
    prompt_ids: torch.Tensor  # [U, P] distinct prompts, left-padded
    prompt_mask: torch.Tensor  # [U, P]
    group: torch.Tensor  # [B] row -> index of its prompt
    completion_ids: torch.Tensor  # [B, T] right-padded
    completion_mask: torch.Tensor  # [B, T]
    weight: torch.Tensor  # [B]
    advantage: torch.Tensor  # [B]
    luffy: torch.Tensor  # [B] bool
    domains: list[str]

    @property
    def n_completion(self) -> int:
        return self.completion_mask.shape[1]

    @property
    def input_ids(self) -> torch.Tensor:  # [B, P + T]
        return torch.cat([self.prompt_ids[self.group], self.completion_ids], 1)

    @property
    def attention_mask(self) -> torch.Tensor:  # [B, P + T]
        return torch.cat([self.prompt_mask[self.group], self.completion_mask], 1)

    def to(self, device) -> MicroBatch:
        """A copy with every tensor on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def collate(rows: Sequence[Row], pad_id: int) -> MicroBatch:
    prompt_ids, prompt_mask, group = distinct_prompts([r.prompt for r in rows], pad_id)
    completion_ids, completion_mask = right_pad([r.completion for r in rows], pad_id)
    return MicroBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        group=group,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        weight=torch.tensor([r.weight for r in rows], dtype=torch.float32),
        advantage=torch.tensor([r.advantage for r in rows], dtype=torch.float32),
        luffy=torch.tensor([r.role == "luffy" for r in rows]),
        domains=[r.domain for r in rows],
    )


def token_classes(tokenizer, ids: Sequence[int], patterns: dict[str, re.Pattern]) -> dict[str, list[bool]]:
    """Per-token membership of each class: a token belongs to a class when its characters overlap a
    regex match in the decoded completion (token pieces decoded one by one to get character spans)."""
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in ids]
    ends, total = [], 0
    for p in pieces:
        total += len(p)
        ends.append(total)
    text = "".join(pieces)
    out = {}
    for name, pattern in patterns.items():
        spans = [m.span() for m in pattern.finditer(text)]
        starts = [0, *ends[:-1]]
        out[name] = [any(t0 < m1 and t1 > m0 for m0, m1 in spans) for t0, t1 in zip(starts, ends)]
    return out


def micro_batches(
    rows: Sequence[Row], size: int, pad_id: int, max_tokens: int | None = None, prompts_once: bool = True
) -> list[MicroBatch]:
    """Length-bucketed micro-batches: rows sorted by prompt length, then prompt (so a group's rows
    sit together and share one prompt forward), then completion length; cut so that each holds at
    most ``size`` rows and (when given) at most ``max_tokens`` padded tokens as the forward will
    process them: U * P + B * T (each distinct prompt once plus every completion) with
    ``prompts_once``, else B * (P + T); with the rows spread evenly over as few
    micro-batches as the caps allow (64 rows under a cap that fits 30 become 22 + 22 + 20, not
    30 + 30 + 4: a sliver of a micro-batch costs a weight pass for little compute). Each is collated
    with its own minimal padding; the step's loss is unchanged (denominators are global)."""
    order = sorted(rows, key=lambda r: (len(r.prompt), r.prompt, len(r.completion)))
    chunks = _cut(order, size, max_tokens, prompts_once)
    if len(chunks) > 1:
        even = _cut(order, math.ceil(len(order) / len(chunks)), max_tokens, prompts_once)
        chunks = even if len(even) == len(chunks) else chunks
    return [collate(c, pad_id) for c in chunks]


def _cut(order: Sequence[Row], size: int, max_tokens: int | None, prompts_once: bool) -> list[list[Row]]:
    """Greedy cut of sorted rows: fill each chunk up to ``size`` rows and ``max_tokens`` padded tokens."""
    chunks: list[list[Row]] = []
    prompts: set[tuple[int, ...]] = set()
    width_p = width_t = 0
    for row in order:
        key = tuple(row.prompt)
        n_rows = len(chunks[-1]) + 1 if chunks else 1  # with this row
        n_prompts = len(prompts) + (key not in prompts) if prompts_once else n_rows
        p, t = max(width_p, len(row.prompt)), max(width_t, len(row.completion))
        if chunks and len(chunks[-1]) < size and (max_tokens is None or n_prompts * p + n_rows * t <= max_tokens):
            chunks[-1].append(row)
        else:
            chunks.append([row])
            prompts.clear()
            p, t = len(row.prompt), len(row.completion)
        prompts.add(key)
        width_p, width_t = p, t
    return chunks
