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


@dataclass
class MicroBatch:
    input_ids: torch.Tensor        # [B, P + T]
    attention_mask: torch.Tensor   # [B, P + T]
    completion_mask: torch.Tensor  # [B, T]
    weight: torch.Tensor           # [B]
    advantage: torch.Tensor        # [B]
    luffy: torch.Tensor            # [B] bool
    domains: list[str]

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
    )


def micro_batches(rows: Sequence[Row], size: int, pad_id: int) -> list[MicroBatch]:
    """Consecutive chunks of ``size`` rows, each collated with its own (minimal) padding."""
    return [collate(rows[i:i + size], pad_id) for i in range(0, len(rows), size)]
