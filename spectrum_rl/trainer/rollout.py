"""Rollouts: sample completions with a KV cache and keep the sampling log-probs.

One batched decode for all prompts of a step (all domains together). Each distinct prompt is
prefilled once and its KV cache gathered to the G rows of its group; each step then feeds only
the new token through the model (a decoder from ``decoder.py``: a preallocated KV cache for
Llama-family models, the model's own cache otherwise), and the loop exits as soon as every sequence
has ended (EOS or a stop string). The log-prob of a sampled token is taken from
``log_softmax(logits / temperature)`` — the distribution the loss will later re-evaluate —
while top-p only restricts which tokens may be drawn (as in TRL and vLLM). The entropy of that
same distribution, ``-sum_v p_v log p_v``, is kept per token: the rollout entropy the scheduler's
entropy monitor reads, measured on every sampled row before any loss weighting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from spectrum_rl.errors import SpectrumError
from spectrum_rl.models import position_ids, unwrap_model
from spectrum_rl.trainer.decoder import make_decoder


@dataclass
class Rollouts:
    """A batch of sampled completions. N rows (prompts already repeated G times)."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor  # [N, P]
    completion_ids: torch.Tensor  # [N, T] right-padded with pad
    completion_mask: torch.Tensor  # [N, T] 1 for generated tokens (EOS included)
    logprobs: torch.Tensor  # [N, T] sampling log-probs (0 on padding)
    entropy: torch.Tensor  # [N, T] entropy of the sampling distribution (0 on padding)
    finished: torch.Tensor  # [N] bool: ended by EOS/stop (False: hit max_new_tokens)
    capture_seconds: float = 0.0  # CUDA-graph capture time this rollout paid (a new decode shape)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids [N, L], mask [N, L]) padded on the left."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def distinct_prompts(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each distinct prompt once, left-padded (ids [U, P], mask [U, P]), and the index of each row's
    prompt among them ([N]): a rollout group's G rows share one prompt forward."""
    index: dict[tuple[int, ...], int] = {}
    group = torch.tensor([index.setdefault(tuple(p), len(index)) for p in prompts], dtype=torch.long)
    return (*left_pad([list(p) for p in index], pad_id), group)


def right_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids [N, L], mask [N, L]) padded on the right."""
    width = width or max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        s = list(s)[:width]
        if s:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
    return ids, mask


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask (to -inf) tokens outside the smallest set whose probability mass reaches top_p."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    outside = probs.cumsum(-1) - probs > top_p  # keep at least one
    sorted_logits = sorted_logits.masked_fill(outside, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


class _AllEnded:
    """Whether every row has ended, as the decode loop asks after each token. On a GPU, reading a
    device value waits for everything queued before it: asked each token, the host would drain the
    launch queue every step. So there the loop reads the previous token's answer, copied to pinned
    host memory without waiting (``lagged``): it decodes at most one token past the end, a column
    of padding that ``sample`` cuts off. On a CPU the value is there at once (not lagged)."""

    def __init__(self, device: torch.device, lagged: bool | None = None) -> None:
        self.lagged = device.type == "cuda" if lagged is None else lagged
        self.cuda = device.type == "cuda"
        self.pending: torch.Tensor | None = None
        if self.cuda and self.lagged:
            self.flag = torch.zeros((), dtype=torch.bool, pin_memory=True)
            self.copied = torch.cuda.Event()

    def __call__(self, done: torch.Tensor) -> bool:
        if not self.lagged:
            return bool(done.all())
        previous = self.pending is not None and self._read()
        if self.cuda:
            self.flag.copy_(done.all(), non_blocking=True)
            self.copied.record()
            self.pending = self.flag
        else:
            self.pending = done.all()
        return previous

    def _read(self) -> bool:
        if self.cuda:
            self.copied.synchronize()  # the copy queued a token ago: the work queued since keeps running
        return bool(self.pending)


_POSITION_LIMITS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_limit(model) -> int | None:
    """The positions the model's config declares, or None when it declares none."""
    config = getattr(unwrap_model(model), "config", None)
    return next((v for a in _POSITION_LIMITS if isinstance(v := getattr(config, a, None), int)), None)


def check_context(model, prompt_tokens: int, max_new_tokens: int) -> None:
    """A one-line error when the longest prompt plus the completion budget is longer than the
    positions the model's config declares (a model with learned positions fails with an index error
    there, one with rotary ones runs outside its training), before anything is generated."""
    limit = context_limit(model)
    if limit is not None and prompt_tokens + max_new_tokens > limit:
        raise SpectrumError(
            f"a prompt of {prompt_tokens} tokens plus max_new_tokens {max_new_tokens} is longer than the model's "
            f"{limit} positions; shorten the prompts or lower training.max_new_tokens (eval.max_new_tokens)"
        )


@torch.no_grad()
def sample(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_id: int | Sequence[int],
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop: Sequence[Sequence[int]] = (),
    generator: torch.Generator | None = None,
    static_cache: bool | str = "auto",
    graphs: bool | str = "auto",
    lagged_stop: bool | None = None,
) -> Rollouts:
    """Sample one completion per prompt (token lists). ``temperature == 0`` is greedy; a row ends at
    any of ``eos_id`` (one id, or several: `models.end_token_ids`) or ``stop`` sequence;
    ``static_cache`` and ``graphs`` pick the decoder (``decoder.make_decoder``); ``lagged_stop``:
    read whether every row has ended a token late (``_AllEnded``; None: on a GPU)."""
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    check_context(model, prompt_ids.shape[1], max_new_tokens)
    n = prompt_mask.shape[0]
    position = position_ids(prompt_mask.to(device))
    # Prefill each distinct prompt once (a group's G rows share it); the decoder gathers it to rows.
    distinct_ids, distinct_mask, group = (t.to(device) for t in distinct_prompts(prompts, pad_id))
    decoder = make_decoder(model, prompt_ids.shape[1] + max_new_tokens, static_cache, graphs)
    logits = decoder.prefill(distinct_ids, distinct_mask, group)
    next_pos = position[:, -1:] + 1  # [N, 1]
    tokens, logps, entropies, valid = [], [], [], []
    done = torch.zeros(n, dtype=torch.bool, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    end_ids = torch.tensor([eos_id] if isinstance(eos_id, int) else list(eos_id), device=device)
    stop_tensors = [torch.tensor(s, device=device) for s in stop if len(s)]
    all_ended = _AllEnded(device, lagged_stop)
    for t in range(max_new_tokens):
        logits = logits.float()
        if temperature > 0:
            scaled = logits / temperature
            log_probs = torch.log_softmax(scaled, dim=-1)
            drawable = _top_p_filter(scaled, top_p) if top_p < 1.0 else scaled
            tok = torch.multinomial(torch.softmax(drawable, dim=-1), 1, generator=generator).squeeze(1)
        else:
            log_probs = torch.log_softmax(logits, dim=-1)
            tok = logits.argmax(-1)
        lp = log_probs.gather(-1, tok.unsqueeze(1)).squeeze(1)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        tokens.append(tok)
        valid.append(~done)  # ended rows emit padding
        logps.append(torch.where(done, torch.zeros_like(lp), lp))
        entropy = -(log_probs.exp() * log_probs).nan_to_num().sum(-1)  # 0·log 0 = 0 for masked tokens
        entropies.append(torch.where(done, torch.zeros_like(entropy), entropy))
        ended = torch.isin(tok, end_ids)
        if stop_tensors:
            recent = torch.stack(tokens, 1)
            for s in stop_tensors:
                if recent.shape[1] >= len(s):
                    ended |= (recent[:, -len(s) :] == s).all(1)
        finished |= ended & ~done
        done |= ended
        if all_ended(done) or t == max_new_tokens - 1:
            break
        logits = decoder.step(tok, next_pos)
        next_pos = next_pos + 1
    completion_mask = torch.stack(valid, 1).cpu()  # [N, T]
    # a lagged stop decodes one column past the end: all padding, cut off
    width = int(completion_mask.any(0).nonzero().max()) + 1 if completion_mask.any() else 1
    return Rollouts(
        prompt_ids,
        prompt_mask,
        torch.stack(tokens, 1).cpu()[:, :width],
        completion_mask[:, :width].long(),
        torch.stack(logps, 1).cpu()[:, :width],
        torch.stack(entropies, 1).cpu()[:, :width],
        finished.cpu(),
        decoder.capture_seconds,
    )
