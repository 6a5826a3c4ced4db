#!/usr/bin/env bash
# GPU smoke test (never part of CI): bf16 training steps on CUDA and, when vLLM is installed, a
# vLLM rollout checked against ours; then sharded (FSDP) training under accelerate launch. Under five minutes on one GPU, built-in tiny model included.
#   bash benchmarks/gpu_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
timeout 300 python3 benchmarks/gpu_smoke.py "$@"
# sharded training (FSDP2) through accelerate's launcher, one process
timeout 300 accelerate launch --config_file configs/accelerate/fsdp.yaml benchmarks/gpu_smoke.py --fsdp "$@"
