"""Linear layers on oneDNN for CPU rollouts and training (fp32; bf16 rollouts under autocast).

Performance only: results equal PyTorch's default kernels to float rounding. Turn it off with
``training.onednn_linear: false``.

PyTorch sends fp32 matrix products on the CPU to MKL, which runs its AVX2 code on AMD processors;
oneDNN, which ships inside PyTorch too, runs AVX-512 code there: the same IEEE fp32 arithmetic
in another summation order (results agree to float rounding; rates in docs/performance.md). Intel Extension for
PyTorch (``ipex.optimize``) swaps ``nn.Linear`` for oneDNN kernels for the same reason; here the
swap lasts one ``with OneDNNLinear(model):`` block (a rollout, an optimizer pass, an evaluation)
and the model is as it was after it.

For ``y = x W^T + b`` with x [M, K] (leading dimensions flattened), W [N, K]:
    forward:   y  = onednn(x, W) + b
    backward:  dx = onednn(dy, W^T)        (W^T [K, N] as a transposed view: no copy)
               dW = onednn(dy^T, x^T)      ([N, M] x [K, M]^T, transposed views)
               db = sum_M dy
Without gradients (rollouts, evaluation) each weight is prepacked into oneDNN's blocked layout once
per block and reused by every decode token (460 vs 390 GFLOP/s at 64 rows); that holds one extra
copy of the weights for the block. Weights do not change inside a block (a rollout, an evaluation);
a packed weight is keyed by tensor version too, but the optimizer's fused step does not bump
versions, so a block's packs are dropped when it ends.

Under bf16 autocast (``training.bf16``) a rollout's layers run the same way on bf16: each weight
is cast and packed once per block instead of cast by autocast at every token (rates in
benchmarks/README.md); a pass with gradients keeps autocast's own path, whose weight casts are
cached within the pass.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@functools.cache
def onednn_available() -> bool:
    """Whether this PyTorch build has oneDNN's linear kernel and it agrees with ``F.linear``."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=gen) for s in ((5, 3, 16), (24, 16), (24,)))
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 15)
        with torch.autocast("cpu", enabled=False):  # first asked inside a bf16 block: compare in fp32
            want = F.linear(x, w, b)
        return all(torch.allclose(y, want, rtol=1e-5, atol=1e-5) for y in (_onednn(x, w, b), _onednn(x, packed, b)))
    except (RuntimeError, AttributeError):
        return False


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1]).contiguous()  # [M, N]
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _onednn(dy2, weight.t()).view(*dy.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:
            x2 = x.reshape(-1, x.shape[-1])  # [M, K]
            dw = _onednn(dy2.t(), x2.t())  # [N, K] (strided views)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)
        return dx, dw, db


class OneDNNLinear:
    """Inside ``with OneDNNLinear(model, ...):`` every ``torch.nn.Linear`` of the models (exact type: LoRA's
    wrappers keep their own forward and reach the plain layers inside) runs fp32 CPU inputs on oneDNN,
    forward and backward; anything else goes to ``F.linear``. Scope a block to a span in which the
    weights do not change (a rollout, one optimizer pass)."""

    def __init__(self, *models) -> None:
        self.layers = [
            m for model in models if model is not None for m in model.modules() if type(m) is torch.nn.Linear
        ]
        self._packed: dict[
            tuple[int, torch.dtype], tuple[torch.Tensor, int, torch.Tensor]
        ] = {}  # -> (weight, version, pack)

    def __enter__(self) -> OneDNNLinear:
        for layer in self.layers:  # an instance attribute shadows nn.Linear.forward; hooks still run
            layer.forward = functools.partial(self.linear, layer)
        return self

    def __exit__(self, *exc) -> None:
        for layer in self.layers:
            layer.__dict__.pop("forward", None)
        self._packed.clear()

    def packed(self, weight: torch.Tensor, rows: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``weight`` in ``dtype`` and oneDNN's layout (``rows``: the expected batch rows), packed once per block."""
        key = (id(weight), dtype)
        hit = self._packed.get(key)
        if hit is None or hit[0] is not weight or hit[1] != weight._version:
            pack = torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(dtype), rows)
            hit = (weight, weight._version, pack)
            self._packed[key] = hit
        return hit[2]

    def linear(self, layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        weight, bias = layer.weight, layer.bias
        autocast = torch.is_autocast_enabled("cpu")
        if not (
            weight.dtype == torch.float32
            and x.dtype in ((torch.float32, torch.bfloat16) if autocast else (torch.float32,))
            and x.device.type == weight.device.type == "cpu"
            and x.numel()
        ):
            return F.linear(x, weight, bias)
        grad = torch.is_grad_enabled() and (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
        )
        rows = x.numel() // x.shape[-1]
        if autocast:
            if grad or torch.get_autocast_dtype("cpu") != torch.bfloat16:
                return F.linear(x, weight, bias)  # autocast's own path (its weight casts are cached)
            # a bf16 rollout: the weight cast and packed once per block, not cast again at every token
            x = x.to(torch.bfloat16).contiguous()
            return _onednn(x, self.packed(weight, rows, torch.bfloat16), None if bias is None else bias.bfloat16())
        x = x.contiguous()
        if grad:
            return _Linear.apply(x, weight, bias)
        return _onednn(x, self.packed(weight, rows), bias)  # reused by every decode token


def onednn_linear(enabled: bool | str, device: torch.device, *models) -> contextlib.AbstractContextManager:
    """A fresh ``OneDNNLinear`` block over ``models`` when ``enabled`` (True, or "auto": on a CPU device)
    and this build has a working oneDNN, else a no-op context."""
    if enabled == "auto":
        enabled = device.type == "cpu"
    return OneDNNLinear(*models) if enabled and onednn_available() else contextlib.nullcontext()
