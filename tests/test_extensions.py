"""A user's own extensions through the public API alone (``import spectrum_rl as srl``): a reward
component, a mixture policy, a mu schedule, an RL loss, an advantage estimator and a row source,
each registered under a name, configured by that name with its own parameters, and used by two
steps of training. Each records its calls, so the test fails if a registered class is accepted
but not run."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from pydantic import Field

import spectrum_rl as srl

CALLS: Counter = Counter()


class ShortSpec(srl.RewardSpec):
    """`user_short`: 1 for an answer of at most `limit` characters."""

    limit: int = Field(3, ge=1, description="Longest answer that scores 1.")

    def build(self, base_dir):
        return Short(self)


class Short(srl.RewardComponent):
    def score(self, completions, example):
        CALLS["reward"] += 1
        return [float(len(c.strip()) <= self.spec.limit) for c in completions]


class FirstParams(srl.PolicyParams):
    share: float = Field(0.75, gt=0, lt=1, description="The first domain's share.")


class First(srl.Policy):
    """`share` to the first domain, the rest to the others."""

    Params = FirstParams

    def decide(self, step, view):
        CALLS["policy"] += 1
        rest = (1 - self.params.share) / (len(self.names) - 1)
        mixture = {n: self.params.share if i == 0 else rest for i, n in enumerate(self.names)}
        return srl.Decision(mixture, f"user_first {self.params.share}")


class StepwiseParams(srl.MuParams):
    value: float = Field(0.3, ge=0, le=1, description="mu on even steps; 0 on odd ones.")


class Stepwise(srl.MuSchedule):
    Params = StepwiseParams

    def mu(self, step):
        CALLS["mu"] += 1
        return self.params.value if step % 2 == 0 else 0.0


class ScaledParams(srl.LossParams):
    scale: float = Field(1.0, gt=0, description="Multiplies the loss.")


class Reinforce(srl.PolicyLoss):
    Params = ScaledParams
    aggregation = "token_mean"

    def surrogate(self, weight, logp, adv):
        CALLS["loss"] += 1
        none = logp.new_zeros(logp.shape, dtype=bool)
        return srl.Surrogate(-self.params.scale * adv * logp, none, none)


class Signs(srl.AdvantageEstimator):
    def scale(self, centered, var, rewards, valid):
        CALLS["advantage"] += 1
        return centered.sign()


class EchoSpec(srl.SourceSpec):
    """`user_echo`: "echo w" -> w."""

    words: int = Field(12, ge=4, description="How many words.")

    def build(self, ctx):
        return Echo(self.words, ctx.eval_size)


class Echo(srl.RowSource):
    def __init__(self, words, eval_size):
        rows = [{"question": f"echo {chr(97 + i % 26) * (1 + i // 26)}", "answer": "x"} for i in range(words)]
        self.held_out, self.rows = rows[:eval_size], rows[eval_size:]

    def eval_rows(self):
        return self.held_out

    def train_rows(self, n, rng):
        CALLS["source"] += 1
        return rng.choices(self.rows, k=n)


EXTENSIONS = [
    (srl.register_reward, "user_short", ShortSpec),
    (srl.register_policy, "user_first", First),
    (srl.register_mu_schedule, "user_stepwise", Stepwise),
    (srl.register_loss, "user_reinforce", Reinforce),
    (srl.register_advantage, "user_signs", Signs),
    (srl.register_source, "user_echo", EchoSpec),
]


@pytest.fixture
def registered():
    """Register the extensions as a user would; remove them afterwards, so that the rest of the suite
    (the reference page, the registries' listings) sees only the built-in entries."""
    from spectrum_rl.objectives.advantages import ADVANTAGES
    from spectrum_rl.objectives.losses import LOSSES
    from spectrum_rl.rewards.base import REWARDS
    from spectrum_rl.scheduler.mu import MU_SCHEDULES
    from spectrum_rl.scheduler.policies import POLICIES
    from spectrum_rl.sources.base import SOURCES

    for register, name, cls in EXTENSIONS:
        register(name)(cls)
    CALLS.clear()
    yield
    for registry, (_, name, _) in zip((REWARDS, POLICIES, MU_SCHEDULES, LOSSES, ADVANTAGES, SOURCES), EXTENSIONS):
        registry.unregister(name)


def test_registered_extensions_train_for_two_steps(tmp_path, tiny_random_lm_dir, registered):
    def domain(name, source):
        return {
            "name": name,
            "kind": "structured",
            "source": source,
            "expert_field": "answer",
            "reward": [{"type": "exact_match"}, {"type": "user_short", "limit": 2, "weight": 0.5}],
            "eval": {"size": 4},
        }

    config = {
        "model": {"name_or_path": str(tiny_random_lm_dir)},
        "domains": [domain("echo", {"type": "user_echo", "words": 16}), domain("sorting", {"type": "builtin"})],
        "scheduler": {"policy": {"type": "user_first", "share": 0.5}},
        "training": {
            "steps": 2,
            "prompts_per_step": 4,
            "group_size": 2,
            "max_new_tokens": 4,
            "save_every": 0,
            "loss": {"type": "user_reinforce", "scale": 0.5},
            "advantage": "user_signs",
            "sft": {"mu": {"type": "user_stepwise", "value": 0.4}},
        },
        "eval": {"max_new_tokens": 4},
        "logging": {"progress": False},
    }
    config["domains"][1]["source"]["generator"] = "sorting"
    result = srl.train(config, output_dir=tmp_path / "run")

    assert result.steps == 2
    assert {"reward", "policy", "mu", "loss", "advantage", "source"} <= set(CALLS), CALLS
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["scheduler/reason"] for m in metrics] == ["user_first 0.5"] * 2
    assert [m["mu/echo"] for m in metrics] == [0.4, 0.0]  # the schedule's own parameter, step by step
