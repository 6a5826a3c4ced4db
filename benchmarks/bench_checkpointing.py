"""Peak memory of `spectrum-rl train` with activation checkpointing on and off, on CPU, this tree
against an earlier revision, side by side in one run.

A 20M-parameter random Llama (hidden 512, 6 layers, the built-in byte tokenizer) trains 2 steps on
16 rows a step (by default 2 prompts of ~500 tokens x 8 completions of up to 32 tokens) in one micro-batch
(``micro_batch_tokens: 8192``; the CPU default of 1024 cuts it in two or more, and then the
rollout's K/V cache, not the training activations, sets the peak), RL only, fp32; the held-out
eval is 2 prompts. Each run is a fresh ``python -m spectrum_rl train`` process; its peak
resident memory is the kernel's ``ru_maxrss`` of that process (``os.wait4``), its time the wall
clock. Runs alternate (old off, old on, new off, new on, ...) so the sides share the machine's state.
The earlier revision's package is read from git (``--baseline-rev``) into a temporary folder and
put first on that process's ``PYTHONPATH``.

    python benchmarks/bench_checkpointing.py --baseline-rev REV   # --pairs N, --json, the shape: --help
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spectrum_rl.models import byte_tokenizer  # noqa: E402


def make_model(folder: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=259, hidden_size=512, intermediate_size=1408, num_hidden_layers=6, num_attention_heads=8,
        num_key_value_heads=8, max_position_embeddings=1024, pad_token_id=256, bos_token_id=257, eos_token_id=258,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)


def make_config(folder: Path, model: Path, checkpointing: bool, shape: argparse.Namespace) -> Path:
    rng = random.Random(0)
    rows = folder / "rows.jsonl"
    with rows.open("w") as f:
        for _ in range(40):
            letters = "".join(rng.choice("abcdefghij") for _ in range(480))
            row = {"question": f"count the a's in: {letters}\n", "answer": str(letters.count("a"))}
            f.write(json.dumps(row) + "\n")
    config = {
        "run": {"name": "ckpt", "output_dir": str(folder / "run"), "seed": 0},
        "model": {"name_or_path": str(model)},
        "domains": [
            {
                "name": "count",
                "kind": "structured",
                "source": {"type": "file", "path": str(rows)},
                "eval": {"size": 2},
                "reward": [{"type": "exact_match"}],
            }
        ],
        "training": {
            "steps": 2,
            "prompts_per_step": shape.prompts,
            "group_size": shape.group,
            "max_new_tokens": shape.max_new_tokens,
            "save_every": 0,
            "bf16": False,
            "micro_batch_tokens": shape.micro_batch_tokens,
            "gradient_checkpointing": checkpointing,
        },
        "eval": {"every": 1000, "max_new_tokens": 8},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(config: Path, pythonpath: str) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one `spectrum-rl train --overwrite` process, started from a
    process with no other children (``RUSAGE_CHILDREN`` keeps the largest child's peak)."""
    env = {**os.environ, "PYTHONPATH": pythonpath, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "spectrum_rl", "train", str(config), "--overwrite"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"train failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="runs per side and setting (default 2)")
    parser.add_argument("--baseline-rev", required=True, help="git revision of the old side")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step (default 2)")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--micro-batch-tokens", default="8192", help="training.micro_batch_tokens (default 8192: one micro-batch)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.micro_batch_tokens != "auto":
        args.micro_batch_tokens = int(args.micro_batch_tokens)
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_model(folder / "model")
        archive = subprocess.run(
            ["git", "archive", args.baseline_rev, "spectrum_rl"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder / "old", filter="data")
        sides = {"old": str(folder / "old"), "new": str(ROOT)}
        configs = {}
        for on in (False, True):
            (folder / f"cfg-{on}").mkdir()
            configs[on] = make_config(folder / f"cfg-{on}", folder / "model", on, args)
        for _ in range(args.pairs):
            for side, path in sides.items():
                for on in (False, True):
                    results.setdefault(f"{side} {'on' if on else 'off'}", []).append(_isolated(configs[on], path))
    report: dict = {}
    for key, values in results.items():
        peaks, seconds = zip(*values)
        report[key] = {"peak_mb": round(statistics.median(peaks), 1), "seconds": round(statistics.median(seconds), 1)}
    for side in ("old", "new"):
        report[f"{side} on/off"] = round(report[f"{side} on"]["peak_mb"] / report[f"{side} off"]["peak_mb"], 2)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"peak RSS of `spectrum-rl train` (median of {args.pairs}), old = {args.baseline_rev}, new = this tree:")
    for key, value in report.items():
        print(f"  {key:10s} {value}")


def _isolated(config: Path, pythonpath: str) -> tuple[float, float]:
    """``run`` in a helper process of its own, so that one run's peak does not carry over to the next."""
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import bench_checkpointing as b;"
        "from pathlib import Path; print(json.dumps(b.run(Path(sys.argv[2]), sys.argv[3])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(config), pythonpath],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, seconds = json.loads(out.stdout.splitlines()[-1])
    return peak, seconds


if __name__ == "__main__":
    main()
