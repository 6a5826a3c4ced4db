"""Scheduler overhead vs a training step of the built-in tiny model, measured side by side.

Prints, for 10 domains (the built-in generators, repeated):
- the median time of one training step (rollouts + rewards + update) under `joint`;
- the median time the `adaptive` Planner spends per step (plan + observe_step, plus
  observe_eval every 25 steps) and its ratio to the step (target < 1%);
- the extra time of a step that computes gradient alignment (TAC sketches), its ratio to a
  step, and that ratio amortised over the default ``alignment_every`` (target < 5%);
- the order solver at 16 domains (target < 1 s);
- the curricula per step (target < 1% with the scheduler): a `sampling: pass_rate` pool of
  ``--pool`` prompts (plan's weights, the weighted draw of 8 prompts, 8 groups observed) and a
  difficulty range of 7 levels (plan's level shares, 8 groups observed).

    python benchmarks/bench_scheduler.py [--steps 8] [--pool 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from spectrum_rl.config import SchedulerConfig

ALIGN_EVERY = SchedulerConfig().alignment_every


def config_dict(policy: str, n_domains: int, out: str) -> dict:
    from spectrum_rl.sources.builtin import GENERATORS

    gens = list(GENERATORS)
    domains = [
        {
            "name": f"{gens[i % len(gens)]}{i}",
            "kind": GENERATORS.get(gens[i % len(gens)]).kind,
            "source": {"type": "builtin", "generator": gens[i % len(gens)]},
            "eval": {"size": 10},
            "reward": [
                {"type": "exact_match"}
                if GENERATORS.get(gens[i % len(gens)]).kind == "structured"
                else {"type": "constraint"}
            ],
        }
        for i in range(n_domains)
    ]
    return {
        "run": {"output_dir": out},
        "model": {"name_or_path": "builtin:tiny"},
        "domains": domains,
        "scheduler": {"policy": policy, "alignment_every": 1},
        "training": {"prompts_per_step": 16, "group_size": 8, "max_new_tokens": 32, "learning_rate": 1e-4},
        "logging": {"progress": False},
    }


def signals_of(metrics: dict, names: list[str], groups: int = 16, group_size: int = 8):
    """The StepSignals behind a step's logged metrics (what the trainer handed its planner), with
    ``groups`` rollout groups of pass/fail rewards spread over the domains (the learnability feed)."""
    import random

    from spectrum_rl.scheduler.step import DomainSignals, StepSignals

    rng = random.Random(0)
    outcomes = tuple(
        (names[g % len(names)], None, None, tuple(float(rng.random() < 0.4) for _ in range(group_size)))
        for g in range(groups)
    )
    return StepSignals(
        {
            d: DomainSignals(
                metrics.get(f"reward/{d}"),
                metrics.get(f"advantage_abs/{d}"),
                metrics.get(f"entropy/{d}"),
                int(metrics[f"samples/{d}"]),
            )
            for d in names
            if f"samples/{d}" in metrics
        },
        prompt_outcomes=outcomes,
    )


def level_bandit_seconds(policy: str, n: int = 10, steps: int = 200) -> float:
    """Median seconds per step of a (domain, level) bandit (``sec``, ``dump``, ``thompson``) over
    ``n`` domains with 7 levels each: plan and observing the step's 16 groups of 8."""
    import random

    from spectrum_rl.scheduler.blend import SFTConfig
    from spectrum_rl.scheduler.plan import Planner
    from spectrum_rl.scheduler.step import StepSignals

    names = [f"d{i}" for i in range(n)]
    planner = Planner(
        dict.fromkeys(names, "structured"),
        {},
        SchedulerConfig(policy=policy),
        SFTConfig(),
        16,
        ladders=dict.fromkeys(names, (2, 8)),
        steps=steps,
    )
    rng = random.Random(0)
    times = []
    for s in range(steps):
        t0 = time.perf_counter()
        plan = planner.plan(s)
        outcomes = [
            (d, None, rng.choices(*zip(*plan.levels[d].items()))[0], tuple(float(rng.random() < 0.4) for _ in range(8)))
            for d, k in plan.prompts.items()
            for _ in range(k)
        ]
        planner.observe_step(StepSignals(prompt_outcomes=tuple(outcomes)))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def trainer_for(policy: str, n: int, out: str):
    from spectrum_rl.bootstrap import ensure_builtin_models
    from spectrum_rl.config import Config
    from spectrum_rl.domains import build_domains
    from spectrum_rl.trainer.loop import Trainer

    config = Config.model_validate(config_dict(policy, n, out))
    ensure_builtin_models(config)
    return Trainer(config, build_domains(config, Path.cwd()), Path(out))


def curricula_seconds(pool: int, steps: int = 200) -> float:
    """Median seconds per step of the pass-rate pool and the difficulty frontier: plan, the
    weighted draw of the pool's 8 prompts, and observing 8 groups of each."""
    import random

    from spectrum_rl.domains import BuiltDomain, draw_for_plan
    from spectrum_rl.scheduler.blend import SFTConfig
    from spectrum_rl.scheduler.plan import Planner
    from spectrum_rl.scheduler.step import StepSignals
    from spectrum_rl.sources.pools import PoolSource

    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(pool)]
    domains = {"pool": BuiltDomain("pool", "structured", PoolSource(rows, [], "pool"), reward=None)}
    kinds = {"pool": "structured", "ladder": "structured"}
    planner = Planner(kinds, {}, SchedulerConfig(), SFTConfig(), 16, pools={"pool": pool}, ladders={"ladder": (2, 8)})
    rng = random.Random(0)
    times = []
    for s in range(steps):
        t0 = time.perf_counter()
        plan = planner.plan(s)
        drawn = draw_for_plan(domains, plan, rng, "pool", plan.prompts["pool"])
        outcomes = [("pool", ex.index, None, (float(rng.random() < 0.3),) * 8) for _, ex in drawn]
        outcomes += [("ladder", None, level, (1.0, 0.0) * 4) for level in plan.levels["ladder"]]
        planner.observe_step(StepSignals(prompt_outcomes=tuple(outcomes)))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = 10
    with tempfile.TemporaryDirectory() as tmp:
        joint = trainer_for("joint", n, tmp)
        joint.train_step()  # warm-up
        step_times = []
        metrics = {}
        for _ in range(args.steps):
            t0 = time.perf_counter()
            metrics = joint.train_step()
            step_times.append(time.perf_counter() - t0)
        step = statistics.median(step_times)

        adaptive = trainer_for("adaptive", n, tmp)
        planner = adaptive.planner
        signals = signals_of(metrics, planner.names)
        scores = {d: 0.5 for d in planner.names}
        sched_times = []
        for s in range(200):
            t0 = time.perf_counter()
            planner.plan(s)
            planner.observe_step(signals)
            if s % 25 == 0:
                planner.observe_eval(s, {d: v + 0.01 * np.sin(s) for d, v in scores.items()})
            sched_times.append(time.perf_counter() - t0)
        sched = statistics.median(sched_times)

        # alignment: same trainer, sketches on (every step) vs off
        with_align, without = [], []
        adaptive.train_step()
        for _ in range(args.steps):
            adaptive.planner.alignment_every = 1
            t0 = time.perf_counter()
            adaptive.train_step()
            with_align.append(time.perf_counter() - t0)
            adaptive.planner.alignment_every = 0
            t0 = time.perf_counter()
            adaptive.train_step()
            without.append(time.perf_counter() - t0)
        align_extra = statistics.median(with_align) - statistics.median(without)

    curricula = curricula_seconds(args.pool)
    bandits = {policy: level_bandit_seconds(policy) for policy in ("sec", "dump", "thompson")}

    from spectrum_rl.scheduler.order import best_order

    rng = np.random.default_rng(0)
    names = [f"d{i}" for i in range(16)]
    solve = []
    for _ in range(5):
        T = rng.normal(0, 0.1, (16, 16))
        t0 = time.perf_counter()
        best_order(names, T, {k: "structured" if i % 2 else "creative" for i, k in enumerate(names)}, {})
        solve.append(time.perf_counter() - t0)
    result = {
        "domains": n,
        "step_s": round(step, 4),
        "scheduler_s": round(sched, 6),
        "scheduler_fraction": round(sched / step, 5),
        "alignment_extra_s": round(align_extra, 4),
        "alignment_fraction": round(align_extra / statistics.median(without), 4),
        "alignment_every": ALIGN_EVERY,
        "alignment_amortised_fraction": round(align_extra / statistics.median(without) / ALIGN_EVERY, 4),
        "solver16_s": round(statistics.median(solve), 4),
        "pool": args.pool,
        "curricula_s": round(curricula, 6),
        "with_curricula_fraction": round((sched + curricula) / step, 5),
        "level_bandits_s": {k: round(v, 6) for k, v in bandits.items()},
        "level_bandits_fraction": {k: round(v / step, 5) for k, v in bandits.items()},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"training step (10 domains, 16x8 rollouts, tiny model): {step * 1000:.1f} ms")
    print(
        f"adaptive scheduler per step: {sched * 1e3:.3f} ms = {100 * result['scheduler_fraction']:.3f}% of a step "
        f"(target < 1%: {result['scheduler_fraction'] < 0.01})"
    )
    amortised = result["alignment_amortised_fraction"]
    print(
        f"gradient alignment on a step that computes it: {align_extra * 1000:.1f} ms = "
        f"{100 * result['alignment_fraction']:.1f}%; every {ALIGN_EVERY} steps (default): {100 * amortised:.1f}% "
        f"(target < 5%: {amortised < 0.05})"
    )
    print(f"order solver, 16 domains: {result['solver16_s']:.3f} s (target < 1 s: {result['solver16_s'] < 1})")
    total = result["with_curricula_fraction"]
    print(
        f"curricula per step ({args.pool}-prompt pass_rate pool + a 7-level range): {curricula * 1e3:.3f} ms; with the "
        f"scheduler {100 * total:.3f}% of a step (target < 1%: {total < 0.01})"
    )
    for policy, fraction in result["level_bandits_fraction"].items():
        print(
            f"{policy} over 10 domains x 7 levels per step: {bandits[policy] * 1e3:.3f} ms = {100 * fraction:.3f}% of "
            f"a step (target < 1%: {fraction < 0.01})"
        )


if __name__ == "__main__":
    main()
