"""Attention in fp32 on a CPU under bf16 autocast.

Autocast sends ``scaled_dot_product_attention`` to bf16 on the CPU, and PyTorch's CPU flash
kernel is slower in bf16 than in fp32 (it widens every block to fp32 inside; forward and backward
measured in benchmarks/README.md). Attention is a small share of the FLOPs and the matmuls around
it (the projections) keep bf16, so here it runs in fp32: the inputs are widened (a no-op for the
decoders' fp32 K/V buffers) and autocast is off for the call: in our decoders and shared-prefix
pass (`sdpa`), and inside a `hf_attention_fp32` block in the models' own forward (transformers'
"sdpa" attention, for architectures our decoders do not run and for DDP).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F


def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float | None,
    gqa: bool,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)``; on a
    CPU under autocast in fp32 (the output fp32; the next projection casts it back)."""
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=mask, scale=scale, enable_gqa=gqa
            )
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


def kv_dtype(device: torch.device, default: torch.dtype | None) -> torch.dtype | None:
    """The dtype a decoder keeps its K/V buffers in on ``device``: fp32 on a CPU under autocast
    (attention runs in fp32 there, `sdpa`), the autocast dtype on a GPU under autocast (attention
    runs in it: one rounding per key, as the model's own cache path does, and half the memory),
    else ``default`` (the keys' own dtype). Under autocast the rotary product leaves K in fp32 and
    V in the autocast dtype, so one dtype for both is chosen here."""
    if not torch.is_autocast_enabled(device.type):
        return default
    return torch.float32 if device.type == "cpu" else torch.get_autocast_dtype(device.type)


@contextlib.contextmanager
def hf_attention_fp32() -> Iterator[None]:
    """Within the block, transformers' "sdpa" attention (every model's, unless it overrides it
    locally) runs in fp32 when called on a CPU under autocast, as `sdpa` does; restored after."""
    try:
        from transformers.modeling_utils import AttentionInterface
    except ImportError:  # a transformers without the interface: its own attention, unchanged
        yield
        return
    mapping = AttentionInterface._global_mapping
    original = mapping.get("sdpa")
    if original is None:
        yield
        return

    def widened(module, query, key, value, attention_mask, *args, **kwargs):
        if not (query.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
            return original(module, query, key, value, attention_mask, *args, **kwargs)
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        with torch.autocast("cpu", enabled=False):
            return original(module, query.float(), key.float(), value.float(), attention_mask, *args, **kwargs)

    mapping["sdpa"] = widened
    try:
        yield
    finally:
        mapping["sdpa"] = original
