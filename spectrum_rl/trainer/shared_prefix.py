"""The training forward with each distinct prompt once, for Llama-family models, with or without
activation checkpointing.

A rollout group's G rows share one prompt: the U distinct prompts [U, P] go through each layer
once and the B completions [B, T - 1] attend to their prompt's keys and values, gathered to the
rows, and to their own (causally). That is U * P + B * T tokens of work instead of B * (P + T).
The model's own KV cache does the same (``loss.completion_logits``), but a cache cannot be built
under activation checkpointing, which recomputes each layer in the backward. Here the layers are
run by this module, on the model's own modules (norms, projections, rotary embedding, MLP; so
LoRA-wrapped layers work unchanged), one function per layer over both parts at once: checkpointed,
it keeps only the layer's two inputs for the backward. The attention is the model's SDPA call on
the same keys, so the log-probs are those of the plain forward to float rounding (tested).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from spectrum_rl.cpu.attention import sdpa
from spectrum_rl.models import position_ids, unwrap_model
from spectrum_rl.trainer.batch import MicroBatch
from spectrum_rl.trainer.decoder import StaticDecoder, rotate_half


def supports(model, length: int) -> bool:
    """Whether this module can run ``model`` (the architectures and attention the static decoder
    knows) on sequences of ``length``; not inside DDP, whose forward must run to sync gradients."""
    return not hasattr(model, "module") and StaticDecoder.supports(model, length)


def shared_prefix_logits(model, mb: MicroBatch, checkpointed: bool) -> torch.Tensor:
    """Logits [B, T, V] predicting each completion token of ``mb`` (as ``loss.completion_logits``),
    each layer checkpointed when ``checkpointed``."""
    lm = unwrap_model(model)
    inner, cfg = lm.model, lm.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    group, n_completion = mb.group, mb.n_completion
    keep = mb.prompt_mask.bool()  # [U, P]
    n_prompt = keep.shape[1]
    prompt_pos = position_ids(mb.prompt_mask)
    steps = torch.arange(1, n_completion, device=prompt_pos.device)
    completion_pos = prompt_pos[group, -1:] + steps  # [B, T - 1]
    x_p = inner.embed_tokens(mb.prompt_ids)
    x_c = inner.embed_tokens(mb.completion_ids[:, :-1])
    rot_p, rot_c = inner.rotary_emb(x_p, prompt_pos), inner.rotary_emb(x_c, completion_pos)
    eye = torch.eye(n_prompt, dtype=torch.bool, device=keep.device)
    # a padding position of a prompt attends to itself only: finite values, never attended to
    attend_p = ((torch.ones_like(eye).tril() & keep[:, None, :]) | eye)[:, None]  # [U, 1, P, P]
    causal = torch.ones(n_completion - 1, n_completion - 1, dtype=torch.bool, device=keep.device).tril()
    own = causal & mb.completion_mask[:, None, :-1].bool()  # [B, T - 1, T - 1]
    attend_c = torch.cat([keep[group][:, None, :].expand(-1, n_completion - 1, -1), own], 2)[:, None]

    def layer_pass(layer, x_p: torch.Tensor, x_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attn = layer.self_attn

        def project(x: torch.Tensor, rot: tuple[torch.Tensor, torch.Tensor]):
            b, s, _ = x.shape
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(b, s, heads, head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(b, s, kv_heads, head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(b, s, kv_heads, head_dim).transpose(1, 2)
            cos, sin = rot[0].unsqueeze(1), rot[1].unsqueeze(1)
            return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin, v

        def attend(q, k, v, mask):
            return sdpa(q, k, v, mask, getattr(attn, "scaling", None), kv_heads != heads)

        def finish(x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
            b, s, _ = x.shape
            x = x + attn.o_proj(o.transpose(1, 2).reshape(b, s, -1))
            return x + layer.mlp(layer.post_attention_layernorm(x))

        q_p, k_p, v_p = project(x_p, rot_p)
        q_c, k_c, v_c = project(x_c, rot_c)
        o_p = attend(q_p, k_p, v_p, attend_p)
        o_c = attend(q_c, torch.cat([k_p[group], k_c], 2), torch.cat([v_p[group], v_c], 2), attend_c)
        return finish(x_p, o_p), finish(x_c, o_c)

    for layer in inner.layers:
        if checkpointed and torch.is_grad_enabled():
            x_p, x_c = checkpoint(layer_pass, layer, x_p, x_c, use_reentrant=False)
        else:
            x_p, x_c = layer_pass(layer, x_p, x_c)
    hidden = torch.cat([inner.norm(x_p[:, -1:])[group], inner.norm(x_c)], 1)  # [B, T, hidden]
    return lm.lm_head(hidden)
