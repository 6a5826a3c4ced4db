"""One extension mechanism (spectrum_rl/registry.py): a reward component, a row source, a built-in
generator, a scheduler policy, a mu schedule, an RL loss and an advantage estimator, each added
from this file alone through its registry, are valid in a config, built and used; an unknown name
in any of them gets one line with a "did you mean" and the valid names."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from pydantic import Field

from spectrum_rl.config import Config, load_config, reference_markdown
from spectrum_rl.domains import build_domains
from spectrum_rl.errors import ConfigError
from spectrum_rl.objectives.advantages import ADVANTAGES, AdvantageEstimator
from spectrum_rl.objectives.losses import LOSSES, LossParams, PolicyLoss, Surrogate
from spectrum_rl.rewards import REWARDS
from spectrum_rl.rewards.base import RewardComponent, RewardSpec
from spectrum_rl.scheduler.mu import MU_SCHEDULES, MuSchedule
from spectrum_rl.scheduler.plan import Planner
from spectrum_rl.scheduler.policies import POLICIES, Decision, Policy, View
from spectrum_rl.sources.base import SOURCES, Example, RowDict, RowSource, SourceContext, SourceSpec
from spectrum_rl.sources.builtin import GENERATORS, generator
from spectrum_rl.trainer.loop import Trainer


class UpperSpec(RewardSpec):
    """`toy_upper`: 1 for an all-capitals completion, plus a bonus (a toy component)."""

    bonus: float = Field(0.0, description="Added to every score.")

    def build(self, base_dir: Path) -> RewardComponent:
        return Upper(self)


class Upper(RewardComponent):
    spec: UpperSpec

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        return [float(c.isupper()) + self.spec.bonus for c in completions]


class CountdownSpec(SourceSpec):
    """`toy_countdown`: "before n" -> n - 1 for n up to `start` (a toy source)."""

    start: int = Field(20, ge=2, description="Largest n.")

    def build(self, ctx: SourceContext) -> RowSource:
        return Countdown(self.start, ctx.eval_size)


class Countdown(RowSource):
    def __init__(self, start: int, eval_size: int) -> None:
        rows = [{"question": f"before {n}", "answer": str(n - 1), "expert": str(n - 1)} for n in range(1, start + 1)]
        self._eval, self._train = rows[:eval_size], rows[eval_size:]

    def eval_rows(self) -> list[RowDict]:
        return self._eval

    def train_rows(self, n: int, rng: random.Random) -> list[RowDict]:
        return rng.choices(self._train, k=n)


def echo(rng: random.Random, length: int) -> RowDict:
    """A toy generator: repeat a word of a-d."""
    word = "".join(rng.choices("abcd", k=length))
    return {"question": f"echo: {word}", "answer": word, "expert": word}


class First(Policy):
    """All weight on the first domain (a toy policy)."""

    def decide(self, step: int, view: View) -> Decision:
        return Decision({n: float(n == self.names[0]) for n in self.names}, "toy: first domain")


class Quarter(MuSchedule):
    """mu = 1/4 (a toy schedule)."""

    def mu(self, step: int) -> float:
        return 0.25


class ReinforceParams(LossParams):
    """The toy loss's one parameter."""

    scale: float = Field(1.0, gt=0, description="Multiplies the loss.")


class Reinforce(PolicyLoss):
    """Plain REINFORCE, -A logp per token (a toy loss); counts its calls."""

    Params = ReinforceParams
    aggregation = "token_mean"
    calls = 0

    def surrogate(self, weight: torch.Tensor, logp: torch.Tensor, adv: torch.Tensor) -> Surrogate:
        Reinforce.calls += 1
        none = torch.zeros_like(logp, dtype=torch.bool)
        return Surrogate(-self.params.scale * adv * logp, none, none)


class Signs(AdvantageEstimator):
    """Advantage = the sign of the centred reward (a toy estimator)."""

    def scale(self, centered, var, rewards, valid) -> torch.Tensor:
        return torch.sign(centered)


@pytest.fixture
def toys():
    """The seven toys registered, as their decorators would register them, and removed afterwards."""
    REWARDS.register("toy_upper")(UpperSpec)
    SOURCES.register("toy_countdown")(CountdownSpec)
    generator("toy_echo", "structured", {"length": 3}, {"length": (1, 8)})(echo)
    POLICIES.register("toy_first")(First)
    MU_SCHEDULES.register("toy_quarter")(Quarter)
    LOSSES.register("toy_reinforce")(Reinforce)
    ADVANTAGES.register("toy_signs")(Signs)
    yield
    for registry, name in (
        (REWARDS, "toy_upper"),
        (SOURCES, "toy_countdown"),
        (GENERATORS, "toy_echo"),
        (POLICIES, "toy_first"),
        (MU_SCHEDULES, "toy_quarter"),
        (LOSSES, "toy_reinforce"),
        (ADVANTAGES, "toy_signs"),
    ):
        registry.unregister(name)


TOY_CONFIG = """
scheduler: {policy: toy_first}
training: {prompts_per_step: 8, loss: {type: toy_reinforce, scale: 2.0}, advantage: toy_signs, sft: {mu: toy_quarter}}
domains:
  - name: echo
    kind: structured
    source: {type: builtin, generator: toy_echo, difficulty: {length: 6}}
    reward: [{type: toy_upper, bonus: 0.5}, {type: exact_match}]
  - name: countdown
    kind: structured
    source: {type: toy_countdown, start: 30}
    eval: {size: 5}
    reward: [{type: exact_match}]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_toys_registered_from_a_test_file_are_loaded_built_and_used(tmp_path, toys):
    config = load_config(_write(tmp_path, TOY_CONFIG))
    assert isinstance(config.domains[0].reward[0], UpperSpec) and config.domains[0].reward[0].bonus == 0.5
    assert isinstance(config.domains[1].source, CountdownSpec) and config.domains[1].source.start == 30
    assert Config.model_validate(config.model_dump(mode="json")) == config  # type survives a dump

    echo_domain, countdown = build_domains(config, tmp_path)
    assert echo_domain.source.describe() == "builtin:toy_echo(length=6)"
    example = echo_domain.sample(1, random.Random(0))[0]
    word = example.answer
    assert len(word) == 6 and example.prompt == f"echo: {word}\n"
    result = echo_domain.reward.score([word.upper(), word], example)
    assert list(result.parts["toy_upper"]) == [1.5, 0.5] and list(result.total) == [
        2.5,
        1.5,
    ]  # exact_match ignores case

    assert isinstance(countdown.source, Countdown) and len(countdown.eval_examples()) == 5
    held_out = {e.prompt for e in countdown.eval_examples()}
    assert not held_out & {e.prompt for e in countdown.sample(20, random.Random(0))}

    planner = Planner(config.kinds, config.prerequisites, config.scheduler, config.training.sft, 8)
    plan = planner.plan(0)
    assert plan.mixture == {"echo": 1.0, "countdown": 0.0} and plan.reason == "toy: first domain"
    assert plan.mu == {"echo": 0.25, "countdown": 0.25}


def test_a_training_step_runs_on_the_toys_alone(tmp_path, toys, tiny_random_lm_dir):
    """The toy policy picks the domain, the toy mu weighs it, the toy reward scores it, the toy
    estimator makes the advantages and the toy loss makes the RL loss."""
    text = TOY_CONFIG + f"model: {{name_or_path: {tiny_random_lm_dir}}}\nrun: {{output_dir: {tmp_path / 'run'}}}\n"
    config = load_config(_write(tmp_path, text))
    trainer = Trainer(config, build_domains(config, tmp_path), config.output_path)
    assert isinstance(trainer.learner.loss, Reinforce) and trainer.learner.loss.params.scale == 2.0
    groups = []
    make = trainer.experience.make
    trainer.experience.make = lambda *a: groups.append(make(*a)) or groups[-1]
    Reinforce.calls = 0
    metrics = trainer.train_step()
    assert metrics["mixture"] == {"echo": 1.0, "countdown": 0.0} and metrics["mu/echo"] == 0.25
    assert "reward/echo/toy_upper" in metrics and Reinforce.calls > 0
    advantages = {a for g in groups[0].groups for a in g.advantage}
    assert advantages <= {-1.0, 0.0, 1.0}  # signs only


def test_toy_fields_get_the_same_errors_and_reference_as_built_in_ones(tmp_path, toys):
    with pytest.raises(ConfigError, match=r"domains\[0\]\.reward\[0\]\.bonu: unknown key 'bonu'; did you mean 'bonus'"):
        load_config(_write(tmp_path, TOY_CONFIG.replace("bonus: 0.5", "bonu: 0.5")))
    with pytest.raises(ConfigError, match=r"domains\[1\]\.source\.start: expected greater than or equal to 2"):
        load_config(_write(tmp_path, TOY_CONFIG.replace("start: 30", "start: 1")))
    text = reference_markdown()
    assert "#### Reward `type: toy_upper` — `toy_upper`: 1 for an all-capitals completion" in text
    assert "| `bonus` | `0.0` | Added to every score. |" in text
    assert "#### Source `type: toy_countdown`" in text and "| `start` | `20` | Largest n. |" in text
    assert "| `toy_echo` | structured | length (default 3, range 1-8) |" in text
    assert "`scheduler.policy: {type: toy_first}` — All weight on the first domain" in text
    assert "`training.sft.mu: {type: toy_quarter}` — mu = 1/4" in text
    assert "`training.loss: {type: toy_reinforce}`" in text and "| `training.loss.scale` | `1.0` | Multiplies" in text
    schema = str(Config.model_json_schema())
    assert "{'const': 'toy_upper'}" in schema and "{'const': 'toy_countdown'}" in schema


def test_unregistered_toys_are_unknown_again(tmp_path):
    with pytest.raises(ConfigError, match="unknown generator 'toy_echo'"):  # the first error in the file
        load_config(_write(tmp_path, TOY_CONFIG))


GOOD = {
    "policy": "adaptive",
    "schedule": "cosine",
    "generator": "addition",
    "source": "builtin",
    "reward": "exact_match",
    "loss": "dapo",
    "advantage": "group",
}
CONFIG = """
scheduler: {{policy: {policy}}}
training: {{loss: {loss}, advantage: {advantage}, sft: {{mu: {{type: {schedule}}}}}}}
domains:
  - name: a
    kind: structured
    source: {{type: {source}, generator: {generator}}}
    reward: [{{type: {reward}}}]
"""


@pytest.mark.parametrize(
    "key,typo,expected",
    [
        (
            "reward",
            "exact_mach",
            "domains[0].reward[0].type: unknown reward type 'exact_mach'; did you mean 'exact_match'?",
        ),
        ("source", "bultin", "domains[0].source.type: unknown source type 'bultin'; did you mean 'builtin'?"),
        ("generator", "additon", "domains[0].source.generator: unknown generator 'additon'; did you mean 'addition'?"),
        ("policy", "adaptve", "scheduler.policy: unknown policy 'adaptve'; did you mean 'adaptive'?"),
        ("schedule", "cosin", "training.sft.mu.type: unknown mu schedule 'cosin'; did you mean 'cosine'?"),
        ("loss", "dapoo", "training.loss: unknown loss 'dapoo'; did you mean 'dapo'?"),
        ("advantage", "grop", "training.advantage: unknown advantage estimator 'grop'; did you mean 'group'?"),
    ],
)
def test_an_unknown_name_in_each_registry_gets_did_you_mean_and_the_valid_names(tmp_path, key, typo, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, CONFIG.format(**{**GOOD, key: typo})))
    message = str(err.value)
    assert expected in message and GOOD[key] in message.split("; expected one of ")[1].split(", ")
