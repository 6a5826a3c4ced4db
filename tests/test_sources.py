"""Task generators and sources: determinism, correctness, eval/train disjointness, clear errors."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from spectrum_rl.config.schema import LoggingConfig
from spectrum_rl.errors import ConfigError
from spectrum_rl.sources.base import SourceContext
from spectrum_rl.sources.builtin import GENERATORS, LETTERS, check_constraint
from spectrum_rl.sources.common import derive_seed
from spectrum_rl.sources.specs import AnySourceSpec

SPEC = TypeAdapter(AnySourceSpec)
ROWS = [{"problem": f"q{i}", "solution": str(i)} for i in range(12)]


def ctx(base_dir: Path = Path("."), eval_size: int = 4, eval_split: str | None = None, seed: int = 0) -> SourceContext:
    return SourceContext(base_dir=base_dir, seed=seed, domain="d", eval_size=eval_size, eval_split=eval_split)


def build(spec: dict, context: SourceContext):
    return SPEC.validate_python(spec).build(context)


# --- generators -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_is_deterministic_and_well_formed(name):
    gen = GENERATORS.get(name)
    rows = [gen.make(random.Random(i)) for i in range(50)]
    assert rows == [gen.make(random.Random(i)) for i in range(50)]
    assert len({r["question"] for r in rows}) > 40
    for row in rows:
        assert all(isinstance(row[k], str) for k in ("question", "answer", "expert"))
        assert row["question"].isascii() and row["question"] == row["question"].lower()
        assert row["expert"] == row["answer"]  # a correct answer in the model's own format
        assert ("constraint" in row) == (gen.kind == "creative")


def _answers_correct(row: dict) -> bool:
    q, a = row["question"], row["answer"]
    if q.startswith("add: "):
        x, y = q[5:].split("+")
        return int(a) == int(x) + int(y)
    if q.startswith("sort: "):
        return a == "".join(sorted(q[6:]))
    if q.startswith("reverse: "):
        return a == q[9:][::-1]
    if q.startswith("first letter: "):
        return a == q[14]
    if q.startswith("last letter: "):
        return a == q[-1]
    if q.startswith("second last letter: "):
        return a == q[-2]
    if q.startswith("ends: "):
        return a == q[6] + q[-1]
    if m := re.fullmatch(r"(first|last) (\d+) letters: (\w+)", q):
        end, n, text = m.group(1), int(m.group(2)), m.group(3)
        return a == (text[:n] if end == "first" else text[-n:]) and len(a) == n
    if q.startswith("shift: "):  # each letter moved on by its position, by hand
        return a == "".join(chr((ord(c) - 97 + j) % 26 + 97) for j, c in enumerate(q[7:], 1))
    letter, text = re.fullmatch(r"count (\w): (\w+)", q).groups()
    return int(a) == text.count(letter)


@pytest.mark.parametrize("name", [n for n, g in GENERATORS.items() if g.kind == "structured"])
def test_structured_answers_are_correct(name):
    rng = random.Random(0)
    for _ in range(200):
        assert _answers_correct(GENERATORS.get(name).make(rng))


def test_only_the_letter_position_domains_are_left_out_of_pretraining():
    left_out = [n for n, g in GENERATORS.items() if not g.pretrained]
    assert left_out == ["first_letter", "last_letter", "penultimate", "ends", "shift", "prefix", "suffix"]


def test_shift_moves_each_letter_on_by_its_position_wrapping_at_z():
    row = GENERATORS.get("shift").make(random.Random(0), length=26)
    word = row["question"].split(": ")[1]
    assert sorted(word) == list(LETTERS) and _answers_correct(row)  # distinct letters, every one moved
    assert row["answer"][word.index("z")] == LETTERS[word.index("z")]  # z at position j: the j-th letter


def test_prefix_and_suffix_take_count_letters_and_reject_a_count_above_the_length():
    row = GENERATORS.get("suffix").make(random.Random(0), length=6, count=3)
    assert row["question"].startswith("last 3 letters: ") and row["answer"] == row["question"][-3:]
    with pytest.raises(ConfigError, match="count 4 is more than the length 3") as info:
        GENERATORS.get("prefix").make(random.Random(0), length=3, count=4)
    assert info.value.field == "source.difficulty.count"


@pytest.mark.parametrize("name", [n for n, g in GENERATORS.items() if g.kind == "creative"])
def test_creative_samples_satisfy_their_constraint(name):
    rng = random.Random(0)
    for _ in range(100):
        row = GENERATORS.get(name).make(rng)
        json.dumps(row["constraint"])
        assert check_constraint(row["constraint"], row["answer"]) == 1.0
        words = row["answer"].split()
        assert check_constraint(row["constraint"], "") == 0.0
        assert check_constraint(row["constraint"], " ".join(words + words)) < 1.0
        assert check_constraint(row["constraint"], "123 " + " ".join(words[1:])) < 1.0


def test_check_constraint_accepts_any_alphabetic_words():
    assert check_constraint({"type": "acrostic", "word": "cat"}, "Cobra, Aardvark, Tapir") == 1.0
    assert check_constraint({"type": "acrostic", "word": "cat"}, "cat dog") == pytest.approx(1 / 3)
    spec = {"type": "letter_words", "letter": "e", "count": 3, "banned": ["a"]}
    assert check_constraint(spec, "zephyr emblem jester") == 1.0
    assert check_constraint(spec, "zephyr zephyr jester") == pytest.approx(2 / 3)
    assert check_constraint(spec, "zephyr emblem eagle") == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="acrostic"):
        check_constraint({"type": "haiku"}, "x")


def test_token_classes_split_plan_and_steps():
    text = "plan: pick the smallest\nstep: e|hsr\nstep: eh|sr\nanswer: ehrs"
    classes = LoggingConfig().token_classes  # the defaults
    planning = re.findall(classes["planning"], text)
    execution = re.findall(classes["execution"], text)
    assert len(planning) == 1 and len(execution) == 2
    assert not set(planning) & set(execution)


@pytest.mark.parametrize(
    "name,knob,value,check",
    [
        ("addition", "digits", 4, lambda r: len(r["question"].split("+")[1]) == 4),
        ("sorting", "length", 7, lambda r: len(r["answer"]) == 7),
        ("reversal", "length", 9, lambda r: len(r["answer"]) == 9),
        ("counting", "letters", 2, lambda r: set(r["question"].split(": ")[1]) <= {"a", "b"}),
        ("acrostic", "length", 5, lambda r: len(r["answer"].split()) == 5),
        ("letter_words", "count", 5, lambda r: len(r["answer"].split()) == 5),
        ("letter_words", "banned", 0, lambda r: " no " not in r["question"]),
    ],
)
def test_difficulty_knobs_change_rows(name, knob, value, check):
    rng = random.Random(1)
    assert all(check(GENERATORS.get(name).make(rng, **{knob: value})) for _ in range(30))


@pytest.mark.parametrize(
    "difficulty,bad",
    [
        ({"digit": 3}, "digit"),
        ({"digits": 0}, "digits"),
        ({"digits": 99}, "digits"),
        ({"digits": "3"}, "digits"),
        ({"digits": True}, "digits"),
    ],
)
def test_bad_knobs_raise_config_error(difficulty, bad):
    with pytest.raises(ConfigError) as e:
        GENERATORS.get("addition").make(random.Random(0), **difficulty)
    assert e.value.field == f"source.difficulty.{bad}"
    assert "digits (default 2" in e.value.message


def test_unknown_knob_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'digits'"):
        build({"type": "builtin", "generator": "addition", "difficulty": {"digit": 3}}, ctx())


# --- builtin source ---------------------------------------------------------------------------


def test_builtin_source_eval_is_stable_and_disjoint():
    spec = {"type": "builtin", "generator": "sorting", "difficulty": {"length": 3}}
    source = build(spec, ctx(eval_size=200))
    eval_questions = [r["question"] for r in source.eval_rows()]
    assert len(set(eval_questions)) == 200
    assert eval_questions == [r["question"] for r in build(spec, ctx(eval_size=200)).eval_rows()]
    assert source.eval_rows() == source.eval_rows()
    train = source.train_rows(2000, random.Random(0))
    assert not {r["question"] for r in train} & set(eval_questions)
    assert train == source.train_rows(2000, random.Random(0))
    assert source.size is None
    assert source.describe() == "builtin:sorting(length=3)"
    other = build(spec, ctx(eval_size=200, seed=1)).eval_rows()
    assert [r["question"] for r in other] != eval_questions


@pytest.mark.parametrize("name", GENERATORS)
def test_every_generator_holds_out_100_eval_rows_at_default_difficulty(name):
    source = build({"type": "builtin", "generator": name}, ctx(eval_size=100))
    eval_questions = {r["question"] for r in source.eval_rows()}
    assert len(eval_questions) == 100
    assert not {r["question"] for r in source.train_rows(200, random.Random(0))} & eval_questions


def test_builtin_source_errors():
    with pytest.raises(ValidationError, match="unknown generator 'additon'; did you mean 'addition'") as e:
        SPEC.validate_python({"type": "builtin", "generator": "additon"})  # checked when the config is validated
    assert e.value.errors()[0]["loc"] == ("generator",)
    with pytest.raises(ConfigError, match="lower eval.size"):  # 1-digit sums: 81 questions
        build({"type": "builtin", "generator": "addition", "difficulty": {"digits": 1}}, ctx(eval_size=81))


def test_derive_seed_is_stable():
    assert derive_seed(0, "d", "eval") == derive_seed(0, "d", "eval") == 51511228
    assert derive_seed(0, "d", "eval") != derive_seed(0, "d", "train")


# --- file source ------------------------------------------------------------------------------


def _write(path: Path, fmt: str, rows: list[dict]) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "csv":
        path.write_text("problem,solution\n" + "".join(f"{r['problem']},{r['solution']}\n" for r in rows))
    else:
        import datasets

        datasets.Dataset.from_list(rows).to_parquet(str(path))


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_file_source_formats_and_columns(tmp_path, fmt):
    _write(tmp_path / f"data.{fmt}", fmt, ROWS)
    spec = {"type": "file", "path": f"data.{fmt}", "columns": {"problem": "question", "solution": "answer"}}
    source = build(spec, ctx(tmp_path))
    held_out = source.eval_rows()
    assert len(held_out) == 4 and source.size == 8
    assert held_out == build(spec, ctx(tmp_path)).eval_rows()
    train = source.train_rows(50, random.Random(0))
    held_out_questions = {r["question"] for r in held_out}
    assert {r["question"] for r in train} == {r["problem"] for r in ROWS} - held_out_questions
    for row in train:
        assert set(row) == {"question", "answer"}
        assert type(row["answer"]) in (str, int) and str(row["answer"]) == row["question"][1:]
    assert source.describe() == f"file:data.{fmt}"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_file_with_a_byte_order_mark_and_windows_line_ends_reads_as_without(tmp_path, fmt):
    _write(tmp_path / f"plain.{fmt}", fmt, ROWS)
    text = (tmp_path / f"plain.{fmt}").read_text()
    (tmp_path / f"excel.{fmt}").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())  # as Excel saves
    columns = {"problem": "question", "solution": "answer"}
    plain, excel = (
        build({"type": "file", "path": f"{n}.{fmt}", "columns": columns}, ctx(tmp_path)) for n in ("plain", "excel")
    )
    assert excel.eval_rows() == plain.eval_rows() and excel.size == plain.size == 8


def test_a_conversational_prompt_is_read_as_its_user_message_and_keeps_its_messages(tmp_path):
    def turns(*roles: str, i: int) -> list[dict]:
        return [{"role": role, "content": f"{role} {i}"} for role in roles]

    rows = [{"prompt": turns("user", i=i), "solution": str(i)} for i in range(10)]  # TRL's conversational format
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"type": "file", "path": "chat.jsonl", "columns": {"prompt": "question", "solution": "answer"}}
    source = build(spec, ctx(tmp_path))
    held_out, train = source.eval_rows(), source.train_rows(20, random.Random(0))
    assert len(held_out) == 4 and all(r["question"] == f"user {r['answer']}" for r in held_out + train)
    assert all(r["prompt"] == turns("user", i=int(r["answer"])) for r in held_out + train)  # TRL's prompt
    # TRL's column names need no mapping: `prompt`, else `messages`, is the question of rows without one
    for column in ("prompt", "messages"):
        named = [{column: r["prompt"], "solution": r["solution"]} for r in rows]
        (tmp_path / "trl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in named))
        unmapped = build({"type": "file", "path": "trl.jsonl", "columns": {"solution": "answer"}}, ctx(tmp_path))
        assert unmapped.eval_rows() == held_out, column
    plain = [{"prompt": f"text {i}", "question": f"q{i}"} for i in range(6)]  # a question of its own wins
    (tmp_path / "plain.jsonl").write_text("".join(json.dumps(r) + "\n" for r in plain))
    assert {r["question"] for r in build({"type": "file", "path": "plain.jsonl"}, ctx(tmp_path, 2)).eval_rows()} < {
        f"q{i}" for i in range(6)
    }
    rows = [{**r, "prompt": turns("system", "user", i=i)} for i, r in enumerate(rows)]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    held_out = build(spec, ctx(tmp_path)).eval_rows()
    assert all(r["question"] == f"user {r['answer']}" and r["prompt"][0]["role"] == "system" for r in held_out)
    for bad in (turns("user", "assistant", "user", i=4), turns("user", "system", i=4), turns("system", i=4)):
        rows[4]["prompt"] = bad
        (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        with pytest.raises(ConfigError, match=r"found the turns \[.*\]: put the text of other turns into the user"):
            build(spec, ctx(tmp_path))
    rows[4] = {"messages": turns("system", "user", i=4), "prompt": "a column", "solution": "4"}
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:5] * 6))
    with pytest.raises(ConfigError, match="a column 'prompt' besides the conversation read as their question"):
        build({**spec, "columns": {"messages": "question"}}, ctx(tmp_path))


def test_an_sft_conversation_gives_its_assistant_message_as_the_demonstration(tmp_path):
    """TRL's SFT formats: a `messages` column ending with the assistant's turn, or a prompt and a
    `completion` of one assistant message; either is the row's expert demonstration."""
    convo = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(10)
    ]
    pairs = [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "completion": [{"role": "assistant", "content": f"a{i}"}]}
        for i in range(10)
    ]
    for name, rows, columns in (
        ("convo", convo, {"messages": "question"}),
        ("pairs", pairs, {"prompt": "question", "completion": "expert"}),
    ):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        source = build({"type": "file", "path": f"{name}.jsonl", "columns": columns}, ctx(tmp_path))
        assert all(r["expert"] == "a" + r["question"][1:] for r in source.eval_rows()), name
    pairs[3]["completion"] = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    with pytest.raises(ConfigError, match="the expert of a row of .* must be one assistant message"):
        build(
            {"type": "file", "path": "pairs.jsonl", "columns": {"prompt": "question", "completion": "expert"}},
            ctx(tmp_path),
        )


def test_file_source_separate_eval_file(tmp_path):
    _write(tmp_path / "train.jsonl", "jsonl", ROWS)
    _write(tmp_path / "eval.jsonl", "jsonl", ROWS[:3])
    spec = {"type": "file", "path": "train.jsonl", "columns": {"problem": "question"}}
    source = build(spec, ctx(tmp_path, eval_split="eval.jsonl"))
    assert [r["question"] for r in source.eval_rows()] == ["q0", "q1", "q2"]
    assert source.size == 9
    with pytest.raises(ConfigError) as e:
        build(spec, ctx(tmp_path, eval_split="nope.jsonl"))
    assert e.value.field == "eval.split"


def test_a_larger_eval_split_is_sampled_to_eval_size(tmp_path):
    """eval.size is the number of held-out prompts with a split too (a 1319-row test split and size
    100 evaluates 100), and no training row asks a question of the split, sampled or not."""
    _write(tmp_path / "train.jsonl", "jsonl", ROWS)
    _write(tmp_path / "eval.jsonl", "jsonl", ROWS[:8])
    spec = {"type": "file", "path": "train.jsonl", "columns": {"problem": "question"}}
    held = [[r["question"] for r in build(spec, ctx(tmp_path, 3, "eval.jsonl", seed)).eval_rows()] for seed in (0, 1)]
    assert all(len(q) == 3 and set(q) <= {f"q{i}" for i in range(8)} for q in held)
    assert held[0] == [r["question"] for r in build(spec, ctx(tmp_path, 3, "eval.jsonl", 0)).eval_rows()]
    assert build(spec, ctx(tmp_path, 3, "eval.jsonl")).size == len(ROWS) - 8


def test_file_source_errors(tmp_path):
    def error(spec: dict, **kw) -> ConfigError:
        with pytest.raises(ConfigError) as e:
            build({"type": "file", **spec}, ctx(tmp_path, **kw))
        return e.value

    lines = [json.dumps({"question": f"q{i}"}) for i in range(10)]
    lines[6] = '{"question": "q6"'
    (tmp_path / "bad.jsonl").write_text("\n".join(lines))
    err = error({"path": "bad.jsonl"})
    assert err.message.startswith("line 7 is not valid JSON") and err.field == "source.path"

    err = error({"path": "missing.jsonl"})
    assert str((tmp_path / "missing.jsonl").resolve()) in err.message and err.field == "source.path"

    (tmp_path / "empty.jsonl").write_text("\n")
    assert "empty" in error({"path": "empty.jsonl"}).message
    (tmp_path / "header.csv").write_text("question,answer\n")
    assert "no rows" in error({"path": "header.csv"}).message
    _write(tmp_path / "none.parquet", "parquet", [])
    assert "no rows" in error({"path": "none.parquet"}).message
    (tmp_path / "fake.parquet").write_text("not parquet")
    assert "could not read" in error({"path": "fake.parquet"}).message

    (tmp_path / "latin.jsonl").write_bytes('{"question": "caf\u00e9"}\n'.encode("latin-1"))
    assert "not UTF-8" in error({"path": "latin.jsonl"}).message

    (tmp_path / "data.txt").write_text("x")
    assert "extension" in error({"path": "data.txt"}).message

    _write(tmp_path / "ok.jsonl", "jsonl", ROWS)
    err = error({"path": "ok.jsonl", "columns": {"problm": "question"}})
    assert err.field == "source.columns.problm" and "did you mean 'problem'" in err.message
    assert error({"path": "ok.jsonl"}).field == "source.columns"  # no question column
    err = error({"path": "ok.jsonl", "columns": {"problem": "question"}}, eval_size=12)
    assert "has 12 rows" in err.message and err.field == "eval.size"


# --- hub source -------------------------------------------------------------------------------


def test_hub_offline_fails_fast_with_a_hint():  # conftest sets HF_HUB_OFFLINE=1
    start = time.monotonic()
    with pytest.raises(ConfigError) as e:
        build({"type": "hub", "name": "no-such-owner/no-such-dataset", "config": "main"}, ctx())
    assert time.monotonic() - start < 10
    assert e.value.field == "source.name" and "\n" not in e.value.message
    assert "HF_HUB_OFFLINE" in e.value.message and "`file` source" in e.value.message


def test_an_unreachable_hub_prints_one_line_not_its_retry_warnings(monkeypatch, caplog):
    import logging

    import datasets

    def unreachable(*args, **kwargs):  # what huggingface_hub does online without a network
        logging.getLogger("huggingface_hub.utils._http").warning("'Name or service not known' thrown while requesting")
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    level = logging.getLogger("huggingface_hub").level
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError, match="Couldn't reach the Hub"):
        build({"type": "hub", "name": "owner/dataset"}, ctx())
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]
    assert logging.getLogger("huggingface_hub").level == level  # restored after the load


def test_a_local_dataset_folder_is_read_as_load_from_disk_or_load_dataset_would(tmp_path):
    """A hub source naming a folder (next to the config): one `save_to_disk` wrote, a Dataset or a
    DatasetDict, or a folder of data files."""
    from datasets import Dataset, DatasetDict

    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(12)]
    Dataset.from_list(rows).save_to_disk(tmp_path / "one")
    DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:3])}).save_to_disk(tmp_path / "two")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("one", "two", "files"):
        source = build({"type": "hub", "name": name}, ctx(tmp_path))
        assert source.size == 8 and len(source.eval_rows()) == 4, name
    split = build({"type": "hub", "name": "two"}, ctx(tmp_path, eval_split="test"))
    assert [r["question"] for r in split.eval_rows()] == ["q0", "q1", "q2"]
    with pytest.raises(ConfigError, match="no split 'valid' in the dataset saved at .*two; its splits: train, test"):
        build({"type": "hub", "name": "two", "split": "valid"}, ctx(tmp_path))
    with pytest.raises(ConfigError, match="one split, so eval.split 'test' names nothing") as info:
        build({"type": "hub", "name": "one"}, ctx(tmp_path, eval_split="test"))
    assert info.value.field == "eval.split"


# --- reasoning_gym source ---------------------------------------------------------------------


def test_reasoning_gym_source():
    pytest.importorskip("reasoning_gym")
    spec = {"type": "reasoning_gym", "name": "leg_counting", "size": 30}
    source = build(spec, ctx(eval_size=10))
    held_out = source.eval_rows()
    assert len(held_out) == 10 and source.size == 30
    assert held_out == build(spec, ctx(eval_size=10)).eval_rows()
    train = source.train_rows(40, random.Random(0))
    assert not {r["question"] for r in train} & {r["question"] for r in held_out}
    row = train[0]
    assert isinstance(row["answer"], str) and row["rg_entry"]["answer"] == row["answer"]
    import reasoning_gym

    score = reasoning_gym.get_score_answer_fn(row["rg_entry"]["metadata"]["source_dataset"])
    assert score(row["answer"], row["rg_entry"]) == 1.0
    assert source.describe() == "reasoning_gym:leg_counting(size=30)"


def test_reasoning_gym_errors():
    pytest.importorskip("reasoning_gym")
    with pytest.raises(ConfigError, match="did you mean 'leg_counting'") as e:
        build({"type": "reasoning_gym", "name": "leg_countin"}, ctx())
    assert e.value.field == "source.name"
    with pytest.raises(ConfigError) as e:
        build({"type": "reasoning_gym", "name": "leg_counting", "config": {"bogus": 1}}, ctx())
    assert e.value.field == "source.config"
    with pytest.raises(ConfigError) as e:
        build({"type": "reasoning_gym", "name": "leg_counting", "config": {"seed": 1}}, ctx())
    assert e.value.field == "source.config"


def test_reasoning_gym_missing_is_a_config_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    with pytest.raises(ConfigError, match=r'pip install "spectrum-rl\[reasoning-gym\]"') as e:
        build({"type": "reasoning_gym", "name": "leg_counting"}, ctx())
    assert e.value.field == "source.type"


def test_letter_ladders_draw_distinct_letters_on_request_and_the_same_rows_as_before_by_default():
    for name, at in (("first_letter", 1), ("last_letter", -2)):
        gen = GENERATORS.get(name)
        rng, same = random.Random(0), random.Random(0)
        for _ in range(50):  # the default draws what it always drew: the shipped world's rows
            assert gen.make(rng, length=5)["question"].endswith("".join(same.choices(LETTERS, k=5)))
        rows = [gen.make(random.Random(i), length=6, distinct=1) for i in range(300)]
        payloads = [r["question"].split(": ")[1] for r in rows]
        assert all(len(set(p)) == 6 for p in payloads) and all(_answers_correct(r) for r in rows)
        coincide = [gen.make(random.Random(i), length=6)["question"].split(": ")[1] for i in range(2000)]
        assert 0.02 < sum(p[at] == p[0 if at == 1 else -1] for p in coincide) / 2000 < 0.07  # the 1-in-26 floor


def test_a_system_message_comes_from_the_conversation_or_system_prompt_never_from_a_plain_column(tmp_path):
    from spectrum_rl.config import DomainConfig
    from spectrum_rl.domains import build_domain

    rows = [{"question": f"q{i}", "answer": "a", "system": "linux"} for i in range(8)]  # a column of that name
    (tmp_path / "plain.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    chat = [
        {"prompt": [{"role": "system", "content": f"s{i}"}, {"role": "user", "content": f"q{i}"}]} for i in range(8)
    ]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({**r, "answer": "a"}) + "\n" for r in chat))

    def first_system(path: str, **extra) -> str | None:
        columns = {"prompt": "question"} if path == "chat.jsonl" else {}
        cfg = {"name": "d", "kind": "structured", "source": {"type": "file", "path": path, "columns": columns}}
        cfg = DomainConfig.model_validate({**cfg, "eval": {"size": 2}, "reward": [{"type": "exact_match"}], **extra})
        example = build_domain(cfg, base_dir=tmp_path, seed=0).eval_examples()[0]
        return example.system if path == "plain.jsonl" else (example.system, example.prompt.strip()[1:])

    assert first_system("plain.jsonl") is None  # not a system message unless asked for
    assert first_system("plain.jsonl", system_prompt="Run on {system}.") == "Run on linux."
    system, index = first_system("chat.jsonl")
    assert system == f"s{index}"
    assert first_system("chat.jsonl", system_prompt="mine")[0] == "mine"


def test_a_dotted_column_reads_a_field_of_a_nested_column_as_verl_data_hold_answers(tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "reward_model": {"style": "rule", "ground_truth": str(i)}}
        for i in range(10)
    ]
    (tmp_path / "verl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {"prompt": "question", "reward_model.ground_truth": "answer"}
    source = build({"type": "file", "path": "verl.jsonl", "columns": columns}, ctx(tmp_path))
    assert all(r["answer"] == r["question"][1:] and r["reward_model"]["style"] == "rule" for r in source.eval_rows())
    with pytest.raises(ConfigError, match="column 'reward_model.truth' not in") as info:
        build({"type": "file", "path": "verl.jsonl", "columns": {**columns, "reward_model.truth": "x"}}, ctx(tmp_path))
    assert info.value.field == "source.columns.reward_model.truth"
    rows[5]["reward_model"] = {"style": "rule"}
    (tmp_path / "verl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match="a row of .* has no 'reward_model.ground_truth' \\(the first row has it\\)"):
        build({"type": "file", "path": "verl.jsonl", "columns": columns}, ctx(tmp_path))


def test_a_template_naming_a_conversation_is_told_to_name_its_user_message(tmp_path):
    from spectrum_rl.config import DomainConfig
    from spectrum_rl.domains import build_domain

    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "answer": "a"} for i in range(8)]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"name": "d", "kind": "structured", "source": {"type": "file", "path": "chat.jsonl"}, "prompt": "{prompt}"}
    cfg["source"]["columns"] = {"prompt": "question"}
    cfg = DomainConfig.model_validate({**cfg, "eval": {"size": 2}, "reward": ["exact_match"]})
    with pytest.raises(
        ConfigError, match=r"'\{prompt\}' holds the conversation's messages, not text; .*'\{question\}'"
    ):
        build_domain(cfg, base_dir=tmp_path, seed=0)
