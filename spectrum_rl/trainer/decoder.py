"""Decoders behind the rollout loop: prefill each distinct prompt once, then one token per step.

``HFDecoder`` works with any Hugging Face causal LM through its own KV-cache object.
``StaticDecoder`` serves Llama-family models (Llama, Mistral, Qwen2) with a preallocated K/V
buffer per layer, written in place and attended through a slice: no cache object, no growing
``torch.cat`` and no attention-mask building per token. It calls the model's own modules (norms,
projections, MLP, rotary embedding), so LoRA-wrapped layers work unchanged, and it runs the same
operations as the model's SDPA forward: the same greedy and seeded samples, with log-probs bitwise
equal for the built-in model's layout and within ~1e-7 where HF takes another attention kernel
(grouped K/V heads) or PEFT wraps the layers (tested). Measured on the 2-core CPU: rollouts 9%
(20M) to 18% (built-in tiny) faster (benchmarks/README.md).

Both take distinct prompts ``ids``/``mask`` [U, P] (left-padded), ``group`` [N] (the prompt of each
row) and return logits [N, V] for the next token; ``step(tok [N], pos [N, 1])`` feeds one token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spectrum_rl.models import cache_kwarg, position_ids, unwrap_model

_STATIC_TYPES = {"llama", "mistral", "qwen2"}


def make_decoder(model, max_len: int, static_cache: bool | str = "auto") -> HFDecoder | StaticDecoder:
    """The static-cache decoder when allowed and the architecture is known to it, else the generic one.
    ``"auto"``: on CPU only, for now: on a GPU it has yet to run (``benchmarks/gpu_smoke.sh`` checks it)."""
    if static_cache == "auto":
        static_cache = next(model.parameters()).device.type == "cpu"
    if static_cache and StaticDecoder.supports(model, max_len):
        return StaticDecoder(model, max_len)
    return HFDecoder(model)


class HFDecoder:
    """Any causal LM: the model's KV cache, gathered from the U distinct prompts to the N rows."""

    def __init__(self, model) -> None:
        self.model, self.cache_kw = model, cache_kwarg(model)

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=True, logits_to_keep=1
        )
        self.cache = getattr(out, self.cache_kw)
        if ids.shape[0] < group.shape[0]:
            self.cache.batch_select_indices(group)  # [U, ...] -> [N, ...]
        self.mask = mask[group]  # [N, P], grows by one per step
        return out.logits[group, -1]

    def step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        out = self.model(
            input_ids=tok.unsqueeze(1),
            attention_mask=self.mask,
            position_ids=pos,
            use_cache=True,
            **{self.cache_kw: self.cache},
        )
        self.cache = getattr(out, self.cache_kw)
        return out.logits[:, -1]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class StaticDecoder:
    """Llama-family decode over preallocated K/V buffers [N, kv_heads, max_len, head_dim] per layer."""

    def __init__(self, model, max_len: int) -> None:
        self.lm = unwrap_model(model)
        self.inner, cfg = self.lm.model, self.lm.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.max_len = max_len

    @staticmethod
    def supports(model, max_len: int) -> bool:
        lm = unwrap_model(model)
        cfg = getattr(lm, "config", None)
        inner = getattr(lm, "model", None)
        if cfg is None or getattr(cfg, "model_type", None) not in _STATIC_TYPES or inner is None:
            return False
        if getattr(cfg, "_attn_implementation", "sdpa") != "sdpa":  # eager/flash: their own numerics
            return False
        window = getattr(cfg, "sliding_window", None)
        if window is not None and getattr(cfg, "use_sliding_window", True) and window < max_len:
            return False
        return all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb"))

    def _layers(
        self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, start: int, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, S, hidden] at positions pos [B, S] through every layer, writing K/V to buffer slots
        start..start+S (of the rows ``rows`` selects, for a prefill of distinct prompts); mask
        [B, 1, S, keys] bool. Returns the final-normed last position [B, 1, hidden]."""
        cos, sin = self.inner.rotary_emb(x, pos)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, S, head_dim]
        B, S, _ = x.shape
        end = start + S
        for i, layer in enumerate(self.inner.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(B, S, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if rows is not None:  # prefill: buffers sized to k's dtype
                n = rows.shape[0]
                self.k.append(k.new_zeros(n, self.kv_heads, self.max_len, self.head_dim))
                self.v.append(torch.zeros_like(self.k[-1]))
                self.k[i][:, :, start:end] = k[rows]
                self.v[i][:, :, start:end] = v[rows]
                keys, values = k, v  # attend within the prompt
            else:
                self.k[i][:, :, start:end] = k
                self.v[i][:, :, start:end] = v
                keys, values = self.k[i][:, :, :end], self.v[i][:, :, :end]
            o = F.scaled_dot_product_attention(
                q,
                keys,
                values,
                attn_mask=mask,
                scale=getattr(attn, "scaling", None),
                enable_gqa=self.kv_heads != self.heads,
            )
            x = x + attn.o_proj(o.transpose(1, 2).reshape(B, S, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.inner.norm(x[:, -1:])

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        U, P = ids.shape
        self.k, self.v = [], []
        keep = mask.bool()
        causal = torch.ones(P, P, dtype=torch.bool, device=ids.device).tril()
        # a padding position attends to itself only: finite K/V there (never attended to later)
        attend = (causal & keep[:, None, :]) | torch.eye(P, dtype=torch.bool, device=ids.device)
        h = self._layers(self.inner.embed_tokens(ids), position_ids(mask), attend[:, None], 0, group)
        self.keys_ok = torch.zeros(group.shape[0], self.max_len, dtype=torch.bool, device=ids.device)
        self.keys_ok[:, :P] = keep[group]
        self.length = P
        return self.lm.lm_head(h)[group, -1]

    def step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        t = self.length
        self.keys_ok[:, t] = True
        h = self._layers(self.inner.embed_tokens(tok.unsqueeze(1)), pos, self.keys_ok[:, None, None, : t + 1], t)
        self.length = t + 1
        return self.lm.lm_head(h)[:, -1]
