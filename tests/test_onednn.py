"""fp32 CPU linear layers on oneDNN (cpu/onednn.py): the same outputs, gradients, rollouts and
losses as PyTorch's default kernels to float rounding, and the model as it was after a block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spectrum_rl.cpu.onednn import OneDNNLinear, onednn_available, onednn_linear

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no working oneDNN")


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return bool((a - b).abs().max() <= rel * b.abs().max())


@pytest.mark.parametrize("shape", [(7, 16), (3, 5, 16)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_the_default_kernels(shape, bias):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 24, bias=bias)
    x = torch.randn(*shape, requires_grad=True)
    want = layer(x)
    want_grads = torch.autograd.grad(want.square().sum(), [x, *layer.parameters()])
    with OneDNNLinear(layer):
        got = layer(x)
        got_grads = torch.autograd.grad(got.square().sum(), [x, *layer.parameters()])
    assert got.shape == want.shape and close(got, want)
    assert all(close(g, w) for g, w in zip(got_grads, want_grads))
    assert "forward" not in layer.__dict__  # the model is as it was


def test_no_grad_uses_a_packed_weight_and_sees_in_place_changes():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 24)
    x = torch.randn(4, 16)
    with torch.no_grad(), OneDNNLinear(layer) as block:
        assert close(layer(x), F.linear(x, layer.weight, layer.bias))
        assert close(layer(x[:1]), F.linear(x[:1], layer.weight, layer.bias))  # another row count, same pack
        layer.weight.mul_(2)  # bumps the version: the packed copy is stale
        assert close(layer(x), F.linear(x, layer.weight, layer.bias))
        assert len(block._packed) == 1


def test_frozen_weights_get_no_gradient_and_other_dtypes_fall_back():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8).requires_grad_(False)
    x = torch.randn(5, 16, requires_grad=True)
    with OneDNNLinear(layer):
        y = layer(x)
        (dx,) = torch.autograd.grad(y.sum(), [x])
        half = layer.to(torch.bfloat16)(x.detach().bfloat16())
    assert close(dx, layer.weight.float().sum(0).expand(5, -1), rel=1e-2)
    assert half.dtype == torch.bfloat16 and layer.weight.grad is None


def test_onednn_linear_is_a_no_op_when_off_or_on_a_gpu():
    layer = torch.nn.Linear(4, 4)
    for enabled, device in ((False, "cpu"), ("auto", "cuda"), (True, "cpu")):
        with onednn_linear(enabled, torch.device(device), layer):
            patched = "forward" in layer.__dict__
        assert patched == (enabled is True)


def test_rollouts_and_the_training_loss_match_the_default_kernels(tiny_random_lm_dir):
    from spectrum_rl.models import load_causal_lm
    from spectrum_rl.trainer.batch import Row, micro_batches
    from spectrum_rl.trainer.logprobs import token_logprobs
    from spectrum_rl.trainer.rollout import sample

    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    prompts = [tok(p)["input_ids"] for p in ("sort: dcba\n", "add: 12+34\n") for _ in range(4)]

    def rollout(temperature: float):
        return sample(
            model,
            prompts,
            max_new_tokens=12,
            eos_id=tok.eos_token_id,
            pad_id=tok.pad_token_id,
            temperature=temperature,
            generator=torch.Generator().manual_seed(0),
        )

    def loss_and_grads(ro):
        rows = [
            Row(p, c[m.bool()].tolist(), "rl", "d", 1.0, float(i % 3) - 1)
            for i, (p, c, m) in enumerate(zip(prompts, ro.completion_ids, ro.completion_mask))
        ]
        model.zero_grad(set_to_none=True)
        total = 0.0
        for mb in micro_batches(rows, size=3, pad_id=tok.pad_token_id):
            logp = token_logprobs(model, mb)
            loss = -(logp * mb.advantage[:, None] * mb.completion_mask).sum()
            loss.backward()
            total += float(loss.detach())
        return total, [p.grad.clone() for p in model.parameters()]

    for temperature in (0.0, 1.0):
        plain = rollout(temperature)
        with OneDNNLinear(model):
            fast = rollout(temperature)
        assert torch.equal(fast.completion_ids, plain.completion_ids)  # same greedy and same seeded samples
        assert torch.allclose(fast.logprobs, plain.logprobs, rtol=0, atol=1e-5)
    want, want_grads = loss_and_grads(plain)
    with OneDNNLinear(model):
        got, got_grads = loss_and_grads(plain)
    assert got == pytest.approx(want, rel=1e-5)
    assert all(close(g, w, rel=1e-4) for g, w in zip(got_grads, want_grads))
