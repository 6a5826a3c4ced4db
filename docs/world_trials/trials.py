"""The trials behind world v2 (docs/world.md): pretrain a ladder recipe, measure each level's start
pass rate (48 prompts x 4 samples at temperature 1) and greedy score, then for each ladder train
its easiest level below 0.8 alone (RL, configs/curriculum.yaml's budget) and measure every level
again. One seed: a trial picks a recipe, the gates (`spectrum-rl gates`) check the one chosen.
With ``"chain": true`` it then trains the rung above, from the model that learned the first, and
measures every level a third time; ``"pretrained": FOLDER`` starts from a model already pretrained.

    python docs/world_trials/trials.py '{"name": "graded", "ladders": {...}, "shortcut": {...}}'

writes /tmp/worlds/NAME/result.json (the JSON files beside this one)."""

import copy
import json
import sys
import time
from pathlib import Path

import torch
import yaml

import spectrum_rl.bootstrap as bootstrap_module
from spectrum_rl.bootstrap import BootstrapConfig, bootstrap
from spectrum_rl.config import Config, merge_config
from spectrum_rl.domains import build_domains
from spectrum_rl.models import load_causal_lm
from spectrum_rl.sources.builtin import GENERATORS, generator
from spectrum_rl.study.gates import _train, level_scores

# The letter ladders with distinct letters (their knob ``distinct: 1``) under names of their own, as
# the trials named them: same questions, same shortcut (bootstrap.shortcut_answer reads them as
# first_letter / last_letter).
SAME_QUESTION = {"first_distinct": "first_letter", "last_distinct": "last_letter"}
for _name, _of in SAME_QUESTION.items():
    generator(_name, "structured", {"length": 4}, {"length": (1, 26)}, pretrained=False)(
        lambda rng, length, of=_of: GENERATORS.get(of).make(rng, length=length, distinct=1)
    )


def _shortcut(name: str, question: str, decoy: bool = False, alphabet: bool = False):
    return SHORTCUT(SAME_QUESTION.get(name, name), question, decoy, alphabet)


SHORTCUT, bootstrap_module.shortcut_answer = bootstrap_module.shortcut_answer, _shortcut


def main(spec: dict) -> None:
    name, out = spec["name"], Path("/tmp/worlds") / spec["name"]
    torch.set_num_threads(spec.get("threads", 1))
    ladders = {g: tuple(v) for g, v in spec["ladders"].items()}
    recipe = BootstrapConfig(
        steps=spec.get("steps", 1000),
        seed=spec.get("seed", 0),  # the pretraining seed
        noise=0.0,
        ladders=ladders,
        shortcut={g: tuple(v) for g, v in spec.get("shortcut", {}).items()},
        per_letter={g: tuple(v) for g, v in spec.get("per_letter", {}).items()},  # the shortcut letter by letter
        model=spec.get("model", {}),  # overrides of the built-in network's size (models.tiny_config)
        decoy=tuple(spec.get("decoy", ())),
        alphabet=tuple(spec.get("alphabet", ())),  # the letter after the answer as the shortcut
    )
    start = time.time()
    model_dir = Path(spec.get("pretrained") or out / "model")  # a model already pretrained with this recipe
    if not spec.get("pretrained"):
        bootstrap(recipe, output=model_dir, progress=False, name=name)
    print(name, "pretrained in", round(time.time() - start), "s", flush=True)

    base = yaml.safe_load(Path(spec.get("config", "configs/curriculum.yaml")).read_text())  # its budget
    base.pop("study")
    base["model"]["name_or_path"] = str(model_dir)
    base["domains"] = [
        {
            "name": g,
            "kind": "structured",
            "source": {"type": "builtin", "generator": g, "difficulty": {knob: [lo, hi]}},
            "eval": {"size": 64},
            "reward": [{"type": "exact_match"}],
        }
        for g, (knob, lo, hi) in ladders.items()
    ]
    base["eval"]["every"] = 1000
    config = Config.model_validate(base)
    domains = {d.name: d for d in build_domains(config, Path.cwd())}
    model, tokenizer = load_causal_lm(str(model_dir))

    def scores(m, n: str) -> dict:
        # prompt_seed 1: probe prompts that are not the gates' (seed 0), to choose a pretraining by
        prompts, seed = spec.get("prompts", 48), spec.get("prompt_seed", 0)
        return level_scores(m, tokenizer, config, domains[n], prompts=prompts, samples=4, seed=seed)

    def show(tag: str, n: str, by_level: dict) -> None:
        rates = " ".join(f"{lvl}:{s['pass_rate']:.2f}/{s['greedy']:.2f}" for lvl, s in by_level.items())
        print(f"{name} {tag:>10} {n:<13} {rates}", flush=True)

    result = {"spec": spec, "start": {}, "after": {}}
    for n in ladders:
        result["start"][n] = scores(model, n)
        show("start", n, result["start"][n])
    for n in spec.get("train", ladders):  # the ladders to climb one rung of (default: every one)
        levels = result["start"][n]
        below = [lvl for lvl, s in levels.items() if s["pass_rate"] < 0.8 and lvl + 1 in levels]
        if not below:
            print(name, n, "no level below 0.8 with a harder one above it")
            continue
        k = spec.get("level", {}).get(n) or min(below)  # the rung to train: given, else the easiest below 0.8
        policy = {"type": "oracle_static", "weights": {m: float(m == n) for m in ladders}, "level_weights": {n: {k: 1}}}
        overlay = {
            "scheduler": {"policy": policy},
            "training": {"sft": {"mu": "rl_only"}},
            "run": {"name": f"t-{n}", "output_dir": str(out / f"train-{n}-{k}"), "seed": 0},
        }
        final = _train(merge_config(copy.deepcopy(base), overlay), Path.cwd()) / "final"
        result["after"][n] = {"k": k, "scores": scores(load_causal_lm(str(final))[0], n)}
        show(f"after@{k}", n, result["after"][n]["scores"])
        if spec.get("chain") and k + 2 in levels:  # then the rung above, from the model that learned rung k
            overlay["scheduler"]["policy"]["level_weights"] = {n: {k + 1: 1}}
            overlay["model"] = {"name_or_path": str(final)}
            overlay["run"]["output_dir"] = str(out / f"train-{n}-{k}-{k + 1}")
            final = _train(merge_config(copy.deepcopy(base), overlay), Path.cwd()) / "final"
            result.setdefault("chain", {})[n] = {"k": k + 1, "scores": scores(load_causal_lm(str(final))[0], n)}
            show(f"then@{k + 1}", n, result["chain"][n]["scores"])
    (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
