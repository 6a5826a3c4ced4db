"""Reward components, the hybrid reward and its error policies."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from spectrum_rl.errors import ConfigError, RewardError
from spectrum_rl.rewards import REWARDS, HybridReward, RewardComponentSpec, build_hybrid, extract_answer
from spectrum_rl.rewards.base import RewardComponent
from spectrum_rl.rewards.text import last_number, normalize
from spectrum_rl.sources.base import Example

SPEC = TypeAdapter(RewardComponentSpec)


def spec(**data):
    """A component spec parsed exactly as a YAML entry would be."""
    return SPEC.validate_python(data)


def component(tmp_path: Path = Path("."), **data):
    return spec(**data).build(tmp_path)


def example(answer: str | None = "42", prompt: str = "q: ", **fields) -> Example:
    return Example(prompt=prompt, answer=answer, expert=None, fields={"answer": answer, **fields})


def scores(comp, completions, ex=None) -> list[float]:
    return list(comp.score(completions, ex or example()))


# --- text helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plan: x\nstep: y\nanswer: 7", "7"),
        ("Answer: a\nmore\nANSWER:  b  \ntrailing", "b"),  # last occurrence, case-insensitive, one line
        ("the final answer: 12 apples\nok", "12 apples"),
        ("\n\n  abc  \ndef", "abc"),  # no tag: first non-empty line
        ("answer:", ""),
        ("", ""),
        ("so 3 + 4 = 7\n#### 7\n", "7"),  # GSM8K's mark: the line after the last ####
        ("answer: 6, no: \\boxed{\\frac{1}{2}} and\n\\boxed{ 7 }.", "7"),  # the last \boxed, braces balanced
        ("x = \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first line\nunclosed \\boxed{7", "first line"),  # an unclosed box marks nothing
        ("#### Step 1\n2 + 3 = 5\n#### 5.\n#### Check", "5."),  # a markdown heading is no mark
        ("#### Step 1\nanswer: 5", "5"),
        ("<think>maybe 4? answer: 4</think>\n<answer> 5 </answer>", "5"),  # R1's format: the tags, after thinking
        ("<think>\nanswer: 4\n</think>\n\n5 apples", "5 apples"),  # the reasoning is not the answer
        ("<answer>5</answer> then <answer>6", "5"),  # an unclosed tag marks nothing
        ("</answer><answer>", "</answer><answer>"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_normalize_and_last_number():
    assert normalize("  The  Cat\tSat. ") == "the cat sat"
    assert normalize("3.5") == "3.5"
    assert last_number("costs 1,234 then -3.5") == -3.5
    assert last_number("total: 1,234") == 1234
    assert last_number("x=.5") == 0.5
    assert last_number("none here") is None


# --- rule components -------------------------------------------------------------------------


def test_exact_match():
    comp = component(type="exact_match")
    assert scores(comp, ["42", "answer:  42. ", "plan\nanswer: 41", "4 2", "x\n42"]) == [1, 1, 0, 0, 0]
    raw = component(type="exact_match", extract=False)
    assert scores(raw, ["answer: 42", "42"]) == [0, 1]
    alt = component(type="exact_match", field="aliases")
    assert scores(alt, ["Paris", "lyon", "rome"], example(aliases=["paris", "Lyon"])) == [1, 1, 0]
    worked = example("Natalia sold 48 / 2 = 24 clips in May.\n#### 72")  # a GSM8K answer: judged by its mark
    assert scores(comp, ["72", "Step by step...\nSo \\boxed{72}", "24", "#### 72"], worked) == [1, 1, 0, 1]
    assert scores(raw, ["72"], worked) == [0]  # extract: false compares whole texts, the reference too


def test_numeric_tolerance():
    comp = component(type="numeric")
    ex = example("1,234")
    assert scores(comp, ["answer: 1234", "1,234.0000001", "1235", "no number", "12 then 1234"], ex) == [1, 1, 0, 0, 1]
    rel = component(type="numeric", rel_tol=0.01)
    assert scores(rel, ["-101", "-98.9", "100"], example("-100")) == [1, 0, 0]
    loose = component(type="numeric", abs_tol=0.5)
    assert scores(loose, ["2.4", "2.6", "1.4"], example("2")) == [1, 0, 0]
    long = "We have 12 apples.\nThen 3 more: 12 + 3 = 15.\nThe answer is $\\boxed{15}$."
    assert scores(comp, [long, long.replace("boxed{15}", "boxed{12}")], example("15")) == [1, 0]
    with pytest.raises(ValueError, match="holds no number"):
        comp.score(["1"], example("n/a"))


def test_an_answer_column_holding_a_list_is_the_accepted_answers(tmp_path):
    """TriviaQA's aliases, Natural Questions' answers: a list in the answer column (or a nested one
    mapped to it) is every accepted answer; exact_match and numeric accept any of them, a python
    reward gets the list as TRL passes the column, and a numeric list with a word in it fails at load."""
    from spectrum_rl.config import load_config
    from spectrum_rl.domains import build_domains

    rows = [{"question": f"capital {i}?", "answer": ["Paris", "paris, France", 7]} for i in range(6)]
    nested = [{"question": f"q{i}", "answers": {"text": ["12", "twelve"]}} for i in range(6)]
    (tmp_path / "aliases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "nested.jsonl").write_text("".join(json.dumps(r) + "\n" for r in nested))
    fn = "def seen(completions, answer, **kw):\n    return [float(len(a)) for a in answer]\n"
    (tmp_path / "fn.py").write_text(fn)

    def domain(path: str, reward: list, **source) -> dict:
        source = {"type": "file", "path": path, **source}
        name = path.split(".")[0]
        return {"name": name, "kind": "structured", "source": source, "eval": {"size": 2}, "reward": reward}

    config = load_config(
        {
            "model": {"name_or_path": "builtin:tiny"},
            "domains": [
                domain("aliases.jsonl", [{"type": "exact_match"}, {"type": "python", "function": "fn.py:seen"}]),
                domain("nested.jsonl", [{"type": "exact_match"}], columns={"answers.text": "answer"}),
            ],
        }
    )
    aliases, nested_domain = build_domains(config, tmp_path)
    ex = aliases.eval_examples()[0]
    assert ex.answer == "Paris" and ex.answers == ("Paris", "paris, France", "7")
    match, fn = aliases.reward.components
    assert list(match.score(["paris", "Paris, France", "7", "France"], ex)) == [1, 1, 1, 0]
    assert list(fn.score(["x", "y"], ex)) == [3, 3]
    from spectrum_rl.rewards.http import _payload

    assert _payload([(["x", "y"], ex)])["answer"] == [["Paris", "paris, France", "7"]] * 2  # as a function gets it
    twelve = nested_domain.eval_examples()[0]
    assert list(nested_domain.reward.components[0].score(["twelve", "12", "13"], twelve)) == [1, 1, 0]
    numeric = component(type="numeric")
    listed = Example(prompt="q", answer="2.5", expert=None, answers=("2.5", "5/2", "3"))
    assert scores(numeric, ["2.5", "3", "2"], listed) == [1, 1, 1]  # "5/2" holds the number 2
    assert numeric.spec.unusable_reference(["2.5", "n/a"]) == "holds no number ('n/a')"
    bad = load_config(
        {
            "model": {"name_or_path": "builtin:tiny"},
            "domains": [domain("nested.jsonl", [{"type": "numeric"}], columns={"answers.text": "answer"})],
        }
    )
    with pytest.raises(ConfigError, match="numeric reads row field 'answer'.* holds no number \\('twelve'\\)"):
        build_domains(bad, tmp_path)


def test_format_modes_and_bad_regex():
    search = component(type="format", pattern=r"answer: \d+")
    full = component(type="format", pattern=r"answer: \d+", mode="fullmatch")
    texts = ["answer: 12", "plan\nanswer: 12", "answer: x"]
    assert scores(search, texts) == [1, 1, 0]
    assert scores(full, texts) == [1, 0, 0]
    with pytest.raises(ValidationError, match="invalid regular expression"):
        spec(type="format", pattern="(unclosed")


def test_contains():
    comp = component(type="contains", strings=["Red", "blue"], field="extra")
    ex = example(extra=["green", "BLACK"])
    assert scores(comp, ["red blue green black", "RED", "nothing"], ex) == [1.0, 0.25, 0.0]
    cased = component(type="contains", strings=["Red"], ignore_case=False)
    assert scores(cased, ["Red", "red"]) == [1, 0]
    assert scores(component(type="contains", field="word"), ["a cat", "a dog"], example(word="cat")) == [1, 0]
    with pytest.raises(ValidationError, match="needs `strings`, `field`"):
        spec(type="contains")


def test_length_soft_penalty():
    comp = component(type="length", min_chars=5, max_chars=10, tolerance=4)
    texts = ["x" * 5, "  " + "x" * 10 + "\n", "x" * 12, "x" * 3, "x" * 20, ""]
    assert scores(comp, texts) == pytest.approx([1, 1, 0.5, 0.5, 0, 0])
    with pytest.raises(ValidationError, match="min_chars"):
        spec(type="length", min_chars=11, max_chars=10)
    with pytest.raises(ValidationError):
        spec(type="length")  # max_chars is required


def test_constraint():
    comp = component(type="constraint")
    ex = example("cold apple tea", constraint={"type": "acrostic", "word": "cat"})
    got = scores(comp, ["cold apple tea", "plan: x\nanswer: cup ant top", "dog apple tea", "cold"], ex)
    assert got[:2] == [1.0, 1.0]
    assert 0 < got[2] < 1 and 0 < got[3] < 1
    with pytest.raises(ValueError, match="no field 'constraint'"):
        comp.score(["x"], example())


# --- overlap components ----------------------------------------------------------------------


def test_similarity_orders_by_closeness():
    comp = component(type="similarity")
    ex = example("the quick brown fox jumps over the lazy dog")
    exact, close, far = scores(
        comp, ["the quick brown fox jumps over the lazy dog", "the quick brown fox jumped over a lazy dog", "zzz"], ex
    )
    assert exact == pytest.approx(1.0)
    assert exact > close > far >= 0
    multi = component(type="similarity", field="refs")
    assert scores(multi, ["hello world"], example(refs=["goodbye", "hello world"])) == pytest.approx([1.0])


def test_diversity():
    comp = component(type="diversity")
    assert scores(comp, ["a b c", "a b c"]) == [0, 0]
    assert scores(comp, ["a b c", "d e f", ""]) == [1, 1, 0]
    # bigrams of "a b c d": ab bc cd; "a b x": ab bx -> 2/3 and 1/2 novel
    assert scores(comp, ["a b c d", "a b x"]) == pytest.approx([2 / 3, 1 / 2])
    assert scores(comp, ["alone"]) == [1]
    chars = component(type="diversity", unit="char", n=3)
    assert scores(chars, ["abcd", "bcde"]) == pytest.approx([1 / 2, 1 / 2])


# --- preference model ------------------------------------------------------------------------


def test_preference_model_builtin_pairs_prefer_valid_answers():
    comp = component(type="preference_model")
    valid, repeated, garbled, truncated = scores(
        comp, ["cold apple tea", "cold cold tea", "cold xpple tea", "cold apple"]
    )
    assert 0 < valid < 1
    assert valid > repeated and valid > garbled and valid > truncated
    assert comp.score(["answer: cold apple tea"], example()) == pytest.approx([valid])  # extract


def test_preference_model_user_pairs(tmp_path):
    rows = [{"chosen": f"good answer {i}", "rejected": f"bad bad {i}", "prompt": "p"} for i in range(30)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n\n")
    comp = component(tmp_path, type="preference_model", pairs="pairs.jsonl", features=1024)
    good, bad = scores(comp, ["good answer 99", "bad bad 99"])
    assert good > 0.5 > bad


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        ('{"chosen": "a", "rejected": "b"}\n{not json}\n', "pairs.jsonl:2: invalid JSON"),
        ('{"chosen": "a"}\n', "key 'rejected' is missing"),
        ('{"chosen": 1, "rejected": "b"}\n', "key 'chosen' must be a string"),
        ("[1, 2]\n", "expected an object"),
        ("\n", "no preference pairs"),
    ],
)
def test_preference_model_bad_pairs_file(tmp_path, content, message):
    if content is not None:
        (tmp_path / "pairs.jsonl").write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        component(tmp_path, type="preference_model", pairs="pairs.jsonl")
    assert info.value.field == "pairs"


# --- neural scorers --------------------------------------------------------------------------


def test_reward_model(tiny_random_rm_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    comp = component(type="reward_model", model=str(tiny_random_rm_dir), batch_size=2, device="cpu")
    ex = example(prompt="add: 1+2\n")
    texts = ["3", "answer: 3", "a much longer completion text", ""]
    first = np.array(scores(comp, texts, ex))
    assert first.shape == (4,) and np.isfinite(first).all() and ((first > 0) & (first < 1)).all()
    assert scores(comp, texts, ex) == pytest.approx(first.tolist())  # deterministic
    assert [scores(comp, [t], ex)[0] for t in texts] == pytest.approx(first.tolist(), abs=1e-5)  # padding-free
    model = AutoModelForSequenceClassification.from_pretrained(tiny_random_rm_dir)
    ids = torch.tensor([list((ex.prompt + texts[2]).encode())])
    with torch.no_grad():
        logit = model(input_ids=ids).logits[0, 0].item()
    assert first[2] == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-5)
    raw = component(type="reward_model", model=str(tiny_random_rm_dir), normalize="none", device="cpu")
    assert scores(raw, texts[2:3], ex) == pytest.approx([logit], abs=1e-4)


def test_reward_model_bad_paths(tmp_path):
    with pytest.raises(ConfigError, match="not found") as info:
        component(tmp_path, type="reward_model", model="./missing_rm")
    assert info.value.field == "model"
    (tmp_path / "empty").mkdir()
    comp = component(tmp_path, type="reward_model", model="empty", device="cpu")
    with pytest.raises(ConfigError) as info:  # exists but holds no model: fails at first use
        comp.score(["x"], example())
    assert info.value.field == "model"


def test_judge(tiny_random_lm_dir):
    import torch
    from transformers import AutoModelForCausalLM

    comp = component(type="judge", model=str(tiny_random_lm_dir), batch_size=3, device="cpu")
    ex = example("5", prompt="add: 2+3")
    texts = ["5", "answer: 6", "a longer and wrong answer", "", "five"]
    first = np.array(scores(comp, texts, ex))
    assert first.shape == (5,) and np.isfinite(first).all() and ((first > 0) & (first < 1)).all()
    assert len(set(first.round(8))) > 1  # depends on the completion
    assert scores(comp, texts, ex) == pytest.approx(first.tolist())
    assert [scores(comp, [t], ex)[0] for t in texts] == pytest.approx(first.tolist(), abs=1e-5)  # padding-free
    # P(yes)/(P(yes)+P(no)) by hand: byte tokens share the " " prefix, then "y" vs "n".
    model = AutoModelForCausalLM.from_pretrained(tiny_random_lm_dir)
    rubric = comp.spec.rubric.format(prompt=ex.prompt, completion=texts[2], reference="5") + " "
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([list(rubric.encode())])).logits[0, -1].softmax(-1)
    p_yes, p_no = probs[ord("y")].item(), probs[ord("n")].item()
    assert first[2] == pytest.approx(p_yes / (p_yes + p_no), abs=1e-5)


def test_judge_bad_config(tmp_path):
    with pytest.raises(ConfigError) as info:
        component(tmp_path, type="judge", model=str(tmp_path / "nope"))
    assert info.value.field == "model"
    with pytest.raises(ConfigError, match="unknown built-in"):
        component(tmp_path, type="judge", model="builtin:huge")
    with pytest.raises(ConfigError, match="must differ"):
        component(tmp_path, type="judge", model="builtin:tiny", yes=" ok", no=" ok")
    with pytest.raises(ValidationError, match="unknown template field"):
        spec(type="judge", model="builtin:tiny", rubric="{prompt} {answer}")


# --- external code ---------------------------------------------------------------------------

USER_MODULE = """
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:  # dataclasses need the module registered in sys.modules
    bonus: float = 0.0


def reward(prompts, completions, answer, **kwargs):
    assert len(prompts) == len(completions) == len(answer) == len(kwargs["level"])
    return [float(c == a) + kwargs["level"][i] for i, (c, a) in enumerate(zip(completions, answer))]

def short(completions, **kwargs):
    return [1.0]

def maybe(completions, **kwargs):
    return [None if c == "?" else 1.0 for c in completions]
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_rewards", None)


@pytest.mark.parametrize("function", ["my_rewards.py:reward", "my_rewards:reward"])
def test_python_trl_style(user_module, function):
    comp = component(user_module, type="python", function=function)
    assert scores(comp, ["42", "7"], example(level=0.5)) == [1.5, 0.5]


def test_python_errors(user_module):
    with pytest.raises(ConfigError, match="cannot import 'nowhere'") as info:
        component(user_module, type="python", function="nowhere:fn")
    assert info.value.field == "function"
    with pytest.raises(ConfigError, match="cannot import 'missing.py'.*FileNotFoundError"):
        component(user_module, type="python", function="missing.py:fn")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        component(user_module, type="python", function="my_rewards.py:nope")
    with pytest.raises(ValidationError, match="module:function"):
        spec(type="python", function="no_colon")
    short = build_hybrid("d", [spec(type="python", function="my_rewards.py:short")], user_module)
    with pytest.raises(RewardError, match=r"expected \(2,\)") as info:
        short.score(["a", "b"], example())
    assert info.value.sample == -1
    maybe = build_hybrid("d", [spec(type="python", function="my_rewards.py:maybe")], user_module)
    result = maybe.score(["?", "ok"], example())  # None: the function does not apply there (TRL's meaning)
    assert result.total.tolist() == [0, 1] and result.errors == {"python": 0}


def test_a_python_reward_file_imports_the_modules_beside_it(tmp_path, monkeypatch):
    """As a script does: `function: rw/rewards.py:match` whose file imports `helpers` from its own
    folder, at import and inside the function; a module of that name installed elsewhere wins (the
    folder comes after the installed packages)."""
    (tmp_path / "rw").mkdir()
    (tmp_path / "rw" / "helpers_beside.py").write_text("def norm(s):\n    return s.strip().lower()\n")
    (tmp_path / "rw" / "colorsys.py").write_text("raise ImportError('shadowed the standard library')\n")
    (tmp_path / "rw" / "rewards.py").write_text(
        "import colorsys\nfrom helpers_beside import norm\n\n"
        "def match(completions, answer, **kw):\n"
        "    import helpers_beside\n"
        "    return [float(helpers_beside.norm(c) == norm(a)) for c, a in zip(completions, answer)]\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)  # imported afresh: from the standard library
    comp = component(tmp_path, type="python", function="rw/rewards.py:match")
    assert scores(comp, [" 42 ", "7"], example("42")) == [1.0, 0.0]
    sys.modules.pop("helpers_beside", None)


def test_a_reward_function_may_return_a_numpy_array_or_a_tensor(tmp_path):
    """TRL turns whatever a reward function returns into a tensor, so `np.array(...)` and
    `torch.tensor(...)` work there; here too. A 2-D one is still an error."""
    (tmp_path / "arrays.py").write_text(
        "import numpy as np\nimport torch\n\n"
        "def as_numpy(completions, **kw):\n    return np.array([len(c) for c in completions], dtype=float)\n\n"
        "def as_tensor(completions, **kw):\n    return torch.tensor([len(c) for c in completions])\n\n"
        "def as_matrix(completions, **kw):\n    return np.ones((len(completions), 2))\n"
    )
    for name in ("as_numpy", "as_tensor"):
        assert scores(component(tmp_path, type="python", function=f"arrays.py:{name}"), ["ab", "abc"]) == [2, 3]
    with pytest.raises(TypeError, match="as_matrix must return a list of numbers; returned ndarray"):
        component(tmp_path, type="python", function="arrays.py:as_matrix").score(["a"], example())


def test_an_async_reward_function_is_awaited_as_trl_awaits_it(tmp_path):
    """TRL runs `async def` reward functions on an event loop of its own; so does this, also when
    the caller's thread already runs a loop (a notebook's)."""
    import asyncio

    (tmp_path / "judge.py").write_text(
        "import asyncio\n\nasync def judge(completions, **kw):\n"
        "    await asyncio.sleep(0)\n    return [float(len(c)) for c in completions]\n"
    )
    comp = component(tmp_path, type="python", function="judge.py:judge")
    assert scores(comp, ["ab", "abc"]) == [2, 3]

    async def in_a_notebook() -> list[float]:
        return scores(comp, ["abcd"])

    assert asyncio.run(in_a_notebook()) == [4]


def test_reasoning_gym_verifier():
    reasoning_gym = pytest.importorskip("reasoning_gym")
    entry = reasoning_gym.create_dataset("leg_counting", size=1, seed=3)[0]
    comp = component(type="reasoning_gym")
    ex = Example(prompt=entry["question"], answer=entry["answer"], expert=None, fields={"rg_entry": entry})
    right, tagged, wrong = scores(comp, [entry["answer"], f"plan: count\nanswer: {entry['answer']}", "-1"], ex)
    assert right == tagged == 1.0 and wrong < 1.0
    raw = component(type="reasoning_gym", extract=False)
    assert scores(raw, [f"plan: count\nanswer: {entry['answer']}"], ex)[0] < 1.0


# --- hybrid ----------------------------------------------------------------------------------


def test_spec_union_and_types():
    assert len(list(REWARDS)) == 16
    assert {"exact_match", "reasoning_gym", "http", "function"} <= set(REWARDS)
    with pytest.raises(ValidationError):
        spec(type="exact_match", bogus=1)
    with pytest.raises(ValidationError):
        spec(type="nope")
    with pytest.raises(ValidationError):
        spec(type="exact_match", on_error="ignore")


def test_hybrid_weighted_sum_and_names(tmp_path):
    specs = [
        spec(type="exact_match", weight=2.0),
        spec(type="format", pattern="^a", weight=0.5),
        spec(type="exact_match", extract=False),
        spec(type="length", max_chars=3, name="len"),
    ]
    reward = build_hybrid("math", specs, tmp_path)
    assert reward.names == ["exact_match_1", "format", "exact_match_2", "len"]
    assert reward.describe() == "2*exact_match_1 + 0.5*format + 1*exact_match_2 + 1*len"
    result = reward.score(["42", "answer: 42", "abcdefg"], example())
    assert result.parts["exact_match_1"].tolist() == [1, 1, 0]
    assert result.parts["format"].tolist() == [0, 1, 1]
    assert result.parts["exact_match_2"].tolist() == [1, 0, 0]
    assert result.total == pytest.approx([2 + 0 + 1 + 1, 2 + 0.5 + 0 + 0.65, 0.5 + 0.8])
    assert result.valid.all() and result.errors == dict.fromkeys(reward.names, 0)
    empty = reward.score([], example())
    assert empty.total.shape == (0,) and empty.parts["format"].shape == (0,)


class _Fake(RewardComponent):
    """A component named "fake" that returns fixed values or raises."""

    def __init__(self, on_error: str, values=None, exc: Exception | None = None, weight: float = 1.0):
        super().__init__(spec(type="exact_match", name="fake", on_error=on_error, weight=weight))
        self.values, self.exc = values, exc

    def score(self, completions, ex):
        if self.exc:
            raise self.exc
        return self.values


def _exact(**kw):
    return spec(type="exact_match", **kw).build(Path("."))


def test_hybrid_fail_policy_names_domain_component_sample():
    reward = HybridReward("math", [_exact(), _Fake("fail", [1.0, float("nan"), float("inf")])])
    with pytest.raises(RewardError, match="domain 'math', component 'fake', sample 1: returned nan") as info:
        reward.score(["42", "x", "y"], example())
    assert (info.value.domain, info.value.component, info.value.sample) == ("math", "fake", 1)
    raising = HybridReward("math", [_Fake("fail", exc=KeyError("col"))])
    with pytest.raises(RewardError, match="component .fake.: all samples: KeyError"):
        raising.score(["a", "b"], example())
    strings = HybridReward("math", [_Fake("fail", ["1", "2"])])
    with pytest.raises(RewardError, match="non-numeric"):
        strings.score(["a", "b"], example())


def test_hybrid_zero_policy():
    reward = HybridReward("math", [_exact(), _Fake("zero", [0.5, float("nan"), float("-inf")], weight=2.0)])
    result = reward.score(["42", "42", "x"], example())
    assert result.total.tolist() == [2.0, 1.0, 0.0]
    assert result.parts["fake"].tolist() == [0.5, 0, 0] and result.errors["fake"] == 2
    assert result.valid.all()
    raising = HybridReward("math", [_exact(), _Fake("zero", exc=RuntimeError("boom"))])
    result = raising.score(["42", "x"], example())
    assert result.total.tolist() == [1.0, 0.0] and result.errors == {"exact_match": 0, "fake": 2}


def test_hybrid_skip_policy():
    reward = HybridReward("math", [_exact(), _Fake("skip", [0.5, float("nan"), 0.25])])
    result = reward.score(["42", "42", "x"], example())
    assert result.valid.tolist() == [True, False, True]
    assert result.total.tolist() == [1.5, 0.0, 0.25] and result.errors["fake"] == 1
    wrong_length = HybridReward("math", [_Fake("skip", [1.0])])
    result = wrong_length.score(["a", "b"], example())
    assert not result.valid.any() and result.errors["fake"] == 2


def test_hybrid_config_error_propagates_and_build_prefixes_field(tmp_path):
    reward = HybridReward("math", [_Fake("zero", exc=ConfigError("bad model", field="model"))])
    with pytest.raises(ConfigError, match="bad model"):
        reward.score(["a"], example())
    specs = [spec(type="exact_match"), spec(type="preference_model", pairs="missing.jsonl")]
    with pytest.raises(ConfigError) as info:
        build_hybrid("math", specs, tmp_path)
    assert info.value.field == "reward[1].pairs"


class _Hang(RewardComponent):
    """A component that never returns: sleeps (a blocking wait) or busy-loops (pure Python)."""

    def __init__(self, on_error: str, busy: bool):
        super().__init__(spec(type="exact_match", name="hang", on_error=on_error, timeout_s=0.3))
        self.busy = busy

    def score(self, completions, ex):
        import time

        while self.busy:
            pass
        time.sleep(60)


@pytest.mark.parametrize("busy", [False, True])
def test_a_hanging_component_times_out_under_its_policy(busy):
    import threading
    import time

    zero = HybridReward("math", [_exact(), _Hang("zero", busy)])
    t0 = time.perf_counter()
    result = zero.score(["42", "x"], example())
    assert time.perf_counter() - t0 < 10  # the limit is 0.3 s; without it the call would take 60 s
    assert result.total.tolist() == [1.0, 0.0] and result.errors["hang"] == 2
    with pytest.raises(RewardError, match="component 'hang': all samples: TimeoutError: timed out after 0.3 s"):
        HybridReward("math", [_Hang("fail", busy)]).score(["a"], example())
    out: list = []  # off the main thread (no SIGALRM there) the call is abandoned after the limit
    worker = threading.Thread(
        target=lambda: out.append(HybridReward("math", [_Hang("skip", False)]).score(["a"], example()))
    )
    worker.start()
    worker.join(5)
    assert out and not out[0].valid.any() and out[0].errors["hang"] == 1


def test_a_reward_function_sees_conversational_rows_as_trl_passes_them(tmp_path):
    """On conversational data TRL calls a reward function with the prompt's messages and each
    completion as one assistant message; TRL's own rewards index them so (completion[0]["content"])."""
    pytest.importorskip("trl")
    from spectrum_rl.config import DomainConfig
    from spectrum_rl.domains import build_domain

    (tmp_path / "r.py").write_text(
        "def seen(prompts, completions, solution, **kwargs):\n"
        "    assert 'prompt' not in kwargs and prompts[0][-1]['role'] == 'user'\n"
        "    return [float(c[0]['content'] == s) for c, s in zip(completions, solution)]\n"
    )
    rows = [
        {"prompt": [{"role": "system", "content": "Think."}, {"role": "user", "content": f"q{i}"}], "solution": f"a{i}"}
        for i in range(8)
    ]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DomainConfig.model_validate(
        {
            "name": "chat",
            "kind": "structured",
            "source": {"type": "file", "path": "chat.jsonl", "columns": {"prompt": "question"}},
            "answer_field": "solution",
            "eval": {"size": 2},
            "reward": [
                {"type": "python", "function": "r.py:seen"},
                {"type": "python", "function": "trl.rewards:think_format_reward"},
            ],
        }
    )
    domain = build_domain(cfg, base_dir=tmp_path, seed=0)
    ex = domain.eval_examples()[0]
    assert ex.fields["prompt"] == [
        {"role": "system", "content": "Think."},
        {"role": "user", "content": ex.prompt.strip()},
    ]
    right = ex.fields["solution"]
    seen, think = (c.score([right, "no"], ex) for c in domain.reward.components)
    assert list(seen) == [1.0, 0.0]
    assert list(think) == [0.0, 0.0] and list(domain.reward.components[1].score(["<think>x</think>y"], ex)) == [1.0]
