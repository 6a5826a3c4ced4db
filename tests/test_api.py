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

DOMAINS = [srl.Domain("easy"), srl.Domain("hard"), srl.Domain("poems", kind="creative")]


def test_public_surface_is_listed_and_loads_lazily():
    first_cells = re.findall(r"^\| (`.*?) \| ", (ROOT / "docs" / "api.md").read_text(), re.M)
    documented = [name for cell in first_cells for name in re.findall(r"`(\w+)[(`]", cell)]
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
    with pytest.raises(ConfigError, match=r"<config mapping>.*domains\[0\].kind"):
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
    scheduler = srl.Scheduler(DOMAINS, prompts_per_step=12, policy="adaptive", steps=60)
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
        srl.Scheduler(DOMAINS, prompts_per_step=4, policy="no_such_policy")


def test_scheduler_state_round_trip(tmp_path):
    """A scheduler saved after 20 steps and loaded into a fresh one plans exactly what the original
    plans next (the draws are the same given the same outcomes)."""
    make = lambda: srl.Scheduler(DOMAINS, prompts_per_step=8, policy="thompson", steps=40)  # noqa: E731
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
    """A domain with `levels` gets a level distribution that moves up once its easy level is solved;
    one with `pool` gets a weight per row, higher on half-solved rows than on solved ones."""
    scheduler = srl.Scheduler(
        [srl.Domain("ladder", levels=(1, 4)), srl.Domain("pool", pool=6)],
        prompts_per_step=8,
        scheduler={"policy": "joint"},
    )
    first = scheduler.plan()
    assert min(first.domains["ladder"].levels) == 1 and len(first.domains["pool"].prompt_weights) == 6
    for _ in range(10):
        scheduler.observe(
            [srl.Outcome("ladder", (1.0,) * 8, level=1)]
            + [srl.Outcome("pool", (1.0,) * 8, index=0), srl.Outcome("pool", (1.0, 0.0) * 4, index=1)]
        )
        plan = scheduler.plan()
    levels, weights = plan.domains["ladder"].levels, plan.domains["pool"].prompt_weights
    assert max(levels, key=levels.get) > 1 and weights[1] > weights[0]


def test_scheduler_from_config_plans_as_the_trainer(tmp_path, tiny_random_lm_dir):
    path = write_config(tmp_path, tiny_random_lm_dir, scheduler={"policy": "adaptive"})
    scheduler = srl.Scheduler.from_config(path)
    trainer = make_trainer(path)
    assert scheduler.domains == ["sorting", "acrostic"]
    assert [scheduler.plan().prompts for _ in range(3)] == [trainer.planner.plan(s).prompts for s in range(3)]


def test_train_takes_python_objects_without_yaml(tmp_path, monkeypatch):
    """docs/api.md's first example, verbatim: a built-in model name, a datasets.Dataset and a list of
    rows, a TRL-style reward function; two domains, one after the other."""
    monkeypatch.chdir(tmp_path)
    from datasets import Dataset

    import spectrum_rl as srl

    def exact(prompts, completions, answer, **columns):
        return [float(c.strip() == a) for c, a in zip(completions, answer)]

    words = ["dcba", "cab", "fed", "hgfe", "zyx", "qpo"]
    sorting = Dataset.from_list([{"prompt": f"sort: {w}\n", "answer": "".join(sorted(w))} for w in words * 10])
    reversal = [{"prompt": f"reverse: {w}\n", "answer": w[::-1]} for w in words * 10]
    result = srl.train(
        model="builtin:tiny",
        domains=[
            srl.Domain("sorting", data=sorting, reward=exact),
            srl.Domain("reversal", data=reversal, reward=exact, after=["sorting"]),
        ],
        steps=3,
        prompts_per_step=4,
        group_size=4,
        output_dir="runs/objects",
    )
    print(result.scores)
    assert set(result.scores) == {"sorting", "reversal"} and result.steps == 3
    assert (tmp_path / "runs" / "objects" / "final").is_dir()


def test_train_takes_a_loaded_model_and_every_yaml_section(tmp_path, tiny_random_lm_dir):
    from spectrum_rl.models import load_causal_lm

    model, tokenizer = load_causal_lm(str(tiny_random_lm_dir))
    before = next(model.parameters()).detach().clone()
    rows = [{"question": f"echo {w}", "answer": w} for w in ["ab", "cd", "ef", "gh", "ij", "kl", "mn"]]
    result = srl.train(
        model=model,
        tokenizer=tokenizer,
        domains=[srl.Domain("echo", data=rows, reward=lambda completions, **_: [len(c) % 3 for c in completions])],
        steps=2,
        prompts_per_step=2,
        group_size=2,
        output_dir=tmp_path / "run",
        scheduler={"policy": {"type": "joint"}},
        sft={"mu": "rl_only"},
        training={
            "max_new_tokens": 4,
            "learning_rate": 1e-2,
            "save_every": 0,
            "loss": {"type": "grpo", "eps_high": 0.2},
        },
        overrides=["eval.max_new_tokens=4"],
    )
    assert result.steps == 2 and not torch_equal(before, next(model.parameters()))  # trained in place
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "object:" in saved and "type: rows" in saved and "type: grpo" in saved
    with pytest.raises(ValueError, match="tokenizer"):
        srl.train(model=model, domains=[srl.Domain("echo", data=rows, reward=[{"type": "exact_match"}])])
    with pytest.raises(ConfigError, match=r"reward\[0\].key: .*takes no \*\*kwargs; .*called like TRL's"):
        srl.train(model=model, tokenizer=tokenizer, domains=[srl.Domain("echo", data=rows, reward=lambda c, e: 1.0)])
    import pandas as pd
    from datasets import Dataset, DatasetDict

    frame = srl.Domain("echo", data=pd.DataFrame(rows), reward=[{"type": "exact_match"}])  # pandas, as users have it
    assert srl.train(model=model, tokenizer=tokenizer, domains=[frame], steps=1, output_dir=tmp_path / "df").steps == 1
    splits = DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows)})
    with pytest.raises(
        ValueError, match=r"data is a dict of splits \(train, test\); pass one, e.g. data=ds\['train'\]"
    ):
        srl.train(model=model, tokenizer=tokenizer, domains=[srl.Domain("echo", data=splits, reward=[])])

    def brevity(completions, **_):
        return [float(len(c) < 3) for c in completions]

    funcs = [brevity, lambda completions, **_: [1.0] * len(completions), {"type": "exact_match", "weight": 0.5}]
    mixed = srl.Domain("echo", data=rows, reward=funcs)  # TRL's reward_funcs list, a YAML component beside it
    run = srl.train(model=model, tokenizer=tokenizer, domains=[mixed], steps=1, output_dir=tmp_path / "mix")
    logged = (tmp_path / "mix" / "metrics.jsonl").read_text()
    assert run.steps == 1 and all(f'"reward/echo/{n}"' in logged for n in ("brevity", "function", "exact_match"))
    columns = {"question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows]}
    by_column = srl.Domain("echo", data=columns, reward=[{"type": "exact_match"}])  # Dataset.from_dict's form
    assert (
        srl.train(model=model, tokenizer=tokenizer, domains=[by_column], steps=1, output_dir=tmp_path / "co").steps == 1
    )
    with pytest.raises(ValueError, match="data's columns differ in length"):
        srl.train(
            model=model, tokenizer=tokenizer, domains=[srl.Domain("echo", data={**columns, "answer": []}, reward=[])]
        )
    with pytest.raises(ValueError, match="a dict of columns or a list of mappings .*; found a str row"):
        srl.train(model=model, tokenizer=tokenizer, domains=[srl.Domain("echo", data=["echo ab"], reward=[])])
    echo_brief = srl.Domain("echo", data=rows, reward=[{"type": "exact_match"}], system_prompt="be brief")
    with pytest.raises(ConfigError, match="carry a system message.*tokenizer has none"):  # it reaches the prompts
        srl.train(model=model, tokenizer=tokenizer, domains=[echo_brief], output_dir=tmp_path / "brief")
    assert not (tmp_path / "brief").exists()
    renamed = [{"question": r["question"], "solution": r["answer"]} for r in rows]  # the answer under another name
    with pytest.raises(ValueError, match=r"no 'answer' column \(columns: question, solution\); .*answer_field="):
        srl.train(model=model, tokenizer=tokenizer, domains=[srl.Domain("echo", data=renamed, reward=[])])


def test_train_makes_a_ladder_of_rows_with_a_level_column(tmp_path, tiny_random_lm_dir):
    import json

    from spectrum_rl.models import load_causal_lm

    model, tokenizer = load_causal_lm(str(tiny_random_lm_dir))
    rows = [{"question": f"add {'1+' * k}1 #{i}", "answer": str(k + 1), "level": k} for i in range(8) for k in (1, 2)]
    reward = [{"type": "exact_match"}]
    result = srl.train(
        model=model,
        tokenizer=tokenizer,
        domains=[srl.Domain("add", data=rows, reward=reward, difficulty_field="level")],
        steps=2,
        prompts_per_step=2,
        group_size=2,
        output_dir=tmp_path / "run",
        training={"max_new_tokens": 4, "save_every": 0},
        overrides=["eval.max_new_tokens=4"],
    )
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(1 <= m["difficulty/add"] <= 2 for m in logged)  # the scheduler drew levels of the rows' range
    with pytest.raises(ValueError, match="difficulty_field='COLUMN'"):  # the Scheduler's fields are not train's
        srl.train(model=model, tokenizer=tokenizer, domains=[srl.Domain("a", data=rows, reward=reward, levels=(1, 2))])


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_a_run_of_objects_resumed_in_another_process_says_to_pass_them_again(tmp_path):
    from spectrum_rl.config import load_config

    config = load_config(
        {
            "domains": [
                {
                    "name": "d",
                    "kind": "structured",
                    "source": {"type": "rows", "key": "rows-999"},
                    "reward": [{"type": "exact_match"}],
                }
            ]
        }
    )
    from spectrum_rl.domains import build_domains

    with pytest.raises(ConfigError, match="rows-999.*another process.*again"):
        build_domains(config, tmp_path)


def test_recommend_order_returns_a_typed_result(tmp_path, tiny_random_lm_dir):
    path = write_config(tmp_path, tiny_random_lm_dir)
    result = srl.recommend_order(path, probe_steps=1)
    assert isinstance(result, srl.OrderRecommendation) and isinstance(result.predicted_gain, srl.PredictedGain)
    assert sorted(result.order) == ["acrostic", "sorting"] and result.as_dict()["order"] == result.order


def test_trl_prompt_columns_are_the_question_and_hold_out_a_fifth():
    """Rows in TRL's formats (a `prompt` column, or an SFT `messages` conversation) need no mapping:
    the column is the question, its template adds nothing, and a fifth of its distinct prompts is
    held out."""
    from spectrum_rl.api import _domain_section

    def turns(i: int) -> list[dict]:
        return [{"role": "user", "content": f"add {i} and 1"}, {"role": "assistant", "content": str(i + 1)}]

    for column, value in (("prompt", lambda i: f"add {i} and 1"), ("messages", turns)):
        rows = [{column: value(i), "answer": str(i + 1)} for i in range(50)]
        section = _domain_section(srl.Domain("add", data=rows, reward=[{"type": "exact_match"}]))
        assert section["eval"]["size"] == 10 and section["prompt"] == "{question}", column


def test_one_reward_component_needs_no_list():
    """A reward given alone, as YAML gives it (a type name, a mapping or a spec object), is that one
    component, not a sequence to iterate (a name's letters were read as reward types)."""
    from spectrum_rl.api import _domain_section
    from spectrum_rl.rewards.rules import ExactMatchSpec

    rows = [{"question": f"q{i}", "answer": ["a", "b"]} for i in range(10)]
    for reward in ("exact_match", {"type": "exact_match"}, ExactMatchSpec(type="exact_match")):
        section = _domain_section(srl.Domain("d", data=rows, reward=reward))
        assert section["reward"] == [reward], reward


def test_a_missing_value_in_a_pandas_frame_is_null_not_nan(tmp_path):
    """pandas marks a missing cell NaN, which read as the answer 'nan' or a number no completion
    equals, silently scoring 0; it is null, which the load-time check names."""
    import pandas as pd

    from spectrum_rl.api import _domain_section, _rows_of
    from spectrum_rl.config import load_config
    from spectrum_rl.domains import build_domains

    frame = pd.DataFrame({"question": [f"{i}+1" for i in range(10)], "answer": [i + 1.0 for i in range(10)]})
    frame.loc[3, "answer"] = float("nan")
    domain = srl.Domain("add", data=frame, reward="numeric")
    assert _rows_of(domain)[3] == {"question": "3+1", "answer": None} and _rows_of(domain)[4]["answer"] == 5.0
    config = load_config({"model": {"name_or_path": "builtin:tiny"}, "domains": [_domain_section(domain)]})
    with pytest.raises(ConfigError, match="numeric reads row field 'answer', which is null in 1 of 10 rows"):
        build_domains(config, tmp_path)


def test_reward_weights_set_one_weight_per_reward_as_trl_does():
    """TRL's reward_weights: one weight per entry of the reward list, functions and components alike;
    a count that does not match is an error naming both counts."""
    from spectrum_rl.api import _domain_section
    from spectrum_rl.rewards.rules import ExactMatchSpec

    def brevity(completions, **_):
        return [1.0] * len(completions)

    rows = [{"question": f"q{i}", "answer": "a"} for i in range(10)]
    rewards = [brevity, "numeric", {"type": "format", "pattern": "a", "weight": 3}, ExactMatchSpec(type="exact_match")]
    section = _domain_section(srl.Domain("d", data=rows, reward=rewards, reward_weights=(0.5, 2, 0.25, 4)))
    weights = [r.weight if isinstance(r, ExactMatchSpec) else r["weight"] for r in section["reward"]]
    assert weights == [0.5, 2, 0.25, 4] and section["reward"][1]["type"] == "numeric"
    with pytest.raises(ValueError, match="2 reward_weights for 4 rewards"):
        _domain_section(srl.Domain("d", data=rows, reward=rewards, reward_weights=(1, 2)))


def test_a_partial_or_a_callable_object_is_logged_under_its_function_or_class_name():
    """TRL logs a reward function under its __name__; a functools.partial and a callable object
    have none, so they are named by their function and their class, not numbered."""
    import functools

    from spectrum_rl.api import _domain_section

    class LengthReward:
        def __call__(self, completions, **_):
            return [1.0] * len(completions)

    def scaled(completions, scale, **_):
        return [scale] * len(completions)

    rows = [{"question": f"q{i}", "answer": "a"} for i in range(10)]
    domain = srl.Domain("d", data=rows, reward=[LengthReward(), functools.partial(scaled, scale=0.5)])
    assert [r["name"] for r in _domain_section(domain)["reward"]] == ["LengthReward", "scaled"]
