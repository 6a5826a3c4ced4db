"""Training rows and micro-batches: every sequence the loss sees, RL rollout or SFT demonstration.

A row is one prompt + completion as token lists with its loss role:
- ``rl``: a rollout, weight (1 - mu_d), advantage A, sampling log-probs;
- ``luffy``: an expert completion inside a rollout group (LUFFY), weight (1 - mu_d), advantage A;
- ``sft``: an expert demonstration, weight mu_d.
Micro-batches pad prompts on the left and completions on the right, so the completion always
occupies the last T positions: ``input_ids = [prompt | completion]``, shape [B, P + T].
"""
from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Literal, Sequence

import torch

from spectrum_rl.trainer.rollout import left_pad, right_pad


@dataclass
class Row:
    prompt: list[int]
    completion: list[int]
    role: Literal["rl", "luffy", "sft"]
    domain: str
    weight: float
    advantage: float = 0.0
    classes: dict[str, list[bool]] | None = None  # token class -> per-token membership (rollouts)


@dataclass
class MicroBatch:
    input_ids: torch.Tensor        # [B, P + T]
    attention_mask: torch.Tensor   # [B, P + T]
    completion_mask: torch.Tensor  # [B, T]
    weight: torch.Tensor           # [B]
    advantage: torch.Tensor        # [B]
    luffy: torch.Tensor            # [B] bool
    domains: list[str]
    classes: dict[str, torch.Tensor]  # token class -> [B, T] bool

    @property
    def n_completion(self) -> int:
        return self.completion_mask.shape[1]


def collate(rows: Sequence[Row], pad_id: int) -> MicroBatch:
    prompt_ids, prompt_mask = left_pad([r.prompt for r in rows], pad_id)
    completion_ids, completion_mask = right_pad([r.completion for r in rows], pad_id)
    return MicroBatch(
        input_ids=torch.cat([prompt_ids, completion_ids], 1),
        attention_mask=torch.cat([prompt_mask, completion_mask], 1),
        completion_mask=completion_mask,
        weight=torch.tensor([r.weight for r in rows], dtype=torch.float32),
        advantage=torch.tensor([r.advantage for r in rows], dtype=torch.float32),
        luffy=torch.tensor([r.role == "luffy" for r in rows]),
        domains=[r.domain for r in rows],
        classes={c: right_pad([r.classes[c] if r.classes else [] for r in rows], 0, completion_ids.shape[1])[0].bool()
                 for c in sorted({c for r in rows if r.classes for c in r.classes})},
    )


def token_classes(tokenizer, ids: Sequence[int], patterns: dict[str, "re.Pattern"]) -> dict[str, list[bool]]:
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


def micro_batches(rows: Sequence[Row], size: int, pad_id: int, max_tokens: int | None = None) -> list[MicroBatch]:
    """Length-bucketed micro-batches: rows sorted by length, then cut so that each holds at most
    ``size`` rows and (when given) at most ``max_tokens`` padded prompt+completion tokens. Each is
    collated with its own minimal padding; the step's loss is unchanged (denominators are global)."""
    order = sorted(rows, key=lambda r: (len(r.prompt), len(r.completion)))
    chunks: list[list[Row]] = []
    for row in order:
        chunk = chunks[-1] if chunks else None
        if chunk is not None and len(chunk) < size:
            width = max(len(r.prompt) for r in chunk + [row]) + max(len(r.completion) for r in chunk + [row])
            if max_tokens is None or width * (len(chunk) + 1) <= max_tokens:
                chunk.append(row)
                continue
        chunks.append([row])
    return [collate(c, pad_id) for c in chunks]
