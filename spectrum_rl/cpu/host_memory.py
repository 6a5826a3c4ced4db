"""Reuse of freed host memory for CPU training (glibc ``mallopt``).

Performance only: no result changes. Process-wide, so only the `train` and `study` commands apply
it (``cli.py``), never a Trainer built as a library. Turn it off with
``training.reuse_host_memory: false``.

PyTorch's CPU tensors come from glibc ``malloc``. glibc serves blocks above its mmap threshold
(128 KiB at start, raised as blocks are freed) with fresh pages from the kernel, and hands free
memory at the top of the heap back to the kernel once it exceeds the trim threshold. A training
step frees its activations and the next step allocates them again, so every step page-faults them
back in (counts in docs/performance.md). Pinning the mmap threshold at glibc's maximum (32 MiB on
64-bit) and trimming only above 1 GiB lets each step reuse the pages the previous one freed, the same reason
CPU tuning guides for PyTorch recommend jemalloc or tcmalloc. The cost: resident memory stays at
its high-water mark instead of shrinking between steps (peak RSS is unchanged).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit: 4 * 1024 * 1024 * sizeof(long)
TRIM_THRESHOLD = 1 << 30


def reuse_freed_memory() -> bool:
    """Keep freed blocks below 32 MiB in the process heap for reuse (process-wide; glibc only).
    Returns False where the C library has no ``mallopt`` (macOS, Windows) or refuses the values."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
