"""The SFT/RL blend (scheduler/mu.py, scheduler/blend.py): mu schedules against their formulas, how
a plan becomes rows and, by one call (``weigh``), row weights; and the registries that make a new
schedule or policy one class with its own parameters."""

from __future__ import annotations

import json
import random

import pytest

from spectrum_rl.config import Config, load_config
from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.blend import SFTConfig, allocate_rows, layer_factors, lr_factor, mean_mu, weigh
from spectrum_rl.scheduler.mu import MU_SCHEDULES, ConstantParams, MuParams, MuSchedule, chord_mu, mu_schedule
from spectrum_rl.scheduler.plan import Planner
from spectrum_rl.scheduler.policies import POLICIES, Decision, Policy
from spectrum_rl.scheduler.shares import Credit
from spectrum_rl.scheduler.step import DomainPlan, DomainSignals, GroupOutcome, StepPlan, StepSignals


def params(name: str, **fields) -> MuParams:
    """A mu schedule's parameters, validated as a config's."""
    return MU_SCHEDULES.get(name).Params(type=name, **fields)


def mu_at(spec: MuParams, step: int) -> float:
    return mu_schedule(spec).mu(step)


def step_plan(mixture, mu, prompts=None, demos=None, gated=()) -> StepPlan:
    """A StepPlan from per-domain mappings (one DomainPlan record per domain)."""
    prompts, demos = prompts or {}, demos or {}
    return StepPlan(
        {d: DomainPlan(w, mu[d], prompts.get(d, 0), demos.get(d, 0), gated=d in gated) for d, w in mixture.items()}, ""
    )


def test_chord_mu_published_points():
    peak, valley, W, D = 0.9, 0.05, 10, 200
    assert chord_mu(0, peak, valley, W, D) == 0.0
    assert chord_mu(5, peak, valley, W, D) == pytest.approx(0.45)
    assert chord_mu(W, peak, valley, W, D) == pytest.approx(peak)
    assert chord_mu(W + D // 2, peak, valley, W, D) == pytest.approx((peak + valley) / 2)
    assert chord_mu(W + D, peak, valley, W, D) == pytest.approx(valley)
    spec = params("cosine", warmup=W, decay_steps=D)
    assert mu_at(spec, W + D // 2) == pytest.approx(0.475)


def test_staged_and_other_schedules():
    staged = params("staged", sft_steps=3)
    assert [mu_at(staged, s) for s in range(5)] == [1, 1, 1, 0, 0]
    lin = params("linear", start=1.0, end=0.0, steps=4)
    assert [mu_at(lin, s) for s in (0, 2, 4, 9)] == [1.0, 0.5, 0.0, 0.0]
    assert mu_at(params("sft_only"), 7) == 1.0
    assert mu_at(params("rl_only"), 7) == 0.0
    assert mu_at(params("constant", value=0.3), 7) == 0.3


def test_adaptive_mu_rises_on_disruption_and_decays_on_recovery():
    rule = mu_schedule(params("adaptive", up=0.3, decay=0.5, valley=0.05, peak=0.9, margin=0.02))
    rule.observe(0.5)  # baseline
    assert rule.mu(1) == 0.0
    rule.observe(0.3)  # disruption
    assert rule.mu(2) == pytest.approx(0.3)
    rule.observe(0.2)
    assert rule.mu(3) == pytest.approx(0.6)
    rule.observe(0.55)  # recovered
    assert rule.mu(4) == pytest.approx(0.3)
    again = mu_schedule(rule.params)
    again.load_state_dict(rule.state_dict())
    assert again.mu(5) == rule.mu(5)


def test_adaptive_mu_climbs_where_rl_is_blind_and_decays_as_its_signal_appears():
    rule = mu_schedule(params("adaptive", peak=0.9, valley=0.05, smoothing=0.5, blind_below=0.05))
    rule.observe(0.3)  # held-out score above blind_below: only the rollouts can say it is blind
    rule.observe_step(1.0)  # every group's rewards all 0
    assert rule.mu(1) == pytest.approx(0.5 * 0.9)  # half way to peak: smoothed, not a jump
    for _ in range(8):
        rule.observe_step(1.0)
    assert rule.mu(9) > 0.89
    for _ in range(8):  # its rollouts start to differ: the signal has appeared
        rule.observe_step(0.0)
    assert rule.mu(17) < 0.06
    rule.observe_step(0.5)  # half its groups blind: half way between valley and peak
    assert rule.mu(18) == pytest.approx(0.05 + 0.5 * (0.05 + 0.85 * 0.5 - 0.05), abs=1e-2)


def test_adaptive_mu_counts_a_domain_blind_while_its_held_out_score_is_under_the_threshold():
    rule = mu_schedule(params("adaptive", blind_below=0.05))
    rule.observe(0.0)
    for _ in range(8):  # partial rewards give its groups variance, but its accuracy is 0
        rule.observe_step(0.0)
    assert rule.mu(8) > 0.85
    rule.observe(0.4)  # learned
    for _ in range(8):  # no rollouts of it (the mixture skipped it): the held-out score decides
        rule.observe_step(None)
    assert rule.mu(16) < 0.06
    again = mu_schedule(rule.params)
    again.load_state_dict(rule.state_dict())
    assert again.mu(17) == rule.mu(17) and again.state_dict() == rule.state_dict()


def test_demonstrations_follow_need_not_the_rl_share():
    mixture = {"a": 0.96, "b": 0.02, "c": 0.02}  # a learnability bandit's mixture: b and c at the floor
    mu = {"a": 0.05, "b": 0.9, "c": 0.05}  # b is blind to RL
    _, by_mixture = allocate_rows(mixture, mu, {}, 8, 2.0)
    _, by_need = allocate_rows(mixture, mu, {}, 8, 2.0, by_need=["a", "b", "c"])
    assert by_mixture.get("b", 0) <= 1 and sum(by_mixture.values()) == 16
    assert by_need == {"a": 1, "b": 14, "c": 1}  # 16 demonstrations in proportion to mu
    _, locked = allocate_rows({"a": 1.0, "b": 0.0, "c": 0.0}, mu, {}, 8, 2.0, by_need=["a", "b", "c"])
    assert locked == {"a": 16}  # a domain the mixture does not train (locked) gets no rows at all


def test_step_mu_is_the_mean_over_the_steps_rows():
    uniform = step_plan({"a": 0.9, "b": 0.1}, {"a": 0.3, "b": 0.3}, {"a": 7, "b": 1}, {"a": 3, "b": 1})
    assert mean_mu(uniform, uniform.mu) == pytest.approx(0.3)
    routed = step_plan({"a": 0.9, "b": 0.1}, {"a": 0.05, "b": 0.9}, {"a": 8}, {"a": 2, "b": 14})
    assert mean_mu(routed, routed.mu) == pytest.approx((10 * 0.05 + 14 * 0.9) / 24)
    no_rows = step_plan({"a": 0.5, "b": 0.5}, {"a": 0.2, "b": 0.4})
    assert mean_mu(no_rows, no_rows.mu) == pytest.approx(0.3)


def _sorting_domains(names) -> list[dict]:
    """Structured domains, each a copy of the built-in sorting generator."""
    source = {"type": "builtin", "generator": "sorting"}
    return [{"name": n, "kind": "structured", "source": source, "reward": [{"type": "exact_match"}]} for n in names]


def test_planner_routes_sft_to_the_blind_domain_whatever_its_rl_share():
    config = Config.model_validate(
        {
            "domains": _sorting_domains(("seen", "blind")),
            "scheduler": {"policy": {"type": "joint", "weights": {"seen": 0.98, "blind": 0.02}}},
            "training": {"prompts_per_step": 8, "sft": {"mu": "adaptive", "expert_ratio": 2.0}},
        }
    )
    sc = config.scheduler
    p = Planner(config.kinds, config.prerequisites, sc, config.training.sft, 8)
    p.observe_eval(0, {"seen": 0.4, "blind": 0.0})
    for step in range(6):
        p.plan(step)
        p.observe_step(StepSignals({"seen": DomainSignals(samples=48, blind=0.0)}))  # blind had no rollouts
    plan = p.plan(6)
    assert plan.prompts == {"seen": 8} and plan.mu["blind"] > 0.85 and plan.mu["seen"] < 0.06
    assert plan.demos["blind"] >= 14


def test_valley_above_peak_is_rejected():
    with pytest.raises(ValueError, match="valley"):
        params("cosine", peak=0.1, valley=0.5)


def test_which_schedules_need_demonstrations():
    needs = {name: mu_schedule(params(name)).max_mu() > 0 for name in MU_SCHEDULES}
    assert needs == {
        "constant": True,
        "linear": True,
        "cosine": True,
        "staged": True,
        "sft_only": True,
        "rl_only": False,
        "adaptive": True,
        "gate": True,
    }
    assert mu_schedule(params("constant", value=0.0)).max_mu() == 0


def test_rows_are_allocated_by_mixture_and_mu():
    mixture = {"a": 0.5, "b": 0.25, "c": 0.25}
    prompts, demos = allocate_rows(mixture, {"a": 0.0, "b": 1.0, "c": 0.5}, {}, 8, 0.5)
    assert prompts == {"a": 5, "c": 3}  # b is SFT only: no rollouts
    assert demos == {"b": 2, "c": 2}  # ceil(0.5 * 8) = 4 demonstrations, by mixture weight
    prompts, demos = allocate_rows(mixture, {"a": 0.0, "b": 0.0, "c": 0.0}, ["c"], 8, 0.5)
    assert sum(prompts.values()) == 8 and demos == {}  # a gated domain takes its demonstrations per prompt


SIX = ("addition", "sorting", "first_letter", "acrostic", "haiku", "rhyme")


def _six_domain_planner(weights: dict[str, float] | None = None, mu: str = "rl_only") -> Planner:
    config = Config.model_validate(
        {
            "domains": _sorting_domains(SIX),
            "scheduler": {"policy": {"type": "joint", "weights": weights}},
            "training": {"prompts_per_step": 8, "sft": {"mu": {"type": mu, **_value(mu)}, "expert_ratio": 0.5}},
        }
    )
    return Planner(config.kinds, config.prerequisites, config.scheduler, config.training.sft, 8)


def _value(mu: str) -> dict:
    return {"value": 0.3} if mu == "constant" else {}


def _counts(plans: list[StepPlan], rows: str = "prompts") -> dict[str, int]:
    return {n: sum(getattr(plan, rows).get(n, 0) for plan in plans) for n in SIX}


def test_a_uniform_mixture_is_uniform_over_steps_not_rounded_the_same_way_each_step():
    planner = _six_domain_planner(mu="constant")
    plans = [planner.plan(step) for step in range(200)]
    assert all(sum(plan.prompts.values()) == 8 and sum(plan.demos.values()) == 4 for plan in plans)  # exact
    for n, count in _counts(plans).items():  # largest remainder alone gave 2 to the first two every step
        assert abs(count - 200 * 8 / 6) <= 2, n
    for n, count in _counts(plans, "demos").items():  # ceil(0.5 * 8) = 4 demonstrations a step, by their own credit
        assert abs(count - 200 * 4 / 6) <= 2, n
    for start in range(0, 200, 7):  # any window, not only from the start
        window = plans[start : start + 13]
        for n, count in _counts(window).items():
            assert abs(count - len(window) * 8 / 6) < 2, (start, n)


def test_a_domain_at_a_2_percent_floor_is_sampled():
    weights = {n: 0.98 / 5 for n in SIX} | {"rhyme": 0.02}
    planner = _six_domain_planner(weights)
    plans = [planner.plan(step) for step in range(200)]
    assert all(sum(plan.prompts.values()) == 8 for plan in plans)
    assert abs(_counts(plans)["rhyme"] - 0.02 * 8 * 200) <= 2  # 0.16 of a prompt a step: 0 every step, rounded
    assert min(step for step, plan in enumerate(plans) if plan.prompts.get("rhyme")) < 7


def test_a_resumed_planner_allocates_as_an_uninterrupted_one():
    weights = dict(zip(SIX, (0.3, 0.25, 0.2, 0.13, 0.1, 0.02)))
    through = _six_domain_planner(weights, mu="constant")
    first = [through.plan(step) for step in range(57)]
    state = json.loads(json.dumps(through.state_dict()))  # as a checkpoint keeps it
    assert state["credit"]["prompts"] and state["credit"]["demos"]
    resumed = _six_domain_planner(weights, mu="constant")
    resumed.load_state_dict(state)
    assert [resumed.plan(step) for step in range(57, 120)] == [through.plan(step) for step in range(57, 120)]
    restarted = _six_domain_planner(weights, mu="constant")  # without the credit the rounding restarts
    assert [restarted.plan(step) for step in range(57)] == first


def test_credit_meets_a_changing_mixture_and_a_returning_domain_gets_no_burst():
    rng = random.Random(0)
    names = list("abcdef")
    credit, targets, counts = Credit(), [], []
    for step in range(300):
        mixture = {n: rng.random() * rng.choice([1.0, 0.02]) for n in names}
        if 100 <= step < 160:  # a and b leave the mixture for 60 steps
            mixture |= {"a": 0.0, "b": 0.0}
        got = credit.allocate(mixture, 8, names)
        assert sum(got.values()) == 8 and min(got.values()) >= 0
        norm = sum(mixture.values())
        targets.append({n: mixture[n] / norm * 8 for n in names})
        counts.append(got)
    for lo in range(0, 300, 10):
        for hi in range(lo + 1, 301, 10):
            for n in names:
                given = sum(c[n] for c in counts[lo:hi])
                assert abs(given - sum(t[n] for t in targets[lo:hi])) < 2, (lo, hi, n)
    assert all(counts[step]["a"] == counts[step]["b"] == 0 for step in range(100, 160))
    assert counts[160]["a"] <= targets[160]["a"] + 2  # no debt or credit built up while it was out


def test_one_step_alone_is_rounded_by_largest_remainder():
    assert Credit().allocate(dict.fromkeys(SIX, 1 / 6), 8) == dict(zip(SIX, (2, 2, 1, 1, 1, 1)))
    credit = Credit()
    second = [credit.allocate(dict.fromkeys(SIX, 1 / 6), 8) for _ in range(2)][1]
    assert second == dict(zip(SIX, (1, 1, 2, 2, 1, 1)))  # the next step pays the others first
    assert credit.allocate({"a": 1.0}, 8, ["a", "b"]) == {"a": 8, "b": 0}


def _group(domain: str, rewards: tuple[float, ...], expert: bool = True) -> GroupOutcome:
    return GroupOutcome(domain, rewards, len(set(rewards)) == 1, expert)


GATE = SFTConfig(per_domain={"g": {"type": "gate", "gamma": 0.0}})


def _weigh(plan: StepPlan, groups, demos, sft: SFTConfig = GATE, **kw):
    return weigh(plan, groups, demos, sft, group_size=kw.pop("group_size", 3), learning_rate=1e-4, **kw)


def test_one_call_weighs_every_row_blend_gate_and_zero_variance():
    plan = step_plan({"a": 0.5, "g": 0.5}, {"a": 0.3, "g": 0.0}, gated=["g"])
    groups = [
        _group("a", (1.0, 0.0, 0.0)),
        _group("g", (0.0, 0.0, 0.0)),
        _group("g", (0.0, 0.0, 0.0), expert=False),  # no demonstration: stays RL
        _group("g", (1.0, 0.0, 0.0)),
        _group("a", (1.0, 1.0, 1.0)),
    ]
    # this process switched 1 of 3 gate prompts; with another process's counts the fraction is the step's
    w = _weigh(plan, groups, ["a"])
    assert w.mu == {"a": 0.3, "g": pytest.approx(1 / 3)}
    # 1 - mu; the gate domain's RL groups weigh 1 - f, its switched prompt's demonstration f
    assert w.rl == pytest.approx([0.7, 0.0, 2 / 3, 2 / 3, 0.7])
    assert w.gated == pytest.approx([0.0, 1 / 3, 0.0, 0.0, 0.0])
    assert w.sft == [0.3] and w.lr_scale == 1.0 and w.layer_scales is None
    everywhere = _weigh(plan, groups, ["a"], total=lambda counts: [c * 2 + x for c, x in zip(counts, (0, 2))])
    assert everywhere.mu["g"] == pytest.approx(2 / 8)  # 2 switched of 8 prompts over all processes
    w = _weigh(plan, groups, ["a"], drop_zero_variance=True)
    assert w.rl[4] == 0.0 and w.rl[0] == pytest.approx(0.7)
    layered = SFTConfig(per_domain={"g": {"type": "gate"}}, layer_mu="increasing")
    w = _weigh(plan, groups, ["a"], layered, layer_depth=[0.0, 0.5, 1.0])
    assert w.rl == [1.0, 0.0, 1.0, 1.0, 1.0] and w.sft == [1.0] and w.gated == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert w.layer_scales == layer_factors([0.0, 0.5, 1.0], w.mean_mu, "increasing")


def test_gate_gives_every_prompt_one_unit_of_weight():
    """HPT as a per-prompt switch: with k of n prompts switched, the SFT part carries k/n of the
    step's weight and the RL part (n-k)/n, whatever k is (one failed prompt is not half the step)."""
    plan = step_plan({"g": 1.0}, {"g": 0.0}, gated=["g"])
    for k in range(9):
        groups = [_group("g", (0.0,) * 4 if i < k else (1.0, 0.0, 0.0, 0.0)) for i in range(8)]
        w = _weigh(plan, groups, [], group_size=4)
        rl_part = max(w.rl)  # every RL row of the step has this weight; the part is a mean over its tokens
        sft_part = max(w.gated)
        assert sum(g > 0 for g in w.gated) == k and w.mu["g"] == pytest.approx(k / 8)
        assert rl_part == pytest.approx(1 - k / 8) and sft_part == pytest.approx(k / 8)


def test_layer_factors_keep_the_average_mu():
    depth = [0.0] + [(i + 0.5) / 4 for i in range(4)] * 3 + [1.0]
    for mu in (0.0, 0.05, 0.3, 0.5, 0.72, 0.9, 1.0):
        for mode in ("increasing", "decreasing"):
            rl, sft = layer_factors(depth, mu, mode)
            assert sum(sft) / len(sft) == pytest.approx(mu)
            assert all(0.0 <= m <= 1.0 for m in sft) and all(r + m == pytest.approx(1.0) for r, m in zip(rl, sft))
    rising = layer_factors(depth, 0.3, "increasing")[1]
    assert rising[0] < rising[1] < rising[-1]  # deeper parameters get more SFT
    assert layer_factors(depth, 0.3, "increasing")[1][1] == pytest.approx(2 * 0.3 * 0.125)  # mu_l = 2 mu f


class _Half(MuSchedule):
    """mu = value / 2 (a toy schedule for the test)."""

    Params = ConstantParams

    def mu(self, step: int) -> float:
        return self.params.value / 2


class _Last(Policy):
    """All weight on the last domain (a toy policy for the test)."""

    def decide(self, step, view) -> Decision:
        return Decision({n: float(n == self.names[-1]) for n in self.names}, "toy: last domain")


@pytest.fixture
def toys():
    MU_SCHEDULES.register("toy_half")(_Half)
    POLICIES.register("toy_last")(_Last)
    yield
    MU_SCHEDULES.unregister("toy_half")
    POLICIES.unregister("toy_last")


def _config(tmp_path, policy: str, schedule: str):
    path = tmp_path / "c.yaml"
    path.write_text(f"""
scheduler: {{policy: {policy}}}
training: {{sft: {{mu: {{type: {schedule}{", value: 0.4" if schedule in ("toy_half", "constant") else ""}}}}}}}
domains:
  - {{name: a, kind: structured, source: {{type: builtin, generator: sorting}}, reward: [{{type: exact_match}}]}}
  - {{name: b, kind: creative, source: {{type: builtin, generator: acrostic}}, reward: [{{type: constraint}}]}}
""")
    return path


def test_a_toy_policy_and_mu_schedule_through_the_registries_alone(tmp_path, toys):
    config = load_config(_config(tmp_path, "toy_last", "toy_half"))
    planner = Planner(config.kinds, config.prerequisites, config.scheduler, config.training.sft, 8)
    plan = planner.plan(0)
    assert plan.mixture == {"a": 0.0, "b": 1.0} and plan.reason == "toy: last domain"
    assert plan.mu == {"a": pytest.approx(0.2), "b": pytest.approx(0.2)}
    assert plan.prompts == {"b": 8} and plan.demos == {"b": 4}


def test_unknown_names_list_the_registered_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, "adaptve", "rl_only"))
    assert "scheduler.policy: unknown policy 'adaptve'; did you mean 'adaptive'?; expected one of joint" in str(
        err.value
    )
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, "joint", "cosin"))
    assert "training.sft.mu.type: unknown mu schedule 'cosin'; did you mean 'cosine'?" in str(err.value)
    assert "rl_only, adaptive, gate" in str(err.value)


def test_the_reference_lists_the_registered_names(toys):
    from spectrum_rl.config import reference_markdown

    text = reference_markdown()
    assert "`scheduler.policy: {type: toy_last}` — All weight on the last domain" in text
    assert "`training.sft.mu: {type: toy_half}` — mu = value / 2" in text and "`training.sft.mu.value`" in text
    assert (
        Config.model_validate(
            {
                "domains": [
                    {
                        "name": "a",
                        "kind": "structured",
                        "reward": [{"type": "exact_match"}],
                        "source": {"type": "builtin", "generator": "sorting"},
                    }
                ],
                "scheduler": {"policy": "toy_last"},
            }
        ).scheduler.policy.type
        == "toy_last"
    )


def test_sft_learning_rate_blends_with_mu():
    sft = SFTConfig(learning_rate=5e-4)
    assert lr_factor(0.0, sft, 1e-4) == pytest.approx(1.0)  # pure RL: the RL rate
    assert lr_factor(1.0, sft, 1e-4) == pytest.approx(5.0)  # pure SFT: the SFT rate
    assert lr_factor(0.25, sft, 1e-4) * 1e-4 == pytest.approx(0.75 * 1e-4 + 0.25 * 5e-4)
    assert lr_factor(0.7, SFTConfig(), 1e-4) == 1.0  # unset: one rate


def test_a_planner_state_of_another_layout_is_refused(tmp_path):
    config = load_config(_config(tmp_path, "adaptive", "adaptive"))
    make = lambda: Planner(config.kinds, config.prerequisites, config.scheduler, config.training.sft, 8)  # noqa: E731
    state = make().state_dict()
    make().load_state_dict(json.loads(json.dumps(state)))  # its own layout loads
    for other in ({**state, "layout": 1}, {k: v for k, v in state.items() if k != "layout"} | {"version": 6}):
        with pytest.raises(ConfigError, match="layout"):
            make().load_state_dict(other)


def test_each_schedule_takes_only_its_own_parameters():
    with pytest.raises(ValueError, match="peak"):
        SFTConfig(mu={"type": "constant", "peak": 0.9})
    assert SFTConfig(mu="cosine").mu == params("cosine")  # a bare name: its defaults
    with pytest.raises(ValueError, match="'schedule' is gone: write type: cosine"):
        SFTConfig(mu={"schedule": "cosine"})
