"""CPU speed-ups. Performance only: each gives the same results (to float rounding) as running
without it, and each has a setting that turns it off.

- onednn.py: fp32 linear layers on oneDNN's AVX-512 kernels instead of MKL's AVX2 ones on AMD
  CPUs (rollouts, training forward and backward, evaluation). Off: ``training.onednn_linear: false``.
- host_memory.py: glibc keeps freed blocks for reuse so each step does not page-fault its
  activations in again. Process-wide, so only the `train` and `study` commands apply it, never
  a Trainer built as a library. Off: ``training.reuse_host_memory: false``.

Measurements: benchmarks/README.md and docs/performance.md.
"""
