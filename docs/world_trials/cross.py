"""Does training one letter ladder move the other? Models with one ladder's half-solved length
trained alone for the budget, scored on both ladders (distinct letters), every length, against the
start model: greedy on the gates' 48 prompts per length (seed 0).

    spectrum-rl gates configs/curriculum_v3.yaml --output-dir /tmp/gv3
    PYTHONPATH=. python docs/world_trials/cross.py cross-v3 builtin:ladder_v3 \
        /tmp/gv3/ladder-first_letter/final /tmp/gv3/ladder-last_letter/final

writes docs/world_trials/NAME.json; a trial's models (trials.py) are scored the same way, e.g.
cross.py alpha-s0 /tmp/worlds/alpha-s0/model /tmp/worlds/alpha-s0/train-first_distinct-2/final ..."""

import json
import sys
from pathlib import Path

import torch

from spectrum_rl.config import load_config
from spectrum_rl.domains import build_domains
from spectrum_rl.models import load_causal_lm
from spectrum_rl.study.gates import level_scores

LADDERS = ("first_letter", "last_letter")


def main(name: str, start: str, first_trained: str, last_trained: str) -> None:
    torch.set_num_threads(2)
    config = load_config(Path("configs/curriculum_v3.yaml"))
    domains = {d.name: d for d in build_domains(config, Path("configs"))}
    models = {"start": start, "first_letter trained": first_trained, "last_letter trained": last_trained}
    out = {}
    for tag, path in models.items():
        model, tokenizer = load_causal_lm(path)
        out[tag] = {
            n: {
                lvl: s["greedy"]
                for lvl, s in level_scores(model, tokenizer, config, domains[n], prompts=48, samples=1, seed=0).items()
            }
            for n in LADDERS
        }
        print(tag, out[tag], flush=True)
    Path(f"docs/world_trials/{name}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])
