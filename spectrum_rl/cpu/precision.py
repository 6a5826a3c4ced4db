"""Whether bf16 autocast pays on this CPU (``training.bf16: auto``).

A CPU multiplies bf16 matrices natively when it has bf16 units: Intel AMX (``amx_bf16``), AVX-512
BF16 (``avx512_bf16``: Intel Cooper Lake and Sapphire Rapids on, AMD Zen 4 on) or Arm's BF16
extension (``bf16``: Neoverse V1 on). Without them PyTorch widens bf16 to fp32 inside the product and
a bf16 step runs slower than an fp32 one. The CPU's flags decide where they can be read (Linux): the
same answer every run, which a study's seeds need (a product timed next to a busy neighbour can
say anything). Elsewhere a bf16 and an fp32 product are timed once per process at a decoder layer's
shape and bf16 is chosen when it runs at least ``NATIVE_SPEEDUP`` times the fp32 rate. The rates
measured on two CPUs are in docs/performance.md (``benchmarks/bench_vs_trl.py`` prints them).
"""

from __future__ import annotations

import functools
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from spectrum_rl.cpu.onednn import onednn_available

NATIVE_SPEEDUP = 1.3  # emulated bf16 runs below 1x fp32, native units well above (docs/performance.md)
SHAPE = (256, 512, 1408)  # rows x in x out: a 20M model's MLP layer over a short rollout batch


@dataclass(frozen=True)
class BF16Support:
    """What the CPU claims (``units``; None with ``flags_read``: none in its flags) and, where the
    flags could not be read, what a bf16 and an fp32 product measured here."""

    units: str | None  # "amx", "avx512_bf16", "arm_bf16" or None
    flags_read: bool  # whether the CPU's flags could be read (they decide)
    speedup: float | None = None  # bf16 / fp32 matmul rate at SHAPE, measured when the flags are unread

    @property
    def native(self) -> bool:
        """Whether bf16 autocast pays here."""
        return self.units is not None if self.flags_read else (self.speedup or 0.0) >= NATIVE_SPEEDUP

    def describe(self) -> str:
        if not self.flags_read:
            return f"no CPU flags to read; bf16 matmul measured at {self.speedup:.1f}x fp32"
        return {"amx": "AMX", "avx512_bf16": "AVX512-BF16", "arm_bf16": "Arm BF16", None: "no bf16 units"}[self.units]


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((ln.partition(":")[2].strip() for ln in text.splitlines() if ln.startswith("model name")), "")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``, with "_read" added; empty where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), None)
    return set() if line is None else set(line.partition(":")[2].split()) | {"_read"}


def bf16_units(flags: set[str]) -> str | None:
    """The CPU's bf16 matmul units as its flags name them: "amx", "avx512_bf16", "arm_bf16" or None."""
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "bf16" in flags and platform.machine().lower() in ("aarch64", "arm64"):
        return "arm_bf16"
    return None


def matmul_gflops(dtype: torch.dtype, shape: tuple[int, int, int] = SHAPE, seconds: float = 0.02) -> float:
    """The rate of ``x @ W^T`` (x [rows, in], W [out, in]) in ``dtype``: the best of 3 timed repeats,
    each at least ``seconds`` long; fp32 takes the faster of torch.mm and oneDNN (what the trainer runs)."""
    rows, n_in, n_out = shape
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(rows, n_in, generator=gen).to(dtype), torch.randn(n_out, n_in, generator=gen).to(dtype)
    kernels = [lambda: F.linear(x, w)]
    if dtype == torch.float32 and onednn_available():
        kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""))
    best = 0.0
    for kernel in kernels:
        kernel()  # warm-up: first-call dispatch and oneDNN's primitive cache
        for _ in range(3):
            runs, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds or runs < 2:
                kernel()
                runs += 1
            best = max(best, runs * 2 * rows * n_in * n_out / elapsed / 1e9)
    return best


@functools.cache
def cpu_bf16() -> BF16Support:
    """This CPU's bf16 support, once per process (flags; a 0.3 s measurement where there are none)."""
    flags = cpu_flags()
    if flags:
        return BF16Support(bf16_units(flags), flags_read=True)
    return BF16Support(None, flags_read=False, speedup=matmul_gflops(torch.bfloat16) / matmul_gflops(torch.float32))
