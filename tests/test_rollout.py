"""The KV-cache rollout path gives the same tokens as the plain path (HF generate / full forwards)."""

from __future__ import annotations

import pytest
import torch

from spectrum_rl.models import load_causal_lm
from spectrum_rl.trainer.batch import Row, collate
from spectrum_rl.trainer.logprobs import token_logprobs
from spectrum_rl.trainer.rollout import sample

PROMPTS = ["sort: dcba\n", "add: 12+34\n", "x", "reverse: abcdefg\n"]


def test_greedy_matches_hf_generate(tiny_random_lm_dir):
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    ro = sample(model, ids, max_new_tokens=12, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, temperature=0)
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    plain = model.generate(
        **batch, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id
    )[:, batch["input_ids"].shape[1] :]
    for i in range(len(PROMPTS)):
        n = int(ro.completion_mask[i].sum())
        assert ro.completion_ids[i, :n].tolist() == plain[i, :n].tolist()


def test_sampling_logprobs_match_a_full_forward(tiny_random_lm_dir):
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    ids = [tok(p)["input_ids"] for p in PROMPTS] * 4
    ro = sample(
        model,
        ids,
        max_new_tokens=10,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        temperature=0.7,
        generator=torch.Generator().manual_seed(0),
    )
    rows = [Row(p, c[m.bool()].tolist(), "rl", "d", 1.0) for p, c, m in zip(ids, ro.completion_ids, ro.completion_mask)]
    mb = collate(rows, tok.pad_token_id)
    assert mb.prompt_ids.shape[0] == len(PROMPTS)  # each prompt once, shared by its 4 rows
    for share in (True, False):
        logp = token_logprobs(model, mb, temperature=0.7, share_prefix=share)
        assert torch.allclose(logp * mb.completion_mask, ro.logprobs[:, : mb.n_completion], atol=1e-4)
    # the entropy kept while sampling is that of the same distribution, softmax(logits / T)
    with torch.no_grad():
        logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask).logits.float()
    logits = logits[:, mb.prompt_ids.shape[1] - 1 : -1] / 0.7
    log_probs = torch.log_softmax(logits, -1)
    entropy = -(log_probs.exp() * log_probs).sum(-1) * mb.completion_mask
    assert torch.allclose(entropy, ro.entropy[:, : mb.n_completion], atol=1e-4)
    assert (ro.entropy[:, : mb.n_completion][mb.completion_mask == 0] == 0).all()


def test_sampling_distribution_matches_softmax(tiny_random_lm_dir):
    """First sampled token over 4000 draws vs the exact softmax(logits / T) of a plain forward (chi-square)."""
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    prompt = tok("sort: dcba\n")["input_ids"]
    n = 4000
    ro = sample(
        model,
        [prompt] * n,
        max_new_tokens=1,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        temperature=0.15,
        generator=torch.Generator().manual_seed(1),
    )
    from scipy.stats import chisquare

    counts = torch.bincount(ro.completion_ids[:, 0], minlength=len(tok)).double()
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].double() / 0.15, -1)
    keep = probs * n >= 5  # chi-square needs expected counts >= 5; pool the tail
    observed = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)]).numpy()
    expected = torch.cat([probs[keep], probs[~keep].sum(0, keepdim=True)]).numpy() * n
    assert chisquare(observed, expected).pvalue > 1e-3  # goodness of fit to the exact distribution
    shifted = torch.roll(probs, 1)  # and the test has power: a shifted distribution is rejected
    expected_shifted = torch.cat([shifted[keep], shifted[~keep].sum(0, keepdim=True)]).numpy() * n
    assert chisquare(observed, expected_shifted * observed.sum() / expected_shifted.sum()).pvalue < 1e-3


def test_same_seed_same_samples(tiny_random_lm_dir):
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    a, b = (
        sample(
            model,
            ids,
            max_new_tokens=8,
            eos_id=tok.eos_token_id,
            pad_id=tok.pad_token_id,
            temperature=1.0,
            generator=torch.Generator().manual_seed(3),
        )
        for _ in range(2)
    )
    assert torch.equal(a.completion_ids, b.completion_ids)


def test_shared_prefix_forward_gives_the_plain_loss_and_gradients(tiny_random_lm_dir):
    """Rows of a group share one prompt forward (KV cache gathered to the rows): same log-probs and
    the same gradients as the plain [prompt | completion] forward, with uneven prompt and
    completion lengths (left/right padding)."""
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    gen = torch.Generator().manual_seed(0)
    rows = [
        Row(
            tok(p)["input_ids"],
            torch.randint(3, 200, (int(torch.randint(1, 9, (1,), generator=gen)),), generator=gen).tolist(),
            "rl",
            "d",
            1.0,
        )
        for p in PROMPTS
        for _ in range(3)
    ]
    mb = collate(rows, tok.pad_token_id)
    results = []
    for share in (True, False):
        model.zero_grad()
        logp = token_logprobs(model, mb, temperature=0.9, share_prefix=share)
        (logp * mb.completion_mask).sum().backward()
        results.append((logp * mb.completion_mask, [p.grad.clone() for p in model.parameters()]))
    (a, ga), (b, gb) = results
    assert torch.allclose(a, b, atol=1e-5)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(ga, gb))


def test_micro_batches_keep_a_group_together():
    from spectrum_rl.trainer.batch import micro_batches

    rows = [Row([5, 6, p], [7] * (1 + (i * 5) % 11), "rl", "d", 1.0) for p in range(4) for i in range(8)]
    batches = micro_batches(rows, size=16, pad_id=0)
    assert [mb.prompt_ids.shape[0] for mb in batches] == [2, 2]  # each prompt forwarded once


def _rows(tok, lengths_seed: int = 0) -> list[Row]:
    gen = torch.Generator().manual_seed(lengths_seed)
    return [
        Row(
            tok(p)["input_ids"],
            torch.randint(3, 200, (int(torch.randint(2, 9, (1,), generator=gen)),), generator=gen).tolist(),
            "rl",
            "d",
            1.0,
        )
        for p in PROMPTS
        for _ in range(3)
    ]


@pytest.mark.parametrize("arch", ["llama", "llama_gqa", "qwen2_bias", "mistral", "llama_lora"])
@pytest.mark.parametrize("checkpointed", [False, True], ids=["plain_layers", "checkpointed"])
def test_prompts_once_layer_by_layer_gives_the_plain_forward_with_or_without_checkpointing(arch, checkpointed):
    """Llama-family models run the shared-prefix forward layer by layer (trainer/shared_prefix.py),
    checkpointed or not: the log-probs and gradients of the plain [prompt | completion] forward."""
    from peft import LoraConfig, get_peft_model

    from spectrum_rl.models import byte_tokenizer
    from spectrum_rl.trainer import shared_prefix
    from tests.test_decoder import ARCHITECTURES

    model = ARCHITECTURES[arch.removesuffix("_lora")]().train()
    if arch.endswith("_lora"):
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"]))
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    tok = byte_tokenizer()
    mb = collate(_rows(tok), tok.pad_token_id)
    assert shared_prefix.supports(model, 64)
    results = []
    for share in (True, False):
        model.zero_grad()
        logp = token_logprobs(model, mb, temperature=0.9, share_prefix=share, checkpointed=checkpointed)
        (logp * mb.completion_mask).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        results.append((logp * mb.completion_mask, grads))
    (a, ga), (b, gb) = results
    assert torch.allclose(a, b, atol=1e-5)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(ga, gb))


def test_checkpointing_keeps_a_third_or_less_of_the_activations_for_the_backward():
    """A 20M-parameter Llama, rows of 512 tokens (2 prompts of 480 tokens x 8 completions of 32): the
    bytes autograd keeps for the backward of one training micro-step (saved-tensor hooks, each
    storage once) with activation checkpointing are at most a third of those without. (Before,
    checkpointing turned the shared-prompt forward off and kept more than without it.)"""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=259, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).train()
    assert 18e6 < sum(p.numel() for p in model.parameters()) < 25e6
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 256, (480,), generator=gen).tolist() for _ in range(2)]
    rows = [
        Row(p, torch.randint(3, 256, (32,), generator=gen).tolist(), "rl", "d", 1.0) for p in prompts for _ in range(8)
    ]
    mb = collate(rows, 0)

    def saved_bytes(checkpointed: bool) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logp = token_logprobs(model, mb, share_prefix=True, checkpointed=checkpointed)
        (logp * mb.completion_mask).sum().backward()
        return sum(storages.values())

    without, with_checkpointing = saved_bytes(False), saved_bytes(True)
    assert with_checkpointing <= without / 3, (with_checkpointing, without)


def _logprob_gap(model, tok, rollout_bf16: bool, training_bf16: bool) -> torch.Tensor:
    """Training log-probs minus the rollout's, at every sampled completion token (32 rows, 24 tokens)."""
    ids = [tok(p)["input_ids"] for p in PROMPTS] * 8
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=rollout_bf16):
        ro = sample(
            model,
            ids,
            max_new_tokens=24,
            eos_id=tok.eos_token_id,
            pad_id=tok.pad_token_id,
            generator=torch.Generator().manual_seed(0),
        )
    rows = [Row(p, c[m.bool()].tolist(), "rl", "d", 1.0) for p, c, m in zip(ids, ro.completion_ids, ro.completion_mask)]
    mb = collate(rows, tok.pad_token_id)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=training_bf16), torch.no_grad():
        logp = token_logprobs(model, mb)
    assert logp.dtype == torch.float32  # the log-softmax and everything after it run in fp32 under autocast
    return (logp - ro.logprobs[:, : mb.n_completion])[mb.completion_mask.bool()]


def test_rollout_and_training_logprobs_agree_under_bf16(tiny_random_lm_dir):
    """training.bf16 runs rollouts and the training forward under the same autocast, so the
    importance ratio exp(logp_train - logp_rollout) of every sampled token stays within 0.01 of 1
    (PPO clips at 0.2) and the mean |gap| below 1e-4 (measured: 2.8e-5, max 1e-3 over 733 tokens).
    The bound has power: a bf16 rollout scored by an fp32 forward misses it (measured: 2.8e-4)."""
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    gap = _logprob_gap(model, tok, rollout_bf16=True, training_bf16=True)
    assert gap.numel() > 200
    assert (gap.exp() - 1).abs().max() < 0.01
    assert gap.abs().mean() < 1e-4
    mixed = _logprob_gap(model, tok, rollout_bf16=True, training_bf16=False)
    assert mixed.abs().mean() > 1e-4


def test_a_prompt_longer_than_the_model_positions_is_one_clear_error_before_decoding():
    from transformers import GPT2Config, GPT2LMHeadModel

    from spectrum_rl.errors import SpectrumError

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    args = dict(max_new_tokens=8, eos_id=1, pad_id=0)
    assert sample(model, [[5] * 8], **args).completion_ids.shape[0] == 1  # 8 + 8 fits in 16 positions
    with pytest.raises(
        SpectrumError, match="a prompt of 12 tokens plus max_new_tokens 8 is longer than the model's 16"
    ):
        sample(model, [[5] * 12, [6] * 3], **args)  # learned positions: an IndexError deep in torch otherwise


def test_a_row_ends_at_any_end_token_the_generation_config_lists():
    from types import SimpleNamespace

    from transformers import GPT2Config, GPT2LMHeadModel

    from spectrum_rl.models import end_token_ids

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=12, n_embd=16, n_layer=1, n_head=2, n_positions=64))

    def run(eos) -> object:
        seeded = torch.Generator().manual_seed(0)
        return sample(model, [[5, 6, 7]] * 16, max_new_tokens=20, eos_id=eos, pad_id=0, generator=seeded)

    free = run(11)
    row = next(r for r in range(16) if free.completion_ids[r, 0] != 11)
    turn_end = int(free.completion_ids[row, 0])  # a token the model does emit: say it ends a chat turn
    model.generation_config.eos_token_id = [11, turn_end]  # as Gemma's lists <eos> and <end_of_turn>
    ids = end_token_ids(model, SimpleNamespace(eos_token_id=11))
    assert ids == [11, turn_end]
    ro = run(ids)
    assert ro.completion_mask[row].sum() == 1 and ro.finished[row]  # ended on the turn's end, not 20 tokens on
    for tokens, mask in zip(ro.completion_ids, ro.completion_mask):
        assert all(t not in ids for t in tokens[mask.bool()].tolist()[:-1])  # nothing decoded past an end token
