"""Does training one letter ladder move the other? World v3's G3 runs (each ladder's length 2
trained alone for the budget) scored on both ladders, every length, against the start model:
greedy on the gates' 48 prompts per length (seed 0).

    spectrum-rl gates configs/curriculum_v3.yaml --output-dir /tmp/gv3
    PYTHONPATH=. python docs/world_trials/cross.py /tmp/gv3   # writes docs/world_trials/cross-v3.json"""

import json
import sys
from pathlib import Path

import torch

from spectrum_rl.config import load_config
from spectrum_rl.domains import build_domains
from spectrum_rl.models import load_causal_lm
from spectrum_rl.study.gates import level_scores

LADDERS = ("first_letter", "last_letter")


def main(gates_dir: Path) -> None:
    torch.set_num_threads(2)
    config = load_config(Path("configs/curriculum_v3.yaml"))
    domains = {d.name: d for d in build_domains(config, Path("configs"))}
    models = {"start": config.model.name_or_path} | {
        f"{n} length 2 trained": str(gates_dir / f"ladder-{n}" / "final") for n in LADDERS
    }
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
    Path("docs/world_trials/cross-v3.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
