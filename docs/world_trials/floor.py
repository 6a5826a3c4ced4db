"""How much of world v2's start at lengths 3-6 is the shortcut being right by coincidence: on the
gates' prompts (48 per length, the same seed), the shipped builtin:ladder's greedy answers, how many
are right, how many of those are rows whose neighbouring letter (the shortcut) is the answer
(letters repeat: 1 row in 26), and how often the model says the neighbouring letter.

    PYTHONPATH=. python docs/world_trials/floor.py   # writes docs/world_trials/floor.json"""

import json
import random
from pathlib import Path

import torch

from spectrum_rl.bootstrap import ensure_builtin
from spectrum_rl.config import load_config
from spectrum_rl.domains import build_domains
from spectrum_rl.models import apply_prompt_format, load_causal_lm
from spectrum_rl.trainer.generation import complete

NEIGHBOUR = {"first_letter": 1, "last_letter": -2}  # the shortcut's position (bootstrap.shortcut_answer)


def main() -> None:
    torch.set_num_threads(1)
    config = load_config(Path("configs/curriculum.yaml"))
    domains = {d.name: d for d in build_domains(config, Path("configs"))}
    model, tok = load_causal_lm(str(ensure_builtin("ladder")))
    out = {}
    for name, at in NEIGHBOUR.items():
        out[name] = {}
        for level in range(3, 7):  # the seed gates.level_scores draws each level's prompts with
            rows = domains[name].sample(48, random.Random(f"0-{name}-{level}"), levels=[level] * 48)
            text = [apply_prompt_format(tok, e.prompt, config.model.chat_template, e.system) for e in rows]
            greedy, _ = complete(model, tok, text, max_new_tokens=config.training.max_new_tokens)
            said = [g.strip() for g in greedy]
            payload = [e.prompt.split(": ", 1)[1].strip() for e in rows]
            coincide = [p[at] == e.answer for p, e in zip(payload, rows)]
            right = [s == e.answer for s, e in zip(said, rows)]
            out[name][level] = {
                "n": len(rows),
                "right": sum(right),
                "right_by_coincidence": sum(r and c for r, c in zip(right, coincide)),
                "rows_where_the_shortcut_is_right": sum(coincide),
                "says_the_shortcut": sum(s == p[at] for s, p in zip(said, payload)),
            }
            print(name, level, out[name][level], flush=True)
    Path("docs/world_trials/floor.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
