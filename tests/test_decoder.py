"""The static-cache decoder gives the tokens of the model's own KV cache (same seed), and its
log-probs to float rounding: bitwise for Llama with as many K/V heads as heads (the built-in
model's layout), ~1e-7 where HF's attention takes another kernel path (GQA) or PEFT wraps layers.
The fixed-shape decoder (the step CUDA graphs capture, run eagerly here) gives the static
decoder's tokens, whatever ran in its buffers before."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

from spectrum_rl.models import byte_tokenizer, unwrap_model
from spectrum_rl.trainer.decoder import _BUCKETS, GraphDecoder, HFDecoder, StaticDecoder, make_decoder
from spectrum_rl.trainer.rollout import sample

PROMPTS = ["sort: dcba\n", "add: 12+34\n", "x", "reverse: abcdefg\n"]
SMALL = dict(
    vocab_size=259,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    pad_token_id=256,
    bos_token_id=257,
    eos_token_id=258,
)


def tiny(config_cls, **kw):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config_cls(**SMALL, **kw), attn_implementation="sdpa").eval()


ARCHITECTURES = {
    "llama": lambda: tiny(LlamaConfig, num_attention_heads=4, num_key_value_heads=4),
    "llama_gqa": lambda: tiny(LlamaConfig, num_attention_heads=4, num_key_value_heads=2),
    "qwen2_bias": lambda: tiny(Qwen2Config, num_attention_heads=4, num_key_value_heads=2),
    "mistral": lambda: tiny(MistralConfig, num_attention_heads=4, num_key_value_heads=1, sliding_window=None),
}


def same(fast, plain, bitwise: bool) -> None:
    assert torch.equal(fast.completion_ids, plain.completion_ids)
    assert torch.equal(fast.completion_mask, plain.completion_mask) and torch.equal(fast.finished, plain.finished)
    if bitwise:
        assert torch.equal(fast.logprobs, plain.logprobs)
    else:
        assert torch.allclose(fast.logprobs, plain.logprobs, rtol=0, atol=1e-5)


def rollout(model, temperature, prompts=PROMPTS, **kw):
    tok = byte_tokenizer()
    ids = [tok(p)["input_ids"] for p in prompts for _ in range(3)]  # groups of 3 rows share a prompt
    return sample(
        model,
        ids,
        max_new_tokens=16,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        temperature=temperature,
        generator=torch.Generator().manual_seed(0),
        **kw,
    )


def both(model, temperature, **kw):
    return [rollout(model, temperature, static_cache=static, graphs=False, **kw) for static in (True, False)]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_static_cache_gives_bitwise_the_same_rollouts(arch, temperature):
    model = ARCHITECTURES[arch]()
    assert isinstance(make_decoder(model, 64), StaticDecoder)
    same(*both(model, temperature), bitwise=arch == "llama")


def test_static_cache_with_stop_strings_and_top_p():
    model = ARCHITECTURES["llama_gqa"]()
    stop = [list(b"a"), list(b"\n\n")]
    fast, plain = both(model, 1.0, top_p=0.9, stop=stop)
    assert fast.finished.any()  # some rows did stop
    same(fast, plain, bitwise=False)


def test_static_cache_through_a_lora_wrapper():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(ARCHITECTURES["llama"](), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"]))
    for name, p in model.named_parameters():  # non-zero LoRA B, so the adapters change the logits
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    assert isinstance(make_decoder(model, 64), StaticDecoder)
    same(*both(model, 1.0), bitwise=False)


def test_other_models_use_their_own_cache():
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=259, n_embd=32, n_layer=1, n_head=2))
    eager = AutoModelForCausalLM.from_config(LlamaConfig(**SMALL, num_attention_heads=4), attn_implementation="eager")
    windowed = ARCHITECTURES["mistral"]()
    windowed.config.sliding_window = 8
    for model in (gpt2, eager, windowed):
        assert isinstance(make_decoder(model, 64), HFDecoder)
    llama = ARCHITECTURES["llama"]()
    assert isinstance(make_decoder(llama, 64, static_cache=False), HFDecoder)
    assert isinstance(make_decoder(llama, 64, static_cache="auto"), StaticDecoder)  # on CPU


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_fixed_shape_decoder_gives_the_static_decoders_samples(arch):
    model = ARCHITECTURES[arch]()
    assert isinstance(make_decoder(model, 64, graphs=True), GraphDecoder)
    assert type(make_decoder(model, 64, graphs="auto")) is StaticDecoder  # graphs: CUDA only by default
    fixed, static = (rollout(model, 1.0, static_cache=True, graphs=g) for g in (True, False))
    same(fixed, static, bitwise=False)


def test_fixed_shape_decoder_keeps_one_bucket_across_batch_sizes_and_ignores_stale_buffers():
    model = ARCHITECTURES["llama_gqa"]()
    long_prompts = ["reverse: abcdefghijklmnop\n", "sort: zyxwvutsrqponm\n"]
    for prompts in (PROMPTS, long_prompts, PROMPTS[:3], long_prompts[:1] + PROMPTS[:2]):  # 12, 6, 9, 9 rows
        fixed, static = (rollout(model, 1.0, prompts, static_cache=True, graphs=g) for g in (True, False))
        same(fixed, static, bitwise=False)  # the longer prompts' K/V stay in the buffers, masked
    assert len(_BUCKETS[unwrap_model(model)]) == 1  # 16 rows, 64 positions: one shape for all four
    rollout(model, 1.0, PROMPTS * 2, static_cache=True, graphs=True)  # 24 rows: the next bucket
    assert len(_BUCKETS[unwrap_model(model)]) == 2


BF16_EQUAL_SHARE = 0.95  # bf16 rounds differently where the kernels differ; the seeded draws mostly agree


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("graphs", [True, False], ids=["fixed_shape", "static"])
def test_static_decoders_run_under_bf16_autocast_and_sample_as_the_models_own_cache(arch, graphs):
    """Under bf16 autocast on a CPU the K/V buffers are fp32 (attention runs in fp32 there:
    cpu/attention.py; on a GPU in the autocast dtype), one per (rows, length, dtype) bucket;
    sampling reads fp32 logits. The fixed-shape decoder used to fail here (index_copy_ of bf16
    values into fp32 buffers)."""
    model = ARCHITECTURES[arch]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = rollout(model, 1.0, static_cache=True, graphs=graphs)
        plain = rollout(model, 1.0, static_cache=False)
    assert fast.logprobs.dtype == torch.float32 and torch.isfinite(fast.logprobs).all()
    mask = plain.completion_mask.bool() & fast.completion_mask.bool()
    equal = (fast.completion_ids == plain.completion_ids)[mask].float().mean()
    assert equal >= BF16_EQUAL_SHARE, float(equal)
    if graphs:
        (key,) = [k for k in _BUCKETS[unwrap_model(model)] if k[2] is not None]  # made under autocast
        assert key[2] == torch.float32 and _BUCKETS[unwrap_model(model)][key].k[0].dtype == torch.float32


@pytest.mark.parametrize("ending", [3, 128, 259], ids=["late", "mixed", "at_once"])
def test_a_lagged_stop_check_gives_the_same_rollouts(ending):
    """On a GPU the decode loop reads "has every row ended?" a token late, so that the host never
    waits for the device inside the loop; the extra column is cut off: the same tokens, log-probs
    and lengths as the check at once (rows end at various steps through single-token stops)."""
    model = ARCHITECTURES["llama"]()
    stop = [[token] for token in range(ending)]
    now, late = (rollout(model, 1.0, static_cache=True, stop=stop, lagged_stop=lag) for lag in (False, True))
    same(late, now, bitwise=True)
    assert now.completion_ids.shape == late.completion_ids.shape
