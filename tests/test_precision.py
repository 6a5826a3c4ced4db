"""training.bf16: auto decides by the CPU's bf16 units (cpu/precision.py); a bf16 run keeps fp32
master weights and optimizer state."""

from __future__ import annotations

import pytest
import torch

from spectrum_rl.cpu import precision
from spectrum_rl.cpu.precision import BF16Support, bf16_units
from spectrum_rl.trainer import setup
from spectrum_rl.trainer.setup import resolve_bf16
from tests.test_trainer import make_trainer, write_config


@pytest.mark.parametrize(
    "flags, units",
    [
        ({"avx512f", "amx_bf16", "avx512_bf16"}, "amx"),
        ({"avx512f", "avx512_bf16"}, "avx512_bf16"),  # AMD Zen 4, Intel Cooper Lake
        ({"avx2", "avx512f"}, None),  # AVX-512 without bf16 units: fp32 is the fast path
        (set(), None),
    ],
)
def test_bf16_units_from_the_cpu_flags(flags, units):
    assert bf16_units(flags) == units


def test_flags_decide_where_read_and_a_measurement_elsewhere():
    assert BF16Support("amx", flags_read=True).native
    assert not BF16Support(None, flags_read=True).native
    assert BF16Support(None, flags_read=False, speedup=2.0).native
    assert not BF16Support(None, flags_read=False, speedup=0.6).native  # emulated bf16: slower than fp32


def test_auto_is_on_for_cuda_and_for_a_cpu_with_bf16_units(monkeypatch):
    monkeypatch.setattr(setup, "cpu_bf16", lambda: BF16Support("avx512_bf16", flags_read=True))
    assert resolve_bf16("auto", cuda=False)[0]
    assert "AVX512-BF16" in resolve_bf16("auto", cuda=False)[1]
    monkeypatch.setattr(setup, "cpu_bf16", lambda: BF16Support(None, flags_read=True))
    on, why = resolve_bf16("auto", cuda=False)
    assert not on and "no bf16 units" in why
    assert resolve_bf16("auto", cuda=True)[0]
    assert resolve_bf16(True, cuda=False) == (True, "bf16 autocast (training.bf16: true)")
    assert not resolve_bf16(False, cuda=True)[0]


def test_the_measured_rates_are_positive_and_the_cached_answer_is_reused():
    assert precision.matmul_gflops(torch.float32, (16, 32, 32), seconds=0.001) > 0
    assert precision.cpu_bf16() is precision.cpu_bf16()


@pytest.mark.parametrize("units", ["amx", None])
def test_a_run_under_auto_trains_in_the_precision_the_cpu_decides(monkeypatch, tmp_path, tiny_random_lm_dir, units):
    """With bf16 units the run's accelerator autocasts to bf16 and a step still updates fp32
    weights with fp32 AdamW state; without them the run is fp32 throughout."""
    monkeypatch.setattr(setup, "cpu_bf16", lambda: BF16Support(units, flags_read=True))
    trainer = make_trainer(write_config(tmp_path, tiny_random_lm_dir, {"steps": 1}))
    assert trainer.state.acc.mixed_precision == ("bf16" if units else "no")
    assert ("bf16 autocast" if units else "fp32") in trainer.state.precision
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    trainer.train_step()
    params = list(trainer.policy.parameters())
    assert all(p.dtype == torch.float32 for p in params)
    assert any(not torch.equal(a, p) for a, p in zip(before, params))
    state = trainer.state.optimizer.state
    assert state and all(s["exp_avg"].dtype == torch.float32 for s in state.values())


def test_attention_runs_in_fp32_on_a_cpu_under_autocast():
    """cpu/attention.py: the CPU's bf16 attention kernel is slower than its fp32 one, so under
    autocast the attention is computed in fp32 (equal to the fp32 result), the rest in bf16."""
    from spectrum_rl.cpu.attention import kv_dtype, sdpa

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=gen) for _ in range(3))
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sdpa(q, k.bfloat16(), v.bfloat16(), mask, None, False)
        assert kv_dtype(k.device, torch.bfloat16) == torch.float32
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, atol=0.05)  # only K and V's bf16 rounding differs
    assert kv_dtype(k.device, torch.bfloat16) == torch.bfloat16  # without autocast: the keys' own dtype


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this PyTorch build")
def test_onednn_is_found_when_first_asked_inside_a_bf16_block_and_runs_bf16_rollouts():
    """The oneDNN check compares in fp32 even when first called inside a bf16 block (compared in bf16
    it fails and turns the kernels off for the whole process); a bf16 rollout's linear layers run
    on prepacked bf16 weights with autocast's result (to bf16 rounding)."""
    from spectrum_rl.cpu.onednn import OneDNNLinear, onednn_available

    onednn_available.cache_clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert onednn_available()
    layer = torch.nn.Linear(16, 24)
    x = torch.randn(3, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        want = layer(x)
        with OneDNNLinear(layer) as block:
            got = layer(x)
            assert len(block._packed) == 1 and next(iter(block._packed))[1] == torch.bfloat16
    assert got.dtype == want.dtype == torch.bfloat16
    assert torch.allclose(got.float(), want.float(), atol=0.03)


def test_the_models_own_attention_runs_in_fp32_inside_the_block(monkeypatch, tiny_random_lm_dir):
    """Architectures our decoders do not run (and DDP) use the model's own forward: inside a
    `hf_attention_fp32` block transformers' sdpa attention gets fp32 inputs under CPU autocast;
    outside it, bf16; the mapping is restored after the block."""
    from transformers.modeling_utils import AttentionInterface

    from spectrum_rl.cpu.attention import hf_attention_fp32
    from spectrum_rl.models import load_causal_lm

    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    model.config._attn_implementation = "sdpa"
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):  # what the op will compute in: autocast casts inside it
        seen.append(torch.bfloat16 if torch.is_autocast_enabled("cpu") else {q.dtype, k.dtype, v.dtype})
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    ids = torch.tensor([tok("sort: dcba\n")["input_ids"]])
    original = AttentionInterface._global_mapping["sdpa"]
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        with hf_attention_fp32():
            inside = model(input_ids=ids).logits
        n = len(seen)
        outside = model(input_ids=ids).logits
    assert n > 0 and all(d == {torch.float32} for d in seen[:n]) and set(seen[n:]) == {torch.bfloat16}
    assert AttentionInterface._global_mapping["sdpa"] is original
    assert torch.allclose(inside.float(), outside.float(), atol=0.1)
