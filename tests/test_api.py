"""The public Python API (spectrum_rl.__all__, docs/api.md): config loading, the Scheduler without
our trainer, and the public surface itself."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest

import spectrum_rl as srl
from spectrum_rl.errors import ConfigError
from tests.test_docs import ROOT
from tests.test_trainer import make_trainer, write_config

TASKS = [srl.Task("easy"), srl.Task("hard"), srl.Task("poems", kind="creative")]


def test_public_surface_is_listed_and_loads_lazily():
    documented = re.findall(r"^\| `(\w+)[(`]", (ROOT / "docs" / "api.md").read_text(), re.M)
    assert sorted(srl.__all__) == sorted(documented)  # the public surface is docs/api.md's table
    assert {"load_config", "train", "recommend_order", "Scheduler"} <= set(srl.__all__)
    for name in srl.__all__:
        assert getattr(srl, name).__doc__, name  # each public name is documented
    with pytest.raises(AttributeError):
        srl.Trainer  # noqa: B018 - internal names are not re-exported
    # importing the package does not import the trainer's stack (torch, transformers)
    code = "import sys, spectrum_rl; print('torch' in sys.modules, 'spectrum_rl.api' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "False",
        "False",
    ]


def test_load_config_from_a_mapping_with_overrides(tmp_path):
    data = {
        "model": {"name_or_path": "builtin:tiny"},
        "domains": [
            {
                "name": "sorting",
                "kind": "structured",
                "source": {"type": "builtin", "generator": "sorting"},
                "reward": [{"type": "exact_match"}],
            }
        ],
    }
    config = srl.load_config(data, ["training.steps=7"])
    assert config.training.steps == 7 and config.domain_names == ["sorting"]
    assert "training" not in data  # the caller's mapping is left alone
    with pytest.raises(ConfigError, match=r"--set training.steps=-1.*training.steps"):
        srl.load_config(data, ["training.steps=-1"])
    with pytest.raises(ConfigError, match=r"<config mapping>.*tasks\[0\].kind"):
        srl.load_config({**data, "domains": [{**data["domains"][0], "kind": "poetic"}]})


def _learn(scheduler: srl.Scheduler, pass_rate: dict[str, float], steps: int, rng: random.Random) -> list:
    plans = []
    for _ in range(steps):
        plan = scheduler.plan()
        plans.append(plan)
        groups = {
            d: [[float(rng.random() < pass_rate[d]) for _ in range(8)] for _ in range(n)]
            for d, n in plan.prompts.items()
            if n
        }
        scheduler.observe(groups, entropy={d: 1.0 for d in groups})
    return plans


def test_scheduler_without_a_trainer_moves_prompts_to_the_learnable_domain():
    """Planted pass rates: `easy` is half solved (the most learnable), `hard` never, `poems` always.
    The adaptive scheduler's plans sum to prompts_per_step and give `easy` most prompts."""
    scheduler = srl.Scheduler(TASKS, prompts_per_step=12, policy="adaptive", steps=60)
    plans = _learn(scheduler, {"easy": 0.5, "hard": 0.0, "poems": 1.0}, 60, random.Random(0))
    assert all(sum(p.prompts.values()) == 12 for p in plans) and scheduler.step == 60
    late = {d: sum(p.prompts.get(d, 0) for p in plans[30:]) for d in scheduler.domains}
    assert late["easy"] > late["hard"] + late["poems"], late
    assert all(p.mu == {d: 0.0 for d in scheduler.domains} for p in plans)  # default: RL only
    scheduler.observe_eval({"easy": 0.5, "hard": 0.0})
    with pytest.raises(ValueError, match="unknown domain 'math'"):
        scheduler.observe({"math": [[1.0]]})
    with pytest.raises(ValueError, match="finite"):
        scheduler.observe({"easy": [[float("nan")]]})
    with pytest.raises(ValueError, match="registered|expected one of|unknown"):
        srl.Scheduler(TASKS, prompts_per_step=4, policy="no_such_policy")


def test_scheduler_state_round_trip(tmp_path):
    """A scheduler saved after 20 steps and loaded into a fresh one plans exactly what the original
    plans next (the draws are the same given the same outcomes)."""
    make = lambda: srl.Scheduler(TASKS, prompts_per_step=8, policy="thompson", steps=40)  # noqa: E731
    a = make()
    _learn(a, {"easy": 0.5, "hard": 0.1, "poems": 0.9}, 20, random.Random(1))
    a.save(tmp_path / "scheduler.json")
    b = make()
    b.load(tmp_path / "scheduler.json")
    assert b.step == 20
    rest_a = _learn(a, {"easy": 0.5, "hard": 0.1, "poems": 0.9}, 10, random.Random(2))
    rest_b = _learn(b, {"easy": 0.5, "hard": 0.1, "poems": 0.9}, 10, random.Random(2))
    assert [p.prompts for p in rest_a] == [p.prompts for p in rest_b]


def test_scheduler_plans_levels_and_prompt_weights():
    """A task with `levels` gets a level distribution that moves up once its easy level is solved;
    one with `pool` gets a weight per row, higher on half-solved rows than on solved ones."""
    scheduler = srl.Scheduler(
        [srl.Task("ladder", levels=(1, 4)), srl.Task("pool", pool=6)], prompts_per_step=8, scheduler={"policy": "joint"}
    )
    first = scheduler.plan()
    assert min(first.levels["ladder"]) == 1 and len(first.prompt_weights["pool"]) == 6
    for _ in range(10):
        scheduler.observe(
            [srl.Outcome("ladder", (1.0,) * 8, level=1)]
            + [srl.Outcome("pool", (1.0,) * 8, index=0), srl.Outcome("pool", (1.0, 0.0) * 4, index=1)]
        )
        plan = scheduler.plan()
    assert max(plan.levels["ladder"], key=plan.levels["ladder"].get) > 1
    assert plan.prompt_weights["pool"][1] > plan.prompt_weights["pool"][0]


def test_scheduler_from_config_plans_as_the_trainer(tmp_path, tiny_random_lm_dir):
    path = write_config(tmp_path, tiny_random_lm_dir, scheduler={"policy": "adaptive"})
    scheduler = srl.Scheduler.from_config(path)
    trainer = make_trainer(path)
    assert scheduler.domains == ["sorting", "acrostic"]
    assert [scheduler.plan().prompts for _ in range(3)] == [trainer.planner.plan(s).prompts for s in range(3)]
