"""Decoders behind the rollout loop: prefill each distinct prompt once, then one token per step.

``HFDecoder`` works with any Hugging Face causal LM through its own KV-cache object.
``StaticDecoder`` serves Llama-family models (Llama, Mistral, Qwen2) with a preallocated K/V
buffer per layer, written in place and attended through a slice: no cache object, no growing
``torch.cat`` and no attention-mask building per token. It calls the model's own modules (norms,
projections, MLP, rotary embedding), so LoRA-wrapped layers work unchanged, and it runs the same
operations as the model's SDPA forward: the same greedy and seeded samples, with log-probs bitwise
equal for the built-in model's layout and within ~1e-7 where HF takes another attention kernel
(grouped K/V heads) or PEFT wraps the layers (tested). What it saves is measured in
docs/performance.md.

``GraphDecoder`` is the static decoder with every shape fixed per (rows bucket, length bucket), so
that on CUDA its per-token step is captured once in a CUDA graph and replayed (one launch per token
instead of one per kernel); on CPU the same fixed-shape step runs eagerly.

All take distinct prompts ``ids``/``mask`` [U, P] (left-padded), ``group`` [N] (the prompt of each
row) and return logits [N, V] for the next token; ``step(tok [N], pos [N, 1])`` feeds one token.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass, field

import torch

from spectrum_rl.cpu.attention import kv_dtype, sdpa
from spectrum_rl.models import cache_kwarg, position_ids, unwrap_model

_STATIC_TYPES = {"llama", "mistral", "qwen2"}


def make_decoder(
    model, max_len: int, static_cache: bool | str = "auto", graphs: bool | str = "auto"
) -> HFDecoder | StaticDecoder:
    """The static-cache decoder when allowed and the architecture is known to it, else the generic one.
    ``static_cache="auto"``: on CPU only, for now: on a GPU it has yet to run (``benchmarks/gpu_smoke.sh``
    checks it). ``graphs`` (static decoder only): the fixed-shape ``GraphDecoder``; ``"auto"`` = on CUDA."""
    device = next(model.parameters()).device.type
    if static_cache == "auto":
        static_cache = device == "cpu"
    if static_cache and StaticDecoder.supports(model, max_len):
        if graphs == "auto":
            graphs = device == "cuda"
        return GraphDecoder(model, max_len) if graphs else StaticDecoder(model, max_len)
    return HFDecoder(model)


class HFDecoder:
    """Any causal LM: the model's KV cache, gathered from the U distinct prompts to the N rows."""

    capture_seconds = 0.0  # CUDA-graph capture time spent by this decoder (GraphDecoder only)

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


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class StaticDecoder:
    """Llama-family decode over preallocated K/V buffers [N, kv_heads, max_len, head_dim] per layer."""

    capture_seconds = 0.0  # CUDA-graph capture time spent by this decoder (GraphDecoder only)

    def __init__(self, model, max_len: int) -> None:
        self.lm = unwrap_model(model)
        self.inner, cfg = self.lm.model, self.lm.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.max_len = max_len
        self.keep_buffers = False  # GraphDecoder: prefill into the buffers set beforehand

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

    def _buffer_rows(self, n: int) -> int:
        """Rows of the K/V buffers for n rows."""
        return n

    def _layers(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        mask: torch.Tensor,
        start: int,
        rows: torch.Tensor | None = None,
        slot: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, S, hidden] at positions pos [B, S] through every layer, writing K/V to buffer slots
        start..start+S (of the rows ``rows`` selects, for a prefill of distinct prompts), or, one
        token at a time with fixed shapes, to the slot held by the tensor ``slot`` [1] and then
        attending over the whole buffer; mask [B, 1, S, keys] bool. Returns the final-normed last
        position [B, 1, hidden]."""
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
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if rows is not None:  # prefill: buffers in the compute dtype (unless they exist already)
                n = rows.shape[0]
                if len(self.k) <= i:
                    shape = (self._buffer_rows(n), self.kv_heads, self.max_len, self.head_dim)
                    self.k.append(k.new_zeros(shape, dtype=kv_dtype(k.device, k.dtype)))
                    self.v.append(torch.zeros_like(self.k[-1]))
                self.k[i][:n, :, start:end] = k[rows]
                self.v[i][:n, :, start:end] = v[rows]
                keys, values = k, v  # attend within the prompt
            elif slot is not None:  # fixed shapes: write by index, attend through the key mask
                self.k[i].index_copy_(2, slot, k.to(self.k[i].dtype))  # index_copy_ does not cast
                self.v[i].index_copy_(2, slot, v.to(self.v[i].dtype))
                keys, values = self.k[i], self.v[i]
            else:
                self.k[i][:, :, start:end] = k
                self.v[i][:, :, start:end] = v
                keys, values = self.k[i][:, :, :end], self.v[i][:, :, :end]
            o = sdpa(q, keys, values, mask, getattr(attn, "scaling", None), self.kv_heads != self.heads)
            x = x + attn.o_proj(o.transpose(1, 2).reshape(B, S, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.inner.norm(x[:, -1:])

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        U, P = ids.shape
        if not self.keep_buffers:
            self.k, self.v = [], []  # allocated by the first layer pass, in k's dtype
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


def bucket(n: int, size: int) -> int:
    """n rounded up to a multiple of ``size``."""
    return -(-n // size) * size


@dataclass
class _Bucket:
    """What one (rows, length, dtype) shape keeps between rollouts: the K/V buffers, the key mask,
    the step's inputs and, on CUDA, the captured graph and its output. A graph reads and writes
    fixed addresses, so all of these are allocated once and written in place."""

    k: list[torch.Tensor] = field(default_factory=list)
    v: list[torch.Tensor] = field(default_factory=list)
    keys_ok: torch.Tensor | None = None  # [rows, length] bool
    tok: torch.Tensor | None = None  # [rows]
    pos: torch.Tensor | None = None  # [rows, 1]
    slot: torch.Tensor | None = None  # [1]: the position being written
    graph: torch.cuda.CUDAGraph | None = None
    out: torch.Tensor | None = None  # [rows, vocab]: the graph's logits


_BUCKETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {shape key: _Bucket}
CAPTURES = {"graphs": 0, "seconds": 0.0}  # CUDA graphs captured in this process, and the time it took


class GraphDecoder(StaticDecoder):
    """The static decoder with fixed shapes, for CUDA graphs (``make_decoder(graphs=True)``).

    Rows are padded to a multiple of ``ROWS`` and the K/V length rounded up to a multiple of
    ``LENGTH``; the decode step writes its K/V slot by index (a tensor, so one captured graph serves
    every position) and attends over the whole buffer through the key mask. Per (rows, length,
    dtype) bucket the buffers live as long as the model, and on CUDA the step is captured in a
    CUDA graph on its first use (two eager warm-up steps on a side stream, then the capture;
    ``CAPTURES`` counts them and their seconds) and replayed for every later token and rollout of
    that bucket, so a run whose batch size changes captures once per bucket, not per step. On CPU
    the same fixed-shape step runs eagerly. Sampling stays outside the graph (it needs the
    generator's stream). Weights are read in place, so optimizer steps between rollouts are seen.
    """

    ROWS, LENGTH = 16, 64

    def __init__(self, model, max_len: int) -> None:
        super().__init__(model, bucket(max_len, self.LENGTH))
        self.keep_buffers = True

    def _buffer_rows(self, n: int) -> int:
        return bucket(n, self.ROWS)

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        n, device = group.shape[0], ids.device
        dtype = kv_dtype(device, None)  # None: no autocast, the keys' own dtype
        key = (self._buffer_rows(n), self.max_len, dtype, device)
        self.b = _BUCKETS.setdefault(self.lm, {}).setdefault(key, _Bucket())
        self.k, self.v, self.n = self.b.k, self.b.v, n  # the prefill fills these (allocating them once)
        logits = super().prefill(ids, mask, group)
        b, rows, P = self.b, self._buffer_rows(n), ids.shape[1]
        if b.keys_ok is None:
            b.keys_ok = torch.zeros(rows, self.max_len, dtype=torch.bool, device=device)
            b.tok = torch.zeros(rows, dtype=torch.long, device=device)
            b.pos = torch.zeros(rows, 1, dtype=torch.long, device=device)
            b.slot = torch.zeros(1, dtype=torch.long, device=device)
        b.keys_ok.zero_()
        b.keys_ok[:n, :P] = self.keys_ok[:, :P]
        b.keys_ok[n:, 0] = True  # padding rows attend to something (finite, and never read)
        b.tok.zero_()
        b.pos.zero_()
        return logits

    def _fixed_step(self) -> torch.Tensor:
        """The captured step: mark the slot as a key, run the layers on it, return the logits."""
        b = self.b
        b.keys_ok.index_fill_(1, b.slot, True)
        x = self.inner.embed_tokens(b.tok.unsqueeze(1))
        h = self._layers(x, b.pos, b.keys_ok[:, None, None, :], 0, slot=b.slot)
        return self.lm.lm_head(h)[:, -1]

    def step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, n = self.b, self.n
        b.tok[:n].copy_(tok)
        b.pos[:n].copy_(pos)
        b.slot.fill_(self.length)
        self.length += 1
        if b.slot.device.type != "cuda":
            return self._fixed_step()[:n]
        if b.graph is None:
            self._capture()
        b.graph.replay()
        return b.out[:n]

    def _capture(self) -> None:
        b = self.b
        t0 = time.perf_counter()
        # Warm-up writes the same slot as the real step, so running it first changes nothing.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), _graph_autocast():
            for _ in range(2):
                self._fixed_step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), _graph_autocast():
            b.out = self._fixed_step()
        b.graph = graph
        seconds = time.perf_counter() - t0
        self.capture_seconds += seconds
        CAPTURES["graphs"] += 1
        CAPTURES["seconds"] += seconds


def _graph_autocast() -> contextlib.AbstractContextManager:
    """The surrounding autocast without its weight-cast cache: a cached cast would be freed when
    the rollout's autocast block ends while the graph still reads it, so casts go into the graph."""
    if not torch.is_autocast_enabled("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False)
