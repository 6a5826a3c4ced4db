"""Training memory: the micro-batch budget (``MicroBatchBudget``: cutting, sharded padding, halving
after an out-of-memory) and, on a GPU, its token cap from free memory.

Activation bytes per token of a decoder layer, for 16-bit activations, after the count of Korthikanti
et al. 2022 (arXiv:2205.05198, "Reducing Activation Recomputation in Large Transformer Models":
``34 h`` per token and layer for a 4h GeLU MLP, attention scores left out as SDPA does not store
them), adapted to a SwiGLU MLP of width f: ``2 * (9 h + 4 f)`` (attention ~18h bytes: norm input,
q/k/v, attention output, o_proj input; MLP: norm input, gate and up outputs, activation, product).
The logits add ``10 V`` (16-bit logits, fp32 log-softmax and its gradient).

``auto_micro_batch_tokens`` turns this into a token cap that uses ``training.memory_fraction`` (half)
of the free memory for activations kept whole (the rest is headroom for the allocator, the
optimizer's temporaries and the estimate's error). The cap does not grow with activation
checkpointing: checkpointing keeps each layer's input only (4h bytes a token), so it lowers the
peak at the same micro-batches instead of being spent on larger ones. The trainer halves its
micro-batches and retries when a CUDA out-of-memory still happens (``trainer/learner.py``).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch

from spectrum_rl.trainer.batch import MicroBatch, Row, micro_batches
from spectrum_rl.trainer.setup import TrainState
from spectrum_rl.trainer.sharding import agree_counts, local_numel

MIN_TOKENS, MAX_TOKENS = 256, 65536


def activation_bytes_per_token(model_config) -> float:
    """Estimated bytes of activations a training forward keeps per token, without checkpointing
    (see module docstring)."""
    h = model_config.hidden_size
    f = getattr(model_config, "intermediate_size", None) or 4 * h
    return model_config.num_hidden_layers * 2 * (9 * h + 4 * f) + 10 * model_config.vocab_size


def auto_micro_batch_tokens(free_bytes: int, model_config, reserve_bytes: int = 0, fraction: float = 0.5) -> int:
    """Padded tokens per micro-batch whose activations fit in ``fraction`` of ``free_bytes -
    reserve_bytes`` (``reserve_bytes``: memory about to be taken, e.g. AdamW's state before its
    first step), clamped to [MIN_TOKENS, MAX_TOKENS]."""
    usable = fraction * max(free_bytes - reserve_bytes, 0)
    tokens = int(usable // activation_bytes_per_token(model_config))
    return max(MIN_TOKENS, min(MAX_TOKENS, tokens))


class MicroBatchBudget:
    """How a step's rows are cut into micro-batches: at most ``rows`` rows and ``tokens`` padded
    tokens each (``training.micro_batch_size`` / ``micro_batch_tokens``; "auto" resolved on the first
    step: 1024 on CPU, where it keeps peak memory low; on a GPU the cap that fits in half the free
    memory). Both caps are kept for later steps and halved after each CUDA out-of-memory."""

    def __init__(self, state: TrainState, rows: int, tokens: int | str | None, memory_fraction: float = 0.5) -> None:
        self.state = state
        self._asked = (rows, tokens)
        self.memory_fraction = memory_fraction
        self.limits: tuple[int, int | None] | None = None  # (rows, padded tokens), once resolved

    def _resolve(self) -> tuple[int, int | None]:
        if self.limits is None:
            rows, budget = self._asked
            st = self.state
            if budget == "auto" and st.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(st.device)
                trainable = [p for p in st.model.parameters() if p.requires_grad]
                reserve = 0 if st.optimizer.state else 8 * local_numel(trainable)  # AdamW's, not yet taken
                budget = auto_micro_batch_tokens(free, st.policy.config, reserve, self.memory_fraction)
            elif budget == "auto":
                budget = 1024
            self.limits = (rows, budget)
        return self.limits

    def cut(self, rl_rows: list[Row], sft_rows: list[Row]) -> list[tuple[MicroBatch, bool]]:
        """(micro-batch, is_rl) pairs under the current caps: RL rows first, then SFT rows."""
        size, budget = self._resolve()
        pad = self.state.tokenizer.pad_token_id
        once = self.state.prompts_once  # the tokens the forward will process, as the cap counts them
        batches = [(mb, True) for mb in micro_batches(rl_rows, size, pad, budget, prompts_once=once)]
        batches += [(mb, False) for mb in micro_batches(sft_rows, size, pad, budget, prompts_once=once)]
        if self.state.sharded and self.state.acc.num_processes > 1:
            batches = self._pad(batches)
        return batches

    def _pad(self, batches: list[tuple[MicroBatch, bool]]) -> list[tuple[MicroBatch, bool]]:
        """Sharded, every process runs as many RL and as many SFT micro-batches (each forward and
        backward is a collective, trainer/sharding.py): the ones short of the most get empty ones,
        a padding token with no mask and weight 0, which add nothing to the loss or the metrics."""
        rl = [b for b in batches if b[1]]
        sft = [b for b in batches if not b[1]]
        want_rl, want_sft = agree_counts([len(rl), len(sft)], self.state.device)
        pad = self.state.tokenizer.pad_token_id
        empty = micro_batches([Row([pad], [pad], "rl", "", 0.0)], 1, pad)[0]
        empty = replace(empty, completion_mask=torch.zeros_like(empty.completion_mask))
        return rl + [(empty, True)] * (want_rl - len(rl)) + sft + [(empty, False)] * (want_sft - len(sft))

    def halve(self, batches: list[tuple[MicroBatch, bool]]) -> bool:
        """Halve both caps after an out-of-memory; False when every micro-batch is already a single
        row (nothing left to halve)."""
        if all(mb.completion_ids.shape[0] == 1 for mb, _ in batches):
            return False
        size, budget = self._resolve()
        largest = max(mb.prompt_ids.numel() + mb.completion_ids.numel() for mb, _ in batches)
        self.limits = (max(1, size // 2), max(1, (budget or largest) // 2))
        if self.state.is_main:
            print(
                f"CUDA out of memory in a training micro-batch: retrying the step with micro-batches of at most "
                f"{self.limits[0]} rows and {self.limits[1]} padded tokens",
                file=sys.stderr,
                flush=True,
            )
        return True
