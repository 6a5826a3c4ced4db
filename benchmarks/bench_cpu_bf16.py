"""The CPU kernels behind `training.bf16`, fp32 against bf16 side by side at the 20M model's shapes.

- matmul ``x @ W^T`` (x [rows, 512], W [1408, 512]) at 64 rows (a decode step of 8 x 8 rollouts)
  and 3072 rows (a training micro-batch): fp32 with torch.mm's kernel (F.linear) and oneDNN's with
  a prepacked weight (what our rollouts run), bf16 with F.linear on bf16 tensors, oneDNN with a
  prepacked bf16 weight (our bf16 rollouts), and F.linear under autocast on an fp32 weight that
  does not require gradients (autocast casts it at every call);
- attention ``scaled_dot_product_attention`` (8 heads of 64): a decode step (64 rows, one query
  over 60 keys of a 96-long buffer, a boolean key mask) and a training pass (64 rows, 48 causal
  positions) forward, and that pass's forward + backward, in fp32 and in bf16.

Each figure is the best of 3 repeats of at least 0.2 s, ``--threads`` threads (default 2).

    python benchmarks/bench_cpu_bf16.py [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from spectrum_rl.cpu.precision import bf16_units, cpu_flags, cpu_name


def best_seconds(fn, seconds: float = 0.2) -> float:
    """The best per-call time over 3 repeats, each at least ``seconds`` long."""
    fn()
    best = float("inf")
    for _ in range(3):
        runs, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds or runs < 3:
            fn()
            runs += 1
        best = min(best, elapsed / runs)
    return best


def matmuls(rows: int) -> dict[str, float]:
    """GFLOP/s of each kernel for x [rows, 512] @ W^T, W [1408, 512]."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(rows, 512, generator=gen), torch.randn(1408, 512, generator=gen)
    xb, wb = x.bfloat16(), w.bfloat16()
    pointwise = torch.ops.mkldnn._linear_pointwise
    packed32 = torch.ops.mkldnn._reorder_linear_weight(w, rows)
    packed16 = torch.ops.mkldnn._reorder_linear_weight(wb, rows)

    def autocast_linear() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            F.linear(x, w)

    kernels = {
        "fp32 F.linear": lambda: F.linear(x, w),
        "fp32 oneDNN packed": lambda: pointwise(x, packed32, None, "none", [], ""),
        "bf16 F.linear": lambda: F.linear(xb, wb),
        "bf16 oneDNN packed": lambda: pointwise(xb, packed16, None, "none", [], ""),
        "autocast F.linear (fp32 weight)": autocast_linear,
    }
    flops = 2 * rows * 512 * 1408
    return {name: round(flops / best_seconds(fn) / 1e9, 1) for name, fn in kernels.items()}


def attention() -> dict[str, dict[str, float]]:
    """Milliseconds per call, fp32 and bf16, for the decode step and the training pass."""
    gen = torch.Generator().manual_seed(0)
    out: dict[str, dict[str, float]] = {}
    q1 = torch.randn(64, 8, 1, 64, generator=gen)
    kv = [torch.randn(64, 8, 96, 64, generator=gen)[:, :, :60] for _ in range(2)]  # views into a buffer
    key_mask = torch.ones(64, 1, 1, 60, dtype=torch.bool)
    qt, kt, vt = (torch.randn(64, 8, 48, 64, generator=gen) for _ in range(3))
    causal = torch.ones(48, 48, dtype=torch.bool).tril()
    for dtype in (torch.float32, torch.bfloat16):
        name = "fp32" if dtype == torch.float32 else "bf16"
        k, v = (t.to(dtype) for t in kv)
        q = q1.to(dtype)
        a, b, c = (t.to(dtype).requires_grad_() for t in (qt, kt, vt))

        def backward(a=a, b=b, c=c) -> None:
            F.scaled_dot_product_attention(a, b, c, attn_mask=causal).float().sum().backward()

        out[name] = {
            "decode step": round(
                1e3 * best_seconds(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)), 3
            ),
            "training forward": round(
                1e3
                * best_seconds(
                    lambda a=a, b=b, c=c: F.scaled_dot_product_attention(
                        a.detach(), b.detach(), c.detach(), attn_mask=causal
                    )
                ),
                3,
            ),
            "training forward + backward": round(1e3 * best_seconds(backward), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {
        "cpu": cpu_name(),
        "bf16_units": bf16_units(cpu_flags()),
        "threads": args.threads,
        "matmul_gflops": {rows: matmuls(rows) for rows in (64, 3072)},
        "attention_ms": attention(),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"CPU: {report['cpu']}; bf16 units: {report['bf16_units'] or 'none'}; {args.threads} threads")
    for rows, rates in report["matmul_gflops"].items():
        print(f"matmul {rows}x512 @ 512x1408, GFLOP/s: " + ", ".join(f"{k} {v}" for k, v in rates.items()))
    for part in ("decode step", "training forward", "training forward + backward"):
        fp32, bf16 = report["attention_ms"]["fp32"][part], report["attention_ms"]["bf16"][part]
        print(f"attention, {part}: fp32 {fp32} ms, bf16 {bf16} ms ({bf16 / fp32:.1f}x)")


if __name__ == "__main__":
    main()
