"""Validity gates of a world (`spectrum-rl gates CONFIG`): can curriculum matter here at all?

Measured before any arm of a study is compared, on the study's world (its plasticity domain held
out) and budget (the config's ``study:`` section, else the study's defaults), from the start model:

- G1 headroom: plain ``joint`` RL raises the held-out mean by at least ``HEADROOM`` within the
  budget: per seed the final minus the start mean, Student-t interval over ``seeds`` seeds (the
  seed is the unit); passes when the mean is >= HEADROOM and the interval excludes 0.
- G2 ladders: per domain with a range knob, the start pass rate of each level (``samples``
  rollouts at the training temperature on each of ``prompts`` prompts per level, primary reward
  >= ``scheduler.success_threshold``); passes when the easiest level is >= 0.8 and the hardest
  <= 0.05.
- G3 transfer up the ladder: from the start model, train one domain at one level k (the easiest
  level whose start pass rate is below 0.8) for the budget; the greedy score of level k + 1 on
  the same ``prompts`` prompts before and after; passes when level k + 1 starts below ``HARD``
  (near 0: it is a rung still to climb), ends above ``LIFTED`` and the gain exceeds two standard
  errors (binomial, before and after treated as independent: conservative). The sampled pass
  rate of level k + 1 before and after is printed beside it, outside the rule: on a ladder whose
  rungs teach in order, training level k makes level k + 1 learnable before greedy decoding has it.
- G4 dead weight: the slices dead at the start, and the share of a uniform mixture's rollouts they
  take: saturated (start pass rate >= 0.95), locked (<= 0.05 at the start, lifted above it by
  joint's seed-0 run: the upper rungs of a ladder) and unsolvable (<= 0.05 at the start and after
  joint). A slice is a level of a ladder, or a whole structured domain without levels (a creative
  domain's graded reward carries signal at any pass rate, so it has no slice). Passes when there
  is dead weight and none of it is unsolvable: a slice nothing moves belongs out of the primary
  eval, reported on its own.
- G5 interference: a transfer probe (each domain trained alone, ``probe_steps``), the pairs whose
  T[i][j] is below minus two standard errors (training i lowers j), or a sentence that none is
  (printed NONE: a world without interference is a finding, not a failure).
- G6 room for a curriculum: the config's oracle arm (``study.room_oracle``, a custom arm, default
  ``oracle_static``: weights set by someone who knows the world) against joint at the budget,
  paired by seed over the same ``seeds``; passes when the mean difference reaches the curriculum goal's margin
  (``study/curriculum.py CURRICULUM_GOAL``). If even the oracle cannot win that much, a study of
  curricula on this world is void, whatever its arms show.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from spectrum_rl.analysis.phases import binomial_se
from spectrum_rl.analysis.probe import probe_transfer
from spectrum_rl.analysis.runs import run_summary
from spectrum_rl.analysis.stats import t_interval
from spectrum_rl.config import Config, merge_config
from spectrum_rl.domains import BuiltDomain, build_domains
from spectrum_rl.models import apply_prompt_format, load_causal_lm, uses_chat_template
from spectrum_rl.study.arms import StudySpec, arm_overlay, default_plasticity_domain, study_base
from spectrum_rl.study.curriculum import CURRICULUM_GOAL
from spectrum_rl.trainer.generation import complete
from spectrum_rl.trainer.loop import Trainer

HEADROOM = 0.10  # G1: the held-out mean joint RL must gain within the budget
EASY, HARD = 0.8, 0.05  # G2: pass rate of the easiest level at least, of the hardest at most
LIFTED = 0.2  # G3: the next level's greedy score after training the one below, at least
SATURATED = 0.95  # G4: a slice at or above this start pass rate has nothing left to learn


def level_scores(
    model, tokenizer, config: Config, domain: BuiltDomain, *, prompts: int, samples: int, seed: int
) -> dict[int, dict[str, float]]:
    """Per level of ``domain``'s range: sampled pass rate (``samples`` rollouts per prompt) and greedy
    score on the same ``prompts`` prompts (the same for a given seed, so before and after compare)."""
    lo, hi = domain.source.ladder
    return {
        level: _scores(model, tokenizer, config, domain, prompts, samples, f"{seed}-{domain.name}-{level}", level)
        for level in range(lo, hi + 1)
    }


def _scores(
    model, tokenizer, config: Config, domain: BuiltDomain, prompts: int, samples: int, seed: str, level: int | None
) -> dict[str, float]:
    """Sampled pass rate and greedy score of ``prompts`` prompts of ``domain`` (at ``level``, or
    drawn as training draws them when None), the same prompts for the same ``seed``."""
    levels = None if level is None else [level] * prompts
    examples = domain.sample(prompts, random.Random(seed), levels=levels)
    model_cfg = config.model
    text = [
        apply_prompt_format(tokenizer, e.prompt, model_cfg.chat_template, e.system, model_cfg.chat_template_kwargs)
        for e in examples
    ]
    threshold, cap = config.scheduler.success_threshold, config.training.max_new_tokens
    plain = not uses_chat_template(tokenizer, config.model.chat_template)
    sampled, _ = complete(
        model, tokenizer, [p for p in text for _ in range(samples)], max_new_tokens=cap,
        temperature=config.training.temperature, special_tokens=plain,
    )  # fmt: skip
    greedy, _ = complete(model, tokenizer, text, max_new_tokens=cap, special_tokens=plain)
    return {
        "pass_rate": _pass_rate(domain, examples, sampled, samples, threshold),
        "greedy": _pass_rate(domain, examples, greedy, 1, threshold),
        "n": prompts,
    }


def dead_weight(start: dict, trained: dict, n_domains: int) -> dict[str, Any]:
    """G4 from the pass rates per domain and level at the start and after joint's run (``start``,
    ``trained``: domain -> level -> {"pass_rate": ...}, level None for a domain without levels);
    ``n_domains`` for the uniform shares."""
    slices = []
    for n, levels in start.items():
        share = 1 / n_domains / len(levels)  # of a uniform mixture over domains and levels
        for level, s in levels.items():
            after_joint = trained[n][level]["pass_rate"]
            if s["pass_rate"] >= SATURATED:
                kind = "saturated"
            elif s["pass_rate"] <= HARD:
                kind = "locked" if after_joint > HARD else "unsolvable"
            else:
                continue
            slice_ = {
                "slice": n if level is None else f"{n}@{level}",
                "kind": kind,
                "start": s["pass_rate"],
                "after_joint": after_joint,
            }
            slices.append(slice_ | {"uniform_share": round(share, 4)})
    return {
        "slices": slices,
        "wasted_share": round(sum(s["uniform_share"] for s in slices), 4),
        "passes": bool(slices) and not any(s["kind"] == "unsolvable" for s in slices),
    }


def _pass_rate(domain: BuiltDomain, examples: list, completions: list[str], repeat: int, threshold: float) -> float:
    """Share of ``completions`` (``repeat`` per example, in order) whose primary reward passes."""
    rewards = [domain.reward.score([c], examples[i // repeat]) for i, c in enumerate(completions)]
    return round(float(np.mean([r.parts[domain.reward.primary][0] >= threshold for r in rewards])), 4)


def transfer_passes(before: float, after: float, two_se: float) -> bool:
    """G3's rule (module docstring): the next level starts near 0 and training the one below
    lifts it clearly, beyond the noise."""
    return before < HARD and after > LIFTED and after - before > two_se


def run_record(summary: dict[str, Any]) -> dict[str, Any]:
    """What a gate's training run did (its ``run_summary``), per domain: held-out score at the start
    and the end, and the share of its groups that were blind (every reward 0: no signal), averaged
    over its steps. Under dynamic sampling blind groups cost generation, so this is where a uniform
    mixture pays."""
    blind = {d: values for d, (_, values) in summary["blind"].items()}
    return {
        "start": summary["start"],
        "end": summary["final"],
        "steps": len(summary["metric_steps"]),
        "rollouts": summary["rollouts"],
        "blind": {d: round(float(np.mean(v)), 4) if v else None for d, v in blind.items()},
    }


def _train(data: dict[str, Any], base_dir: Path) -> Path:
    cfg = Config.model_validate(data)
    Trainer(cfg, build_domains(cfg, base_dir), cfg.output_path, base_dir=base_dir).train()
    return cfg.output_path


def measure_gates(
    config: Config,
    base_dir: Path,
    output: Path,
    *,
    seeds: int = 3,
    prompts: int = 48,
    samples: int = 4,
    log=print,
) -> dict[str, Any]:
    """Every gate of the module docstring; written to ``output / "gates.json"``."""
    spec = replace(StudySpec().with_config(config.study), probe_steps=config.study.probe_steps or 0)
    base = study_base(config, spec, default_plasticity_domain(config))  # the study's world: its probe domain out
    names = [t["name"] for t in base["domains"]]
    start_cfg = Config.model_validate(base)
    domains = {d.name: d for d in build_domains(start_cfg, base_dir)}
    ladders = [n for n in names if domains[n].source.ladder]
    # G4's whole-domain slices: a structured domain without levels (module docstring)
    flat = [n for n in names if n not in ladders and domains[n].kind == "structured"]
    model, tokenizer = load_causal_lm(config.model.name_or_path)

    def ladder_scores(m) -> dict[str, dict[int, dict[str, float]]]:
        return {
            n: level_scores(m, tokenizer, start_cfg, domains[n], prompts=prompts, samples=samples, seed=0)
            for n in ladders
        }

    def slice_scores(m, ladder: dict) -> dict[str, dict[Any, dict[str, float]]]:
        whole = {
            n: {None: _scores(m, tokenizer, start_cfg, domains[n], prompts, samples, f"0-{n}", None)} for n in flat
        }
        return ladder | whole

    if ladders:
        log(f"G2: pass rate per level at the start ({prompts} prompts x {samples} rollouts per level)")
    start = ladder_scores(model)
    g2 = {
        n: {
            "levels": levels,
            "passes": levels[min(levels)]["pass_rate"] >= EASY and levels[max(levels)]["pass_rate"] <= HARD,
        }
        for n, levels in start.items()
    }

    runs: dict[str, dict[str, Any]] = {}

    def final_means(arm: str) -> tuple[list[float], list[float], list[Path]]:
        starts, ends, folders = [], [], []
        for seed in range(seeds):
            run = output / f"{arm}-s{seed}"
            overlay = merge_config(
                arm_overlay(arm, spec, config, names, None),
                {"run": {"name": f"{arm}-s{seed}", "output_dir": str(run), "seed": seed}},
            )
            summary = run_summary(_train(merge_config(base, overlay), base_dir))
            runs[f"{arm}-s{seed}"] = run_record(summary)
            starts.append(summary["eval_mean"][1][0])
            ends.append(summary["final_mean"])
            folders.append(run / "final")
            log(f"  {arm} seed {seed}: {starts[-1]:.3f} -> {ends[-1]:.3f}")
        return starts, ends, folders

    budget = f"{spec.max_rollouts} completions" if spec.max_rollouts else f"{spec.steps} steps"
    log(f"G1: joint RL, {budget} x {seeds} seeds")
    starts, joint_ends, finals = final_means("joint")
    gains = [e - s for s, e in zip(starts, joint_ends)]
    gain = t_interval(gains).to_dict()
    g1 = {
        "gain": gain,
        "per_seed": [round(g, 4) for g in gains],
        "passes": bool(gain["mean"] >= HEADROOM and (gain["ci_low"] or 0) > 0),
    }

    log("G4: dead slices at the start, and what joint made of them (after: joint seed 0)")
    after, _ = load_causal_lm(str(finals[0]))
    g4 = dead_weight(slice_scores(model, start), slice_scores(after, ladder_scores(after)), len(names))

    if ladders:
        log("G3: one level trained, the next measured")
    g3 = {}
    for n in ladders:
        below = [lvl for lvl, s in start[n].items() if s["pass_rate"] < EASY and lvl + 1 in start[n]]
        if not below:
            g3[n] = {"passes": False, "why": "no level below 0.8 with a harder one above it"}
            continue
        k = min(below)
        run = output / f"ladder-{n}"
        policy = {"type": "oracle_static", "weights": {m: float(m == n) for m in names}, "level_weights": {n: {k: 1.0}}}
        overlay = {"scheduler": {"policy": policy}, "training": {"sft": {"mu": "rl_only"}}}
        overlay |= {"run": {"name": f"ladder-{n}", "output_dir": str(run), "seed": 0}}
        trained_model, _ = load_causal_lm(str(_train(merge_config(base, overlay), base_dir) / "final"))
        before = start[n][k + 1]["greedy"]
        after = level_scores(trained_model, tokenizer, start_cfg, domains[n], prompts=prompts, samples=samples, seed=0)
        now = after[k + 1]["greedy"]
        se = float(np.hypot(binomial_se(before, prompts), binomial_se(now, prompts)))
        g3[n] = {
            "trained_level": k,
            "next_level": k + 1,
            "before": before,
            "after": now,
            "gain": round(now - before, 4),
            "two_se": round(2 * se, 4),
            "passes": transfer_passes(before, now, 2 * se),
            # beside the rule, not in it: a rung can come alive (sampled) before greedy decoding has it
            "sampled": {"before": start[n][k + 1]["pass_rate"], "after": after[k + 1]["pass_rate"]},
        }
        log(f"  {n}: trained level {k}; level {k + 1} {before:.3f} -> {now:.3f} (2 SE {2 * se:.3f})")

    log(f"G6: the oracle against joint, {budget} x {seeds} seeds")
    oracle = spec.room_oracle
    if oracle in spec.custom_arms:
        _, oracle_ends, _ = final_means(oracle)
        diff = t_interval([o - j for o, j in zip(oracle_ends, joint_ends)]).to_dict()
        g6 = {"oracle": oracle, "oracle_minus_joint": diff, "margin": CURRICULUM_GOAL}
        g6["passes"] = bool(diff["mean"] >= CURRICULUM_GOAL)
    else:
        g6 = {"passes": False, "why": f"the config defines no study.custom_arms.{oracle} to measure the room with"}

    probe_steps = config.study.probe_steps or max(10, spec.steps // 4)
    log(f"G5: transfer probe, {probe_steps} steps on each domain alone")
    rl_only = {"training": {"sft": {"mu": "rl_only"}}}  # interference under RL, the recipe's SFT aside
    probe_cfg = Config.model_validate(merge_config(base, {"run": {"output_dir": str(output / "probe")}, **rl_only}))
    record = probe_transfer(probe_cfg, list(domains.values()), steps=probe_steps, base_dir=base_dir)
    pairs = [
        {"trained": i, "hurt": j, "T": round(record["transfer"][i][j], 4), "se": round(record["stderr"][i][j], 4)}
        for i in names
        for j in names
        if i != j and record["transfer"][i][j] < -2 * record["stderr"][i][j]
    ]
    g5 = {
        "probe_steps": probe_steps,
        "pairs": pairs,
        "passes": bool(pairs),
        "sentence": None if pairs else f"no pair interferes beyond 2 SE in {probe_steps}-step probes",
    }
    result = {
        "config": str(config.run.name),
        "model": config.model.name_or_path,
        "budget": {
            "steps": spec.steps,
            "max_rollouts": spec.max_rollouts,
            "prompts_per_step": spec.prompts_per_step,
            "group_size": spec.group_size,
        },
        "G1": g1,
        "G2": g2,
        "G3": g3,
        "G4": g4,
        "G5": g5,
        "G6": g6,
        "runs": runs,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "gates.json").write_text(json.dumps(result, indent=1))
    return result


def gate_lines(result: dict[str, Any]) -> list[str]:
    """One line per gate: PASS/FAIL and its numbers."""

    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    g1 = result["G1"]["gain"]
    lines = [
        f"G1 headroom     {mark(result['G1']['passes'])}  joint RL gains {g1['mean']:+.3f} "
        f"[{g1['ci_low']:+.3f}, {g1['ci_high']:+.3f}] (95% t, n={g1['n']} seeds; needs >= {HEADROOM})"
        if g1["ci_low"] is not None
        else f"G1 headroom     {mark(result['G1']['passes'])}  joint RL gains {g1['mean']:+.3f} (n={g1['n']})"
    ]
    if not result["G2"]:
        why = "no domain has difficulty levels (a range knob of a built-in generator, or a difficulty_field)"
        lines += [f"G2 ladder       NONE  {why}", "G3 transfer up  NONE  no ladder to climb"]
    for n, g in result["G2"].items():
        rates = " ".join(f"{lvl}:{s['pass_rate']:.2f}" for lvl, s in g["levels"].items())
        lines.append(f"G2 ladder       {mark(g['passes'])}  {n} pass rate by level {rates}")
    for n, g in result["G3"].items():
        if "gain" in g:
            lines.append(
                f"G3 transfer up  {mark(g['passes'])}  {n}: training level {g['trained_level']} moves level "
                f"{g['next_level']} {g['before']:.2f} -> {g['after']:.2f} ({g['gain']:+.2f}, 2 SE {g['two_se']:.2f}; "
                f"needs < {HARD} -> > {LIFTED})"
                + (f"; sampled {g['sampled']['before']:.2f} -> {g['sampled']['after']:.2f}" if "sampled" in g else "")
            )
        else:
            lines.append(f"G3 transfer up  FAIL  {n}: {g['why']}")
    g4 = result["G4"]
    said = ", ".join(f"{s['slice']} ({s['kind']}, {s['start']:.2f}->{s['after_joint']:.2f})" for s in g4["slices"])
    said = f"{said}; {g4['wasted_share']:.0%} of a uniform mixture" if said else "no slice is dead at the start"
    lines.append(f"G4 dead weight  {mark(g4['passes'])}  {said}")
    g5 = result["G5"]
    said = ", ".join(
        f"training {p['trained']} lowers {p['hurt']} ({p['T']:+.2f}, se {p['se']:.2f})" for p in g5["pairs"]
    )
    lines.append(f"G5 interference {'PASS' if g5['passes'] else 'NONE'}  {said or g5['sentence']}")
    g6 = result.get("G6")
    if g6 is not None:
        if "oracle_minus_joint" in g6:
            d = g6["oracle_minus_joint"]
            bounds = f" [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d["ci_low"] is not None else ""
            oracle = g6.get("oracle", "oracle_static")  # gates.json written before the field named it
            lines.append(
                f"G6 room         {mark(g6['passes'])}  {oracle} - joint {d['mean']:+.3f}{bounds} (95% t, paired, "
                f"n={d['n']} seeds; needs >= {g6['margin']}: else a curriculum study here is void)"
            )
        else:
            lines.append(f"G6 room         FAIL  {g6['why']}")
    return lines
