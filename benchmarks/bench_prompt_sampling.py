"""Prompt-level curriculum on a finite pool: how many rollout groups carry no learning signal
(every rollout scored the same: ``frac_reward_zero_std``) with ``sampling: uniform`` and with
``sampling: pass_rate``, on the same pool, model, budget and seeds.

The pool: ``--pool`` (default 150) `sorting` prompts of lengths 2-6 from the built-in generator (the built-in model
was pretrained at one length only, so some prompts it always solves, many it never does, a few
in between). GRPO, RL only, the built-in tiny model, 8 prompts x 8 completions per step.

    python benchmarks/bench_prompt_sampling.py [--steps 120] [--seeds 3] [--pool 150]

Prints, per seed and arm, the mean over steps of frac_reward_zero_std and the last held-out score,
then the per-seed difference (pass_rate - uniform) with its 95% Student-t interval.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import yaml

from spectrum_rl.analysis.stats import paired_diff
from spectrum_rl.bootstrap import ensure_builtin
from spectrum_rl.config import load_config
from spectrum_rl.domains import build_domains
from spectrum_rl.sources.builtin import GENERATORS
from spectrum_rl.trainer.checkpoint import read_jsonl
from spectrum_rl.trainer.loop import Trainer


def make_pool(path: Path, size: int) -> None:
    rng = random.Random(0)
    sorting = GENERATORS.get("sorting")
    rows = [sorting.make(rng, length=rng.randint(2, 6)) for _ in range(size)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(tmp: Path, sampling: str, seed: int, steps: int) -> tuple[float, float]:
    out = tmp / f"{sampling}-{seed}"
    cfg = {
        "run": {"name": out.name, "output_dir": str(out), "seed": seed},
        "model": {"name_or_path": "builtin:tiny"},
        "domains": [
            {
                "name": "pool",
                "kind": "structured",
                "source": {"type": "file", "path": str(tmp / "pool.jsonl")},
                "eval": {"size": 50},
                "sampling": sampling,
                "reward": [{"type": "exact_match"}],
            }
        ],
        "training": {
            "steps": steps,
            "prompts_per_step": 8,
            "group_size": 8,
            "max_new_tokens": 16,
            "learning_rate": 1e-4,
            "save_every": 0,
        },
        "eval": {"every": steps, "max_new_tokens": 16},
        "logging": {"progress": False},
    }
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    Trainer(config, build_domains(config, tmp), out).train()
    metrics = read_jsonl(out / "metrics.jsonl")
    zero = sum(m["frac_reward_zero_std"] for m in metrics) / len(metrics)
    return zero, read_jsonl(out / "eval.jsonl")[-1]["eval/mean"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=150)
    args = parser.parse_args()
    ensure_builtin("tiny")
    tmp = Path(tempfile.mkdtemp())
    make_pool(tmp / "pool.jsonl", args.pool)
    results = {s: [run(tmp, s, seed, args.steps) for seed in range(args.seeds)] for s in ("uniform", "pass_rate")}
    for s, rows in results.items():
        for seed, (zero, score) in enumerate(rows):
            print(f"{s:9s} seed {seed}: zero-variance groups {zero:.3f}, held-out {score:.3f}")
    diff = paired_diff([r[0] for r in results["pass_rate"]], [r[0] for r in results["uniform"]])
    d = diff.to_dict()
    print(
        f"pass_rate - uniform, zero-variance share: {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], "
        f"n={d['n']} ({d['method']})"
    )


if __name__ == "__main__":
    main()
