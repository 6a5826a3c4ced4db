"""Prompt-level curriculum (``domains[i].sampling: pass_rate``): the pass-rate tracker with planted
pass rates, the planner's weights and state, weighted drawing, and a training run on a file pool
(resumed equal to uninterrupted)."""

from __future__ import annotations

import json
import random

import pytest
import torch
import yaml

from spectrum_rl.config import load_config
from spectrum_rl.domains import build_domains
from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.plan import Planner
from spectrum_rl.scheduler.prompts import PassRateTracker, PromptSamplingConfig
from spectrum_rl.scheduler.step import StepSignals
from spectrum_rl.trainer.checkpoint import read_jsonl
from tests.test_trainer import make_trainer, train_until_interrupted, write_config

CFG = PromptSamplingConfig()


def _play(tracker: PassRateTracker, planted: list[float], steps: int, per_step: int, rng: random.Random) -> list[int]:
    """Draw ``per_step`` prompts by the tracker's weights each step, observe G=8 rollouts passing
    at each prompt's planted rate; returns how often each prompt was drawn."""
    drawn = [0] * len(planted)
    for _ in range(steps):
        for i in rng.choices(range(len(planted)), weights=tracker.weights(), k=per_step):
            drawn[i] += 1
            tracker.observe(i, [float(rng.random() < planted[i]) for _ in range(8)])
    return drawn


def test_solved_and_hopeless_prompts_stop_taking_the_budget():
    # 10 solved (pass rate 1), 10 hopeless (0), 10 learnable (0.5)
    planted = [1.0] * 10 + [0.0] * 10 + [0.5] * 10
    tracker = PassRateTracker(len(planted), CFG)
    _play(tracker, planted, steps=30, per_step=8, rng=random.Random(0))  # warm-up: every prompt measured
    later = _play(tracker, planted, steps=100, per_step=8, rng=random.Random(1))
    wasted = sum(later[:20]) / sum(later)
    assert wasted < 0.1, later  # uniform would spend 2/3 of the draws there
    assert tracker.stats()["retired"] >= 18 and sum(later[:20]) > 0  # retired, and still revisited


def test_an_unseen_prompt_outweighs_a_retired_one_and_state_round_trips():
    tracker = PassRateTracker(3, CFG)
    for _ in range(5):
        tracker.observe(0, [1.0] * 8)  # solved
    tracker.observe(1, [1.0, 0.0] * 4)  # learnable
    w = tracker.weights()
    assert tracker.retired(0) and not tracker.retired(1)
    assert w[0] == pytest.approx(CFG.revisit * w[2]) and w[1] == pytest.approx(0.5 * 0.5)
    again = PassRateTracker(3, CFG)
    again.load_state_dict(json.loads(json.dumps(tracker.state_dict())))
    assert again.weights() == w and again.stats() == tracker.stats()


def test_the_planner_weighs_pass_rate_pools_and_learns_from_outcomes(tmp_path):
    config = load_config(_pool_config(tmp_path))
    planner = Planner(config.kinds, config.prerequisites, config.scheduler, config.training.sft, 8, pools={"pool": 40})
    plan = planner.plan(0)
    assert list(plan.prompt_weights) == ["pool"] and len(plan.prompt_weights["pool"]) == 40
    assert plan.stats["sampling/seen/pool"] == 0.0
    outcomes = tuple(("pool", i, None, (1.0,) * 6) for i in range(5)) * 4  # 5 prompts solved 4 times: p 0.97
    planner.observe_step(StepSignals(prompt_outcomes=outcomes))
    plan = planner.plan(1)
    assert (
        plan.stats["sampling/retired/pool"] == 5.0 and plan.prompt_weights["pool"][0] < plan.prompt_weights["pool"][9]
    )
    state = json.loads(json.dumps(planner.state_dict()))
    resumed = Planner(config.kinds, config.prerequisites, config.scheduler, config.training.sft, 8, pools={"pool": 40})
    resumed.load_state_dict(state)
    assert resumed.plan(2).prompt_weights == planner.plan(2).prompt_weights


def test_weighted_drawing_without_replacement_follows_the_weights(tmp_path):
    config = load_config(_pool_config(tmp_path))
    (domain,) = build_domains(config, tmp_path)
    weights = [0.0] * 30 + [1.0] * 10
    drawn = domain.sample(8, random.Random(0), weights)
    assert len({e.index for e in drawn}) == 8 and all(e.index >= 30 for e in drawn)  # distinct, weighted
    assert {e.prompt for e in drawn} == {e.prompt for e in domain.examples_at([e.index for e in drawn])}
    many = domain.sample(20, random.Random(0), weights)  # more than the prompts of positive weight
    assert len(many) == 20 and all(e.index >= 30 for e in many)


def test_pass_rate_needs_a_finite_pool(tmp_path):
    path = write_config(tmp_path, "builtin:tiny")
    data = yaml.safe_load(path.read_text())
    data["domains"][0]["sampling"] = "pass_rate"  # a built-in generator: unlimited rows
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"domains\[0\]\.sampling: pass_rate sampling needs a finite pool"):
        build_domains(load_config(path), tmp_path)


def test_a_pass_rate_run_logs_its_sampler_and_resumes_equal(tmp_path, tiny_random_lm_dir):
    domains = _pool_domains(tmp_path)
    training = {"steps": 4, "save_every": 2}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full_path = write_config(tmp_path / "a", tiny_random_lm_dir, training, domains=domains)
    full = make_trainer(full_path)
    full.train()
    metrics = read_jsonl(tmp_path / "a" / "run" / "metrics.jsonl")
    assert [m["sampling/seen/pool"] for m in metrics][0] == 0.0 and metrics[-1]["sampling/seen/pool"] > 0

    path = write_config(tmp_path / "b", tiny_random_lm_dir, training, domains=domains)
    train_until_interrupted(make_trainer(path), 3)
    resumed = make_trainer(path, resume=True)
    resumed.train()
    again = read_jsonl(tmp_path / "b" / "run" / "metrics.jsonl")
    assert [m["sampling/seen/pool"] for m in again] == [m["sampling/seen/pool"] for m in metrics]
    assert resumed.planner.state_dict()["pass_rates"] == full.planner.state_dict()["pass_rates"]
    reference, final = full.policy.state_dict(), resumed.policy.state_dict()
    assert all(torch.allclose(reference[k], final[k], atol=1e-6) for k in reference)


def _pool_domains(tmp_path) -> list[dict]:
    rows = [{"question": f"sort: {w}", "answer": "".join(sorted(w))} for w in _words(46)]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [
        {
            "name": "pool",
            "kind": "structured",
            "source": {"type": "file", "path": str(tmp_path / "pool.jsonl")},
            "eval": {"size": 6},
            "sampling": "pass_rate",
            "reward": [{"type": "exact_match"}],
        }
    ]


def _pool_config(tmp_path):
    path = tmp_path / "pool.yaml"
    path.write_text(json.dumps({"domains": _pool_domains(tmp_path)}))
    return path


def _words(n: int) -> list[str]:
    rng = random.Random(0)
    return ["".join(rng.sample("abcdefgh", 4)) for _ in range(n)]
