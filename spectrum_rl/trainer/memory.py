"""Training memory on a GPU: micro-batch size from free memory, and what to do on out-of-memory.

Activation bytes per token of a decoder layer, for 16-bit activations, after the count of Korthikanti
et al. 2022 (arXiv:2205.05198, "Reducing Activation Recomputation in Large Transformer Models":
``34 h`` per token and layer for a 4h GeLU MLP, attention scores left out as SDPA does not store
them), adapted to a SwiGLU MLP of width f: ``2 * (9 h + 4 f)`` (attention ~18h bytes: norm input,
q/k/v, attention output, o_proj input; MLP: norm input, gate and up outputs, activation, product).
With activation checkpointing only each layer's input is kept (4h bytes: the fp32 residual
stream under autocast) plus one layer's full set while it is recomputed. The logits add
``10 V`` (16-bit logits, fp32 log-softmax and its gradient).

``auto_micro_batch_tokens`` turns this into a token cap that uses half the free memory (the rest
is headroom for the allocator, the optimizer's temporaries and the estimate's error); the trainer
halves its micro-batches and retries when a CUDA out-of-memory still happens (``trainer/loop.py``).
"""

from __future__ import annotations

MIN_TOKENS, MAX_TOKENS = 256, 65536


def activation_bytes_per_token(model_config, checkpointing: bool) -> float:
    """Estimated bytes of saved activations per token of a training forward (see module docstring)."""
    h = model_config.hidden_size
    f = getattr(model_config, "intermediate_size", None) or 4 * h
    layers = model_config.num_hidden_layers
    full_layer = 2 * (9 * h + 4 * f)
    per_layer = layers * 4 * h + full_layer if checkpointing else layers * full_layer
    return per_layer + 10 * model_config.vocab_size


def auto_micro_batch_tokens(
    free_bytes: int, model_config, checkpointing: bool, reserve_bytes: int = 0, fraction: float = 0.5
) -> int:
    """Padded tokens per micro-batch that fit in ``fraction`` of ``free_bytes - reserve_bytes``
    (``reserve_bytes``: memory about to be taken, e.g. AdamW's state before its first step),
    clamped to [MIN_TOKENS, MAX_TOKENS]."""
    usable = fraction * max(free_bytes - reserve_bytes, 0)
    tokens = int(usable // activation_bytes_per_token(model_config, checkpointing))
    return max(MIN_TOKENS, min(MAX_TOKENS, tokens))
