"""Scheduler policies and signals on scripted inputs; the order command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spectrum_rl.analysis.probe import probe_stderr
from spectrum_rl.cli import main
from spectrum_rl.config import Config
from spectrum_rl.scheduler.order import best_order
from spectrum_rl.scheduler.plan import Planner, load_transfer
from spectrum_rl.scheduler.policies import POLICIES
from spectrum_rl.scheduler.signals import EntropyMonitor, OnlineTransfer
from spectrum_rl.scheduler.step import DomainSignals, StepSignals
from spectrum_rl.trainer.alignment import GradientSketch, cosine_matrix


def make_config(policy: str = "joint", domains=None, **scheduler) -> Config:
    domains = domains or [("s1", "structured", []), ("s2", "structured", []), ("c1", "creative", [])]
    return Config.model_validate(
        {
            "domains": [
                {
                    "name": n,
                    "kind": k,
                    "after": after,
                    "source": {"type": "builtin", "generator": "sorting"},
                    "reward": [{"type": "exact_match"}],
                }
                for n, k, after in domains
            ],
            "scheduler": scheduler_section(policy, scheduler),
        }
    )


def scheduler_section(policy: str, settings: dict) -> dict:
    """A `scheduler:` mapping: the settings that are ``policy``'s parameters go under `policy`."""
    own = POLICIES.get(policy).Params.model_fields
    params = {k: v for k, v in settings.items() if k in own}
    return {"policy": {"type": policy, **params}, **{k: v for k, v in settings.items() if k not in own}}


def planner(config: Config, base_dir=None) -> Planner:
    sc = config.scheduler
    transfer, stderr = (
        load_transfer(base_dir / sc.transfer_file, config.domain_names) if sc.transfer_file else (None, None)
    )
    return Planner(
        config.kinds,
        config.prerequisites,
        sc,
        config.training.sft,
        config.training.prompts_per_step,
        transfer,
        transfer_stderr=stderr,
    )


def feed(planner: Planner, steps: int, rates: dict[str, float], entropy: dict[str, float] | None = None) -> None:
    """``steps`` steps of two 10-rollout groups per domain whose pass rate is ``rates[d]``."""
    for _ in range(steps):
        groups = tuple(
            (d, None, None, tuple(float(i < round(10 * r)) for i in range(10)))
            for d, r in rates.items()
            for _ in (0, 1)
        )
        domains = {d: DomainSignals(entropy=(entropy or {}).get(d), samples=20) for d in rates}
        planner.observe_step(StepSignals(domains, prompt_outcomes=groups))


def test_joint_weights_and_uniform_default():
    assert planner(make_config()).plan(0).mixture == pytest.approx({"s1": 1 / 3, "s2": 1 / 3, "c1": 1 / 3})
    p = planner(make_config(weights={"s1": 2, "s2": 1, "c1": 1}))
    assert p.plan(5).mixture == pytest.approx({"s1": 0.5, "s2": 0.25, "c1": 0.25})


def test_sequential_phases_with_replay():
    p = planner(make_config("sequential", order=["c1", "s1", "s2"], phase_steps=10, replay=0.2))
    assert p.plan(0).mixture == {"c1": 1.0, "s1": 0.0, "s2": 0.0}
    assert p.plan(10).mixture == pytest.approx({"c1": 0.2, "s1": 0.8, "s2": 0.0})
    assert p.plan(25).mixture == pytest.approx({"c1": 0.1, "s1": 0.1, "s2": 0.8})
    assert "phase 3/3 (s2)" in p.plan(99).reason


def test_bwt_orders_structured_first_without_transfer_and_follows_transfer_when_given(tmp_path):
    p = planner(make_config("bwt", domains=[("c1", "creative", []), ("s1", "structured", [])], phase_steps=5))
    first = p.plan(0)
    assert first.mixture["s1"] == 1.0 and "kinds" in first.reason
    # T: training s1 hurts c1 badly, training c1 helps s1 -> protect c1 by training it... last? No:
    # backward transfer says train s1 first (c1 later helps s1), never c1 then s1.
    (tmp_path / "t.json").write_text(
        json.dumps({"transfer": {"c1": {"c1": 0.1, "s1": 0.5}, "s1": {"c1": -0.5, "s1": 0.1}}})
    )
    cfg = make_config("bwt", domains=[("c1", "creative", []), ("s1", "structured", [])], transfer_file="t.json")
    p2 = planner(cfg, tmp_path)
    assert p2.plan(0).mixture["s1"] == 1.0 and "transfer matrix" in p2.plan(0).reason


def test_bwt_replans_the_phases_not_started_when_a_transfer_estimate_arrives():
    domains = [("s1", "structured", []), ("s2", "structured", []), ("s3", "structured", [])]
    p = planner(make_config("bwt", domains=domains, phase_steps=10, replay=0.0))
    assert p.plan(0).mixture["s1"] == 1.0 and "kinds" in p.plan(0).reason  # no estimate yet: s1, s2, s3
    T = np.zeros((3, 3))
    T[0, 2] = T[2, 1] = -0.5  # training s1 hurts s3, training s3 hurts s2: s1 before s3 before s2
    p.view.transfer = T  # what Planner.observe_eval does once the online fit exists
    plan = p.plan(5)
    assert plan.mixture["s1"] == 1.0  # the current phase stays
    assert "re-planned at step 5" in plan.reason
    assert p.plan(10).mixture["s3"] == 1.0 and p.plan(20).mixture["s2"] == 1.0
    p.view.transfer = T.copy()  # a refit that does not change the order: nothing to re-plan
    assert p.plan(21).mixture["s2"] == 1.0


def test_bwt_advances_on_plateau():
    p = planner(make_config("bwt", phase_steps=1000, plateau_patience=2, replay=0.0))
    current = max(p.plan(0).mixture.items(), key=lambda kv: kv[1])[0]
    for step, score in [(10, 0.5), (20, 0.5), (30, 0.5)]:  # no improvement after the first eval
        p.observe_eval(step, {"s1": score, "s2": score, "c1": score})
    nxt = max(p.plan(31).mixture.items(), key=lambda kv: kv[1])[0]
    assert nxt != current and "phase 2/3" in p.plan(31).reason


@pytest.mark.parametrize("bandit", ["sec", "dump"])
def test_learnability_prefers_domains_whose_pass_rate_is_near_one_half(bandit):
    p = planner(make_config("learnability", bandit=bandit, tau=0.1))
    feed(p, 10, {"s1": 0.5, "s2": 1.0, "c1": 0.0})  # learnability 4 s (1 - s): 1, 0, 0
    mix = p.plan(10).mixture
    assert mix["s1"] > mix["s2"] and mix["s1"] > 0.5
    assert min(mix.values()) >= 0.02 * 0.9  # exploration floor


def test_dump_explores_unvisited_domain():
    p = planner(make_config("learnability", bandit="dump", tau=0.1))
    feed(p, 20, {"s1": 0.3, "s2": 0.3})  # c1 never sampled
    mix = p.plan(20).mixture
    assert mix["c1"] > mix["s1"]


def test_transfer_policy_uses_alignment():
    p = planner(make_config("transfer", transfer_weight=1.0))
    feed(p, 5, {"s1": 0.3, "s2": 0.3, "c1": 0.3})
    p.observe_step(
        StepSignals(
            alignment={
                "s1": {"s1": 1, "s2": 0.9, "c1": 0.9},
                "s2": {"s1": 0.9, "s2": 1, "c1": -0.5},
                "c1": {"s1": 0.9, "s2": -0.5, "c1": 1},
            }
        )
    )
    mix = p.plan(5).mixture
    assert mix["s1"] > mix["s2"] and mix["s1"] > mix["c1"]


def test_adaptive_forgetting_guard_replays_a_falling_domain_and_cuts_the_one_blamed(tmp_path):
    """s2's training pass rate falls from 0.8 to 0.4 at a fixed level (20 rollouts a step): the
    pooled detector fires within a window; s2 gets replay and SFT, and s1, whose training the
    transfer estimate says lowers s2, is cut. The held-out evals alone (64 prompts) would not fire."""
    transfer = {"s1": {"s1": 0.1, "s2": -0.2, "c1": 0.0}, "s2": {"s1": 0.0, "s2": 0.1, "c1": 0.0}}
    transfer["c1"] = {"s1": 0.0, "s2": 0.0, "c1": 0.1}
    (tmp_path / "t.json").write_text(json.dumps({"transfer": transfer}))
    p = planner(make_config("adaptive", transfer_file="t.json"), tmp_path)
    feed(p, 20, {"s1": 0.5, "s2": 0.8, "c1": 0.5})
    assert "forgetting guard" not in p.plan(20).reason
    feed(p, 10, {"s1": 0.5, "s2": 0.4, "c1": 0.5})
    plan = p.plan(30)
    assert "forgetting guard: s2 training pass rate 0.40 < best 0.80" in plan.reason
    assert "training s1 lowers it" in plan.reason and plan.mu["s2"] >= 0.3 and plan.mu["s1"] == 0.0


def test_the_falling_detector_false_alarm_rate_and_delay_on_planted_curves():
    """One domain trained at one level, 12 rollouts a step, 150 steps, a 64-prompt eval every 15:
    flat at 0.6, the detector fires in at most 5% of runs; with a drop of 0.10 at step 75 it fires
    after the drop in at least 65% of runs, half of them within 40 steps (the numbers docs/scheduler.md
    states, measured on 150 seeded runs each)."""
    from spectrum_rl.scheduler.progress import Falling

    rng = np.random.default_rng(0)

    def first_alarm(drop: float) -> int | None:
        f = Falling()
        for step in range(1, 151):
            q = 0.6 - (drop if step > 75 else 0.0)
            rewards = (rng.random(12) < q).astype(float).tolist()
            f.observe_groups([("a", 3, rewards[:6]), ("a", 3, rewards[6:])])
            if step % 15 == 0:
                f.observe_eval({"a": rng.binomial(64, q) / 64}, {"a": 64})
            if f.falling("a"):
                return step
        return None

    false_alarms = sum(first_alarm(0.0) is not None for _ in range(150)) / 150
    delays = [a - 75 for a in (first_alarm(0.10) for _ in range(150)) if a is not None and a > 75]
    assert false_alarms <= 0.05
    assert len(delays) / 150 >= 0.65 and np.median(delays) <= 40


def test_learning_progress_is_zero_for_a_flat_noisy_reward_and_positive_for_a_rising_one():
    from spectrum_rl.scheduler.progress import LearningProgress

    rng = np.random.default_rng(0)
    lp = LearningProgress(window=10)
    for step in range(10):
        lp.observe({"flat": 0.85 + 0.1 * rng.standard_normal(), "rising": 0.2 + 0.04 * step})
    assert lp.value("flat") == 0.0 and lp.value("rising") == pytest.approx(0.4, abs=0.05)
    assert LearningProgress(10).value("flat") is None  # not measured yet


def test_a_domain_whose_reward_varies_but_does_not_rise_stops_taking_most_rollouts():
    """c1 sits near its ceiling with a reward that varies from group to group (its pass fraction
    stays at 1/2: the most learnability) but does not rise; s1 rises slowly from near 0; s2 is at 0.
    Without learning progress c1 takes most of the rollouts (checked by turning the gate off); with
    it, c1 takes less than half and less than s1."""
    p = planner(make_config("adaptive", min_weight=0.02))
    rng = np.random.default_rng(0)
    for step in range(30):
        rates = {"s1": 0.02 + 0.01 * step, "s2": 0.0, "c1": 0.5}
        groups = tuple(
            (d, None, None, tuple(float(rng.random() < r) for _ in range(10)))
            for d, r in rates.items()
            for _ in range(2)
        )
        rewards = {"s1": rates["s1"], "s2": 0.0, "c1": 0.85 + 0.05 * rng.standard_normal()}
        domains = {d: DomainSignals(reward=r, samples=20) for d, r in rewards.items()}
        p.observe_step(StepSignals(domains=domains, prompt_outcomes=groups))
    mixture = p.plan(30).mixture
    assert mixture["c1"] < 0.5 and mixture["c1"] < mixture["s1"]
    p.policy._progress_gate = lambda view, domain: 1.0  # learnability alone
    assert p.plan(31).mixture["c1"] > 0.5


def test_adaptive_entropy_guard_on_collapsing_creative_domain():
    p = planner(make_config("adaptive"))
    feed(p, 6, {"s1": 0.3, "s2": 0.3, "c1": 0.3}, {"s1": 1.0, "s2": 1.0, "c1": 1.0})  # baselines
    calm = p.plan(6)
    feed(p, 20, {"s1": 0.3, "s2": 0.3, "c1": 0.3}, {"s1": 1.0, "s2": 1.0, "c1": 0.05})  # c1 collapses
    plan = p.plan(26)
    assert "entropy guard: c1" in plan.reason
    assert plan.mixture["s1"] < calm.mixture["s1"] and plan.mu["c1"] >= 0.3 and plan.mu["s1"] == 0.0


def test_adaptive_damps_a_domain_whose_training_hurts_the_others_and_favours_one_that_helps(tmp_path):
    transfer = {"s1": {"s1": 0.1, "s2": -0.2, "c1": -0.2}, "s2": {"s1": 0.0, "s2": 0.1, "c1": 0.1}}
    transfer["c1"] = {"s1": 0.0, "s2": 0.0, "c1": 0.1}
    (tmp_path / "t.json").write_text(json.dumps({"transfer": transfer}))
    p = planner(make_config("adaptive", transfer_file="t.json"), tmp_path)
    feed(p, 5, {"s1": 0.3, "s2": 0.3, "c1": 0.3})  # learnability alike: only backward transfer differs
    plan = p.plan(5)
    assert plan.mixture["s1"] < plan.mixture["c1"] < plan.mixture["s2"]
    assert "backward transfer damps s1 (-0.200), favours s2 (+0.050)" in plan.reason
    assert "learnability" not in plan.reason  # equal scores moved nothing
    blind = planner(make_config("adaptive"))  # no estimate: nothing to damp
    feed(blind, 5, {"s1": 0.3, "s2": 0.3, "c1": 0.3})
    plan = blind.plan(5)
    assert plan.mixture == pytest.approx(dict.fromkeys(["s1", "s2", "c1"], 1 / 3))
    assert plan.reason == "adaptive: no signal has moved the mixture yet"


def test_adaptive_ignores_transfer_entries_the_online_fit_does_not_determine():
    p = planner(make_config("adaptive"))
    feed(p, 5, {"s1": 0.3, "s2": 0.3, "c1": 0.3})
    p.view.transfer = np.array([[0.1, -0.2, -0.2], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]])
    p.view.transfer_stderr = np.full((3, 3), 0.15)  # |T| < 2 se everywhere: determined by nothing
    assert p.plan(5).mixture == pytest.approx(dict.fromkeys(["s1", "s2", "c1"], 1 / 3))
    p.view.transfer_stderr = np.full((3, 3), 0.01)
    mixture = p.plan(6).mixture
    assert mixture["s1"] < 0.3 and mixture["s1"] < min(mixture["s2"], mixture["c1"]) - 0.05
    assert "backward transfer damps s1" in p.plan(6).reason


def test_adaptive_ignores_transfer_entries_a_probe_file_does_not_determine(tmp_path):
    transfer = {"s1": {"s1": 0.1, "s2": -0.2, "c1": -0.2}, "s2": {"s1": 0.0, "s2": 0.1, "c1": 0.1}}
    transfer["c1"] = {"s1": 0.0, "s2": 0.0, "c1": 0.1}
    stderr = {a: dict.fromkeys(row, 0.15) for a, row in transfer.items()}  # |T| < 2 se everywhere
    (tmp_path / "t.json").write_text(json.dumps({"transfer": transfer, "stderr": stderr}))
    p = planner(make_config("adaptive", transfer_file="t.json"), tmp_path)
    assert p.view.transfer_stderr is not None and p.view.transfer_stderr.shape == (3, 3)
    feed(p, 5, {"s1": 0.3, "s2": 0.3, "c1": 0.3})
    assert p.plan(5).mixture == pytest.approx(dict.fromkeys(["s1", "s2", "c1"], 1 / 3))


def test_adaptive_learnability_is_named_when_it_moves_the_mixture():
    p = planner(make_config("adaptive"))
    feed(p, 5, {"s1": 0.5, "s2": 1.0, "c1": 0.0})
    plan = p.plan(5)
    assert plan.mixture["s1"] > 0.5 and "learnability favours s1" in plan.reason


def test_adaptive_treats_a_structured_domain_whose_entropy_rises_as_creative():
    p = planner(make_config("adaptive"))
    adv = {"s1": 0.3, "s2": 0.3, "c1": 0.3}
    feed(p, 6, adv, {"s1": 1.0, "s2": 1.0, "c1": 1.0})  # baselines
    reasons = []
    for k in range(20):  # s2 (declared structured) rises like a creative domain; c1 collapses
        feed(p, 1, adv, {"s1": 1.0, "s2": 1.0 + 0.1 * k, "c1": 0.05})
        reasons.append(p.plan(7 + k).reason)
    said = [r for r in reasons if "s2 is declared structured but its entropy rises; treated as creative" in r]
    assert len(said) == 1  # said once, when it happens
    plan = p.plan(30)
    assert "entropy guard: c1 collapsed" in plan.reason
    assert plan.mixture["s1"] < plan.mixture["s2"]  # the guard cuts structured domains, not s2
    again = planner(make_config("adaptive"))
    again.load_state_dict(p.state_dict())
    assert again.plan(31) == p.plan(31)


def test_adaptive_prerequisite_gating():
    cfg = make_config("adaptive", domains=[("s1", "structured", []), ("c1", "creative", ["s1"])], unlock_score=0.5)
    p = planner(cfg)
    p.observe_eval(0, {"s1": 0.2, "c1": 0.0})
    plan = p.plan(0)
    assert plan.mixture["c1"] == 0.0 and "locked" in plan.reason
    p.observe_eval(10, {"s1": 0.7, "c1": 0.0})
    plan = p.plan(10)
    assert plan.mixture["c1"] > 0 and "prerequisite s1 reached 0.70 >= unlock_score 0.5" in plan.reason
    assert "prerequisite" not in p.plan(11).reason  # said once
    p.observe_eval(20, {"s1": 0.1, "c1": 0.0})
    assert p.plan(20).mixture["c1"] > 0  # an unlock is permanent


def test_adaptive_unlocks_a_domain_whose_prerequisite_plateaus_below_the_score():
    cfg = make_config(
        "adaptive",
        domains=[("s1", "structured", []), ("c1", "creative", ["s1"])],
        unlock_score=0.9,
        unlock_patience=3,
        plateau_delta=0.01,
    )
    p = planner(cfg)
    for step, score in [(0, 0.0), (10, 0.2), (20, 0.205), (30, 0.2)]:  # gains stop after step 10
        p.observe_eval(step, {"s1": score, "c1": 0.0})
        assert p.plan(step).mixture["c1"] == 0.0
    p.observe_eval(40, {"s1": 0.21, "c1": 0.0})  # third eval without a gain above 0.01
    plan = p.plan(40)
    assert plan.mixture["c1"] > 0
    assert "prerequisite s1 plateaued at 0.20 (no gain > 0.010 in 3 evals, step 40)" in plan.reason
    again = planner(cfg)
    again.load_state_dict(p.state_dict())
    assert again.plan(41).mixture["c1"] > 0  # the unlock survives a checkpoint


def test_entropy_monitor_flags():
    mon = EntropyMonitor({"s": "structured", "c": "creative"}, baseline_steps=3, collapse_fraction=0.5, window=10)
    for h in [2.0, 2.0, 2.0] + [2.0 - 0.15 * i for i in range(12)]:
        mon.update({"s": h, "c": h})
    s, c = mon.state("s"), mon.state("c")
    assert s.collapsed and c.collapsed
    assert not s.contradicts_kind and c.contradicts_kind  # creative entropy should not fall


def _planted_fit(T: np.ndarray, rng: np.random.Generator, windows: int = 40, noise: float = 0.001):
    """The online fit after ``windows`` windows of random mixtures, each changing the scores by
    ``w @ T`` plus a little noise (T[i, j]: change of j per window of training on i alone)."""
    names = [f"d{i}" for i in range(len(T))]
    est = OnlineTransfer(names)
    scores = np.zeros(len(T))
    est.observe_eval(dict(zip(names, scores)))
    for _ in range(windows):
        w = rng.dirichlet(np.ones(len(T)))
        est.observe_mixture(dict(zip(names, w)))
        scores = scores + w @ T + rng.normal(0, noise, len(T))
        est.observe_eval(dict(zip(names, scores)))
    return est.estimate()


def test_online_transfer_recovers_planted_matrix():
    T = np.array([[0.2, -0.1, 0.0], [0.05, 0.3, 0.1], [0.0, 0.0, 0.25]])
    fit, stderr = _planted_fit(T, np.random.default_rng(0))
    assert np.allclose(fit, T, atol=0.01)  # the whole matrix, not only its column-centred part
    assert stderr.shape == (3, 3) and np.all(stderr < 0.01)


def test_online_transfer_order_matches_the_planted_order():
    """30 planted 4-domain matrices with little noise: the order from the fit equals the order
    from the true T. (The former fit, with an intercept per column, recovered T only up to column
    shifts, which change the order: it differed in 22 of these 30 cases.)"""
    rng = np.random.default_rng(1)
    names = [f"d{i}" for i in range(4)]
    kinds = dict.fromkeys(names, "structured")
    for _ in range(30):
        T = rng.normal(0, 0.1, (4, 4)) + rng.normal(0, 0.1, 4)  # columns shifted differently
        fit, stderr = _planted_fit(T, rng)
        assert np.all(stderr < 0.01)
        assert best_order(names, fit, kinds, {}).order == best_order(names, T, kinds, {}).order


def test_online_transfer_waits_until_the_mixtures_determine_every_row():
    names = ["a", "b", "c"]
    est = OnlineTransfer(names)
    est.observe_eval(dict.fromkeys(names, 0.0))
    for k in range(10):  # "c" is never trained: its row of T is not determined by these windows
        w = {"a": 0.5 + 0.04 * k, "b": 0.5 - 0.04 * k, "c": 0.0}
        est.observe_mixture(w)
        est.observe_eval({"a": 0.1 * k, "b": 0.0, "c": 0.0})
    assert est.estimate() is None


def test_planner_state_round_trip():
    p = planner(make_config("adaptive"))
    feed(p, 6, {"s1": 0.5, "s2": 0.1, "c1": 0.2}, {"s1": 1.0, "s2": 0.9, "c1": 1.2})
    p.observe_eval(0, {"s1": 0.5, "s2": 0.5, "c1": 0.5})
    again = planner(make_config("adaptive"))
    again.load_state_dict(p.state_dict())
    assert again.plan(7) == p.plan(7)


def test_gradient_sketch_cosines():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    model.get_output_embeddings = lambda: model[0]
    sk = GradientSketch(model, dim=64)
    x = torch.randn(3, 4)
    a = sk.sketch(model(x).sum())
    b = sk.sketch(2 * model(x).sum())
    c = sk.sketch(-model(x).sum())
    cos = cosine_matrix({"a": a, "b": b, "c": c})
    assert cos["a"]["b"] == pytest.approx(1.0, abs=1e-5) and cos["a"]["c"] == pytest.approx(-1.0, abs=1e-5)


def test_transfer_policy_run_logs_alignment(tmp_path, tiny_random_lm_dir):
    from tests.test_trainer import read_jsonl, write_config

    path = write_config(
        tmp_path, tiny_random_lm_dir, {"steps": 2}, scheduler={"policy": "adaptive", "alignment_every": 1}
    )
    assert main(["train", str(path)]) == 0
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert set(metrics[0]["alignment"]) == {"sorting", "acrostic"}
    assert metrics[0]["scheduler/reason"].startswith("adaptive")


def test_order_command_probe_and_run(tmp_path, tiny_random_lm_dir, capsys):
    from tests.test_trainer import write_config

    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 1})
    assert main(["order", str(path), "--probe-steps", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out["order"]) == ["acrostic", "sorting"]
    assert set(out) >= {"order", "phases", "transfer", "rationale", "predicted_gain", "saturated"}
    assert set(out["predicted_gain"]) == {"mean", "low", "high", "stderr", "unit"}
    assert set(out) >= {"transfer_stderr", "transfer_used", "beats_joint", "vs", "eval_n", "probe_steps"}
    record = json.loads((tmp_path / "run" / "transfer.json").read_text())
    assert record["probe_steps"] == 1 and set(record["after"]) == {"sorting", "acrostic"}
    assert record["probe_seeds"] == 2 and len(record["after_seeds"]) == 2
    names = ["sorting", "acrostic"]
    assert record["eval_n"] == out["eval_n"] and set(record["eval_n"]) == set(names)
    A, b = probe_stderr(record["before"], record["after"], record["eval_n"], names)
    stderr = np.array([[record["stderr"][i][j] for j in names] for i in names])
    assert np.all(stderr >= np.sqrt(A**2 + b**2) - 1e-9)  # eval noise, and the training noise on top
    assert main(["order", str(path), "--run", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    for run, said in [("nope", "no such run folder"), ("empty", "no transfer estimate in this run")]:
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert main(["order", str(path), "--run", str(tmp_path / run)]) == 2
        assert capsys.readouterr().err.strip() == f"error: --run {tmp_path / run}: " + said + (
            ""
            if run == "nope"
            else " (no transfer.json, no online estimate in its checkpoints); run `spectrum-rl order CONFIG` to probe"
        )
    assert "recommended order" in text
    line = "predicted gain over joint training: " if out["beats_joint"] else "no order is predicted to beat joint"
    assert (
        line in text and f"n = {record['eval_n']['sorting']} eval prompts per domain, 1 probe step x 2 seeds;" in text
    )
    assert main(["order", str(path), "--run", str(tmp_path / "nothing")]) == 2
    capsys.readouterr()
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    assert main(["domains", str(path), "--dot", "--run", str(tmp_path / "run")]) == 0
    assert "score" in capsys.readouterr().out  # annotated with the run's held-out scores


def test_task_graph_attributes_and_transfer_edges():
    from types import SimpleNamespace

    from spectrum_rl.scheduler.graph import build_domain_graph, to_dot

    src = SimpleNamespace(describe=lambda: "builtin:x")
    doms = [
        SimpleNamespace(name="a", kind="structured", after=[], source=src),
        SimpleNamespace(name="b", kind="creative", after=["a"], source=src),
    ]
    g = build_domain_graph(doms, {"a": 0.4}, {"b": 1.2}, {"b": {"a": -0.3, "b": 0.5}, "a": {"b": 0.01}})
    assert g.nodes["a"]["score"] == 0.4 and g.nodes["b"]["entropy"] == 1.2
    assert g.edges["a", "b"]["kind"] == "prerequisite"
    assert g.edges["b", "a"] == {"kind": "transfer", "weight": -0.3}
    assert "style=dashed" in to_dot(g)


def test_adaptive_mu_run_routes_demonstrations_to_the_domain_rl_is_blind_on(tmp_path, tiny_random_lm_dir):
    from tests.test_trainer import read_jsonl, write_config

    def domain(name: str, generator: str, reward: list[dict]) -> dict:
        return {
            "name": name,
            "kind": "structured",
            "source": {"type": "builtin", "generator": generator},
            "eval": {"size": 6},
            "reward": reward,
        }

    domains = [  # a random model never sorts exactly: every group scores all 0 on "blind"
        domain("blind", "sorting", [{"type": "exact_match"}]),
        domain("seen", "reversal", [{"type": "similarity"}]),
    ]
    sft = {
        "mu": {"type": "adaptive"},
        "per_domain": {"seen": {"type": "adaptive", "blind_below": 0.0}},  # its accuracy never counts as blind
        "expert_ratio": 1.0,
    }
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 3, "sft": sft}, domains=domains)
    assert main(["train", str(path)]) == 0
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for m in metrics:  # every step, every domain
        assert {"mu/blind", "mu/seen", "sft/samples/blind", "sft/samples/seen"} <= set(m)
    assert all(m["blind/blind"] == 1.0 for m in metrics) and min(m["blind/seen"] for m in metrics) < 1.0
    assert metrics[0]["sft/samples/blind"] == 0  # mu starts at `initial` (0); blindness moves it after a step
    last = metrics[-1]
    assert last["mu/blind"] > 0.6 and last["mu/blind"] > last["mu/seen"]
    assert last["sft/samples/blind"] > last["sft/samples/seen"]


def ladder_planner(policy: str, steps: int = 100, **scheduler) -> Planner:
    """s1 with levels 2..5, c1 without a range."""
    config = make_config(policy, domains=[("s1", "structured", []), ("c1", "creative", [])], **scheduler)
    sc = config.scheduler
    return Planner(config.kinds, config.prerequisites, sc, config.training.sft, 8, ladders={"s1": (2, 5)}, steps=steps)


def feed_levels(p: Planner, steps: int, rates: dict[tuple[str, int | None], float]) -> None:
    """Groups at planted pass rates per (domain, level)."""
    for _ in range(steps):
        groups = tuple(
            (d, None, level, tuple(float(i < round(10 * r)) for i in range(10))) for (d, level), r in rates.items()
        )
        p.observe_step(StepSignals(prompt_outcomes=groups))


@pytest.mark.parametrize("policy", ["sec", "dump", "thompson"])
def test_level_bandits_send_the_rollouts_to_the_level_whose_pass_rate_is_near_one_half(policy):
    p = ladder_planner(policy)
    rates = {("s1", 2): 1.0, ("s1", 3): 0.5, ("s1", 4): 0.0, ("s1", 5): 0.0, ("c1", None): 1.0}
    feed_levels(p, 30, rates)
    plan = p.plan(30)
    assert max(plan.levels["s1"], key=plan.levels["s1"].get) == 3
    assert plan.levels["s1"][3] > 0.5 and plan.mixture["s1"] > plan.mixture["c1"]


def test_thompson_draws_an_unmeasured_arm_again_and_is_reproducible():
    p = ladder_planner("thompson")
    feed_levels(p, 30, {("s1", 2): 1.0, ("s1", 3): 1.0, ("s1", 4): 1.0, ("c1", None): 1.0})  # s1@5 never drawn
    shares = [p.plan(30 + k).levels["s1"].get(5, 0.0) for k in range(10)]
    assert np.mean(shares) > 0.5  # its Beta(1, 1) posterior often draws a pass rate near 1/2
    again = ladder_planner("thompson")
    again.load_state_dict(p.state_dict())
    assert again.plan(45) == p.plan(45)


def test_a_drawing_policy_draws_from_the_run_seed():
    """Two seeds' thompson plans differ (their draws are independent); one seed's plans repeat."""
    import spectrum_rl as srl

    def plans(seed: int) -> list[dict]:
        domains = [srl.Domain("a", levels=(1, 4)), srl.Domain("b"), srl.Domain("c")]
        scheduler = srl.Scheduler(domains, prompts_per_step=8, policy="thompson", seed=seed)
        return [scheduler.plan().mixture for _ in range(5)]

    assert plans(0) == plans(0) and plans(1) == plans(1)
    assert plans(0) != plans(1)


def test_oracle_static_and_ladder_follow_the_hand_set_weights():
    weights, level_weights = {"s1": 3.0, "c1": 1.0}, {"s1": {3: 1.0, 4: 1.0}}
    static = ladder_planner("oracle_static", weights=weights, level_weights=level_weights).plan(0)
    assert static.mixture == pytest.approx({"s1": 0.75, "c1": 0.25})
    assert static.levels["s1"] == pytest.approx({3: 0.5, 4: 0.5})
    ladder = ladder_planner("oracle_ladder", steps=100, replay=0.2)
    assert ladder.plan(0).levels["s1"] == {2: 1.0}
    assert ladder.plan(60).levels["s1"] == pytest.approx({2: 0.1, 3: 0.1, 4: 0.8})
    assert "s1@5" in ladder.plan(99).reason


def test_budget_paced_policies_follow_the_rollouts_spent_when_the_budget_is_in_rollouts():
    """With ``max_rollouts`` the run ends on its rollouts and ``steps`` is only a cap: the ladder
    climbs, the lock opens and the pass-rate target moves by the share of rollouts generated."""
    config = make_config("oracle_ladder", domains=[("s1", "structured", []), ("c1", "creative", [])], replay=0.2)
    sc, sft = config.scheduler, config.training.sft
    ladder = Planner(config.kinds, {}, sc, sft, 8, ladders={"s1": (2, 5)}, steps=300, max_rollouts=1000)
    ladder.observe_rollouts(600)  # step 20 of a 300-step cap, 60% of the rollouts
    assert ladder.plan(20).levels["s1"] == pytest.approx({2: 0.1, 3: 0.1, 4: 0.8})
    ladder.observe_rollouts(1000)
    assert "s1@5" in ladder.plan(30).reason

    config = make_config("adaptive", domains=[("s1", "structured", []), ("c1", "creative", ["s1"])], unlock_share=0.25)
    lock = Planner(config.kinds, config.prerequisites, config.scheduler, sft, 8, steps=300, max_rollouts=1000)
    lock.observe_eval(0, {"s1": 0.0, "c1": 0.0})
    lock.observe_rollouts(200)
    assert lock.plan(10).mixture["c1"] == 0.0
    lock.observe_rollouts(260)
    assert lock.plan(11).mixture["c1"] > 0.0


def test_difficulty_modes_without_a_policy_choice():
    uniform = ladder_planner("joint", difficulty={"mode": "uniform"}).plan(0).levels["s1"]
    assert uniform == pytest.approx(dict.fromkeys(range(2, 6), 0.25))
    assert ladder_planner("joint", difficulty={"mode": "fixed", "fixed_level": 0.5}).plan(0).levels["s1"] == {3: 1.0}
    assert ladder_planner("joint").plan(0).levels["s1"] == pytest.approx({2: 0.85, 3: 0.15})  # the frontier


def test_a_domain_at_the_floor_is_still_drawn():
    """2% of 8 prompts is 0.16 of a prompt: the allocation credit carries it, so a domain the
    bandit all but dropped is drawn about every 6 steps and measured again."""
    p = planner(make_config("learnability", tau=0.05))
    feed(p, 10, {"s1": 0.5, "s2": 1.0, "c1": 1.0})
    drawn = [p.plan(10 + k).prompts.get("c1", 0) for k in range(30)]
    assert p.plan(40).mixture["c1"] < 0.05 and sum(drawn) >= 3


def test_adaptive_lock_opens_after_its_share_of_the_budget():
    config = make_config("adaptive", domains=[("s1", "structured", []), ("c1", "creative", ["s1"])], unlock_share=0.25)
    sc = config.scheduler
    p = Planner(config.kinds, config.prerequisites, sc, config.training.sft, 8, steps=100)
    p.observe_eval(0, {"s1": 0.0, "c1": 0.0})
    assert p.plan(24).mixture["c1"] == 0.0
    plan = p.plan(25)
    assert plan.mixture["c1"] > 0 and "held its lock for unlock_share 0.25 of the run (step 25)" in plan.reason


def test_adaptive_forgetting_guard_ignores_a_drop_within_the_eval_noise():
    """Held-out evals alone (no training rollouts of s2): three evals at 0.5 after three at 0.6 on
    50 prompts (z 1.7) do not fire; three at 0.3 (z 5.2) do."""
    config = make_config("adaptive")
    sc = config.scheduler
    p = Planner(config.kinds, config.prerequisites, sc, config.training.sft, 8, eval_n=dict.fromkeys(config.kinds, 50))
    for step, s2 in enumerate([0.6, 0.6, 0.6, 0.5, 0.5, 0.5]):
        p.observe_eval(step, {"s1": 0.6, "s2": s2, "c1": 0.6})
    assert "forgetting guard" not in p.plan(6).reason
    for step in range(6, 9):
        p.observe_eval(step, {"s1": 0.6, "s2": 0.3, "c1": 0.6})
    assert "forgetting guard: s2 held-out 0.30 < best 0.60 over 3 evals" in p.plan(9).reason


def test_adaptive_entropy_guard_leaves_a_solved_domain_alone():
    """Low entropy on a domain that passes >= 90% of its rollouts is convergence, not collapse."""
    p = planner(make_config("adaptive"))
    feed(p, 6, {"s1": 0.3, "s2": 0.3, "c1": 1.0}, {"s1": 1.0, "s2": 1.0, "c1": 1.0})
    feed(p, 20, {"s1": 0.3, "s2": 0.3, "c1": 1.0}, {"s1": 1.0, "s2": 1.0, "c1": 0.05})
    assert "entropy guard" not in p.plan(26).reason


def test_adaptive_measures_an_unseen_domain_first():
    p = planner(make_config("adaptive"))
    feed(p, 5, {"s1": 0.5, "s2": 0.5})  # c1 never drawn: its learnability counts as the most
    assert p.plan(5).mixture["c1"] > p.plan(5).mixture["s1"]


def test_target_pass_follows_a_target_that_moves_from_easy_to_hard():
    """Planted pass rates 0.9 (s1@2), 0.5 (s1@3), 0.1 (s1@4, s1@5, c1): early the target 0.7 puts
    the most weight on the easy level, late the target 0.3 moves it to the harder ones."""
    p = ladder_planner("target_pass", steps=100)
    feed_levels(p, 40, {("s1", 2): 0.9, ("s1", 3): 0.5, ("s1", 4): 0.1, ("s1", 5): 0.1, ("c1", None): 0.1})
    early, late = p.plan(0), p.plan(99)
    assert max(early.levels["s1"], key=early.levels["s1"].get) == 2
    assert max(late.levels["s1"], key=late.levels["s1"].get) in (3, 4, 5) and late.levels["s1"][2] < 0.2
    assert "target_pass 0.70" in early.reason and "target_pass 0.30" in late.reason
