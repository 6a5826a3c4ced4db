"""Pretraining seeds of a ladder recipe, side by side (docs/world.md, "A pretraining chosen by its
start"): pretrain recipe ``ladder`` with each seed, then score every level of each letter ladder
greedily on ``PROBE_PROMPTS`` probe prompts drawn with probe seed 1, not the gates' seed 0, so the
gates measure the chosen model on prompts the choice never saw.

    python docs/world_trials/seed_search.py SEED [SEED ...]

writes /tmp/worlds/seed-S/probe.json per seed (the JSON file beside this one gathers them)."""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from spectrum_rl.bootstrap import RECIPES, bootstrap
from spectrum_rl.config import Config
from spectrum_rl.domains import build_domains
from spectrum_rl.models import load_causal_lm
from spectrum_rl.study.gates import level_scores

PROBE_PROMPTS, PROBE_SEED = 96, 1
LADDERS = ("first_letter", "last_letter")


def main(seeds: list[int]) -> None:
    torch.set_num_threads(1)
    base = yaml.safe_load(Path("configs/curriculum.yaml").read_text())
    base.pop("study")
    config = Config.model_validate(base)
    domains = {d.name: d for d in build_domains(config, Path.cwd())}
    for seed in seeds:
        out = Path("/tmp/worlds") / f"seed-{seed}"
        start = time.time()
        # an existing folder is kept (seed 0: the shipped model, copied there)
        bootstrap(replace(RECIPES["ladder"], seed=seed), output=out / "model", progress=False, name=f"seed-{seed}")
        model, tokenizer = load_causal_lm(str(out / "model"))
        greedy = {
            n: {
                lvl: s["greedy"]
                for lvl, s in level_scores(
                    model, tokenizer, config, domains[n], prompts=PROBE_PROMPTS, samples=1, seed=PROBE_SEED
                ).items()
            }
            for n in LADDERS
        }
        record = {"seed": seed, "prompts": PROBE_PROMPTS, "probe_seed": PROBE_SEED, "greedy": greedy}
        record["pretrain_s"] = round(time.time() - start)
        (out / "probe.json").write_text(json.dumps(record, indent=1))
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]])
