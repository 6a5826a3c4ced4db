"""Task sources: a procedural generator, or a fixed pool of rows loaded from a file, the hub or
reasoning_gym. Every source keeps its eval rows disjoint from training rows by ``question``.

Loading errors are ConfigErrors located at the YAML field to fix (``source.path``,
``source.name``, ``eval.split``, ...), so the CLI can print them as one line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spectrum_rl.errors import ConfigError, did_you_mean
from spectrum_rl.sources.base import RowDict, RowSource, SourceContext
from spectrum_rl.sources.builtin import Generator
from spectrum_rl.sources.common import derive_seed

_MAX_TRIES = 1000
_EXTENSIONS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_FORMATS = ("jsonl", "json", "csv", "parquet")


class BuiltinSource(RowSource):
    """Unlimited rows from a generator. The eval set comes from its own seed, derived from
    (run seed, domain, "eval"); training draws that hit an eval question are redrawn."""

    def __init__(
        self, generator: Generator, difficulty: Mapping[str, int | tuple[int, int]], ctx: SourceContext
    ) -> None:
        self.generator = generator
        ranges = {k: v for k, v in difficulty.items() if not isinstance(v, int)}
        if len(ranges) > 1:
            raise ConfigError(f"at most one knob may be a range; {', '.join(ranges)} are", field="source.difficulty")
        fixed = {k: v for k, v in difficulty.items() if k not in ranges}
        self._range: tuple[str, int, int] | None = None
        for knob, (lo, hi) in ranges.items():
            if lo > hi:
                raise ConfigError(f"expected [easiest, hardest], found [{lo}, {hi}]", field=f"source.difficulty.{knob}")
            generator.knobs({**fixed, knob: lo}), generator.knobs({**fixed, knob: hi})  # both ends in bounds
            self._range = (knob, lo, hi)
        self.knobs = generator.knobs(fixed)
        self._eval_size = ctx.eval_size
        eval_rng = random.Random(derive_seed(ctx.seed, ctx.domain, "eval"))
        self._eval: list[RowDict] = []
        self._eval_levels: list[int] = []
        questions: set[str] = set()
        for _ in range(ctx.eval_size):
            level = self._level(eval_rng)
            row = self._draw(eval_rng, questions, level)
            questions.add(row["question"])
            self._eval.append(row)
            if level is not None:
                self._eval_levels.append(level)
        self._eval_questions = frozenset(questions)
        # Fail at build time, not mid-training, when eval leaves no training question.
        self._draw(random.Random(derive_seed(ctx.seed, ctx.domain, "probe")), self._eval_questions)

    def _level(self, rng: random.Random) -> int | None:
        """A level drawn uniformly over the range (None without one)."""
        return None if self._range is None else rng.randint(*self._range[1:])

    def _draw(self, rng: random.Random, exclude: set[str] | frozenset[str], level: int | None = None) -> RowDict:
        knobs = self.knobs
        if self._range is not None:  # a level drawn uniformly over the range unless one is given
            knobs = {**knobs, self._range[0]: self._level(rng) if level is None else level}
        for _ in range(_MAX_TRIES):
            row = self.generator.make(rng, **knobs)
            if row["question"] not in exclude:
                return row
        raise ConfigError(
            f"{self.describe()} has too few distinct questions to hold out "
            f"{self._eval_size} for eval and still train; lower eval.size or raise "
            "source.difficulty",
            field="eval.size",
        )

    def eval_rows(self) -> list[RowDict]:
        return self._eval

    def eval_levels(self) -> list[int] | None:
        return self._eval_levels if self._range is not None else None

    def train_rows(self, n: int, rng: random.Random) -> list[RowDict]:
        return [self._draw(rng, self._eval_questions) for _ in range(n)]

    @property
    def ladder(self) -> tuple[int, int] | None:
        return None if self._range is None else self._range[1:]

    def rows_at_levels(self, levels: list[int], rng: random.Random) -> list[RowDict]:
        if self._range is None:
            return super().rows_at_levels(levels, rng)
        return [self._draw(rng, self._eval_questions, level) for level in levels]

    def describe(self) -> str:
        knobs = {**self.knobs, **({self._range[0]: list(self._range[1:])} if self._range else {})}
        return f"builtin:{self.generator.name}({', '.join(f'{k}={v}' for k, v in knobs.items())})"


class PoolSource(RowSource):
    """A fixed list of training rows, drawn with replacement, and a fixed list of eval rows; with
    ``levels`` (one integer difficulty per training row) a ladder from the easiest to the hardest,
    and ``eval_levels`` those of the eval rows."""

    def __init__(
        self,
        train: list[RowDict],
        held_out: list[RowDict],
        description: str,
        levels: list[int] | None = None,
        eval_levels: list[int] | None = None,
    ) -> None:
        self._train, self._eval, self._description = train, held_out, description
        self._eval_levels = eval_levels
        self._by_level: dict[int, list[int]] = {}
        for i, level in enumerate(levels or []):
            self._by_level.setdefault(level, []).append(i)

    @property
    def ladder(self) -> tuple[int, int] | None:
        return (min(self._by_level), max(self._by_level)) if self._by_level else None

    def rows_at_levels(self, levels: list[int], rng: random.Random) -> list[RowDict]:
        if not self._by_level:
            return super().rows_at_levels(levels, rng)
        present = sorted(self._by_level)
        out = []
        for level in levels:  # a level the data do not have: the nearest one it has
            nearest = min(present, key=lambda have: (abs(have - level), have))
            out.append(self._train[rng.choice(self._by_level[nearest])])
        return out

    def eval_rows(self) -> list[RowDict]:
        return self._eval

    def eval_levels(self) -> list[int] | None:
        return self._eval_levels

    def train_rows(self, n: int, rng: random.Random) -> list[RowDict]:
        return rng.choices(self._train, k=n)

    @property
    def size(self) -> int:
        return len(self._train)

    def rows_at(self, indices: list[int]) -> list[RowDict]:
        return [self._train[i] for i in indices]

    def describe(self) -> str:
        return self._description


def pool_source(
    rows: list[RowDict],
    eval_rows: list[RowDict] | None,
    ctx: SourceContext,
    description: str,
    difficulty_field: str | None = None,
) -> PoolSource:
    """Split ``rows`` into train/eval: hold out ``ctx.eval_size`` rows by a seeded shuffle, or
    from a separate eval set when one is given (all of it when it is no larger), then drop training
    rows whose question is in eval (in any row of a separate set: it is the user's test set). With
    ``difficulty_field``, every row's integer level in that field makes the pool a ladder."""
    field = "eval.size" if eval_rows is None else "eval.split"
    eval_order = random.Random(derive_seed(ctx.seed, ctx.domain, "eval"))
    if eval_rows is not None:
        questions = {r["question"] for r in eval_rows}
        if len(eval_rows) > ctx.eval_size:  # eval.size is the number of held-out prompts, a split's too
            eval_rows = [eval_rows[i] for i in sorted(eval_order.sample(range(len(eval_rows)), ctx.eval_size))]
    else:
        if len(rows) <= ctx.eval_size:
            raise ConfigError(
                f"{description} has {len(rows)} rows; holding out eval.size="
                f"{ctx.eval_size} would leave none to train on; lower eval.size "
                "or give a separate eval split",
                field=field,
            )
        order = list(range(len(rows)))
        eval_order.shuffle(order)
        eval_rows = [rows[i] for i in sorted(order[: ctx.eval_size])]
        rows = [rows[i] for i in sorted(order[ctx.eval_size :])]
        questions = {r["question"] for r in eval_rows}
    train = [r for r in rows if r["question"] not in questions]
    if not train:
        raise ConfigError(f"every training question of {description} is also an eval question", field=field)
    levels = held_out = None
    if difficulty_field is not None:  # every row checked, the held-out ones too: bad data fail at load
        every = [_level(r, difficulty_field, description) for r in [*train, *eval_rows]]
        levels, held_out = every[: len(train)], every[len(train) :]
    return PoolSource(train, eval_rows, description, levels, held_out)


def _level(row: RowDict, field: str, description: str) -> int:
    """The integer difficulty level in ``row[field]`` (CSV gives strings such as "3")."""
    value = row.get(field)
    try:
        level = int(value)  # type: ignore[arg-type]
        if isinstance(value, bool) or level != float(value):  # type: ignore[arg-type]
            raise ValueError
    except (TypeError, ValueError):
        shown = "missing" if field not in row else repr(value)
        raise ConfigError(
            f"difficulty field '{field}' of {description} must hold an integer level in every row; "
            f"found {shown} in the row with question {str(row.get('question'))[:60]!r}",
            field="source.difficulty_field",
        ) from None
    return level


def map_columns(rows: list[RowDict], columns: Mapping[str, str], where: str) -> list[RowDict]:
    """Rename columns (source name -> row field) and check that rows have a ``question``. A dotted
    name reads a field inside a nested column (verl's ``reward_model.ground_truth``) into a row
    field of its own, the column staying as it is."""
    found = list(rows[0])
    nested = {col: new for col, new in columns.items() if col not in found and "." in col}
    for col in columns:
        if col not in found and (col not in nested or _nested(rows[0], col) is _MISSING):
            raise ConfigError(
                f"column '{col}' not in {where}{did_you_mean(col, found)}; columns: {', '.join(found)}",
                field=f"source.columns.{col}",
            )
    renamed = []
    for row in rows:
        out = {columns.get(k, k): v for k, v in row.items()}
        for col, new in nested.items():
            value = _nested(row, col)
            if value is _MISSING:
                raise ConfigError(
                    f"a row of {where} has no '{col}' (the first row has it): {str(row)[:80]}",
                    field=f"source.columns.{col}",
                )
            out[new] = value
        renamed.append(out)
    rows = renamed
    # TRL's column names for the prompt (its prompt-only and conversational formats) stand for the
    # question unless the rows have one, as srl.Domain's rows do
    trl = next((c for c in ("prompt", "messages") if "question" not in rows[0] and c in rows[0]), None)
    if trl is not None:
        rows = [{("question" if k == trl else k): v for k, v in row.items()} for row in rows]
    if "question" not in rows[0]:
        raise ConfigError(
            f"rows of {where} need a 'question' field (or TRL's 'prompt' or 'messages'); columns: {', '.join(found)}"
            "; map one with columns: {<column>: question}",
            field="source.columns",
        )
    return [_text_question(row, where) for row in rows]


_MISSING = object()


def _nested(row: RowDict, path: str) -> Any:
    """The value at dotted ``path`` inside ``row``'s nested mappings, or ``_MISSING``."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _text_question(row: RowDict, where: str) -> RowDict:
    """``row`` with its question as text. A conversational prompt (TRL's list of messages) is read as
    its user message, and an assistant message it ends with (an SFT conversation) as the row's
    ``expert`` demonstration; the messages before that stay in the row as ``prompt`` (TRL's name):
    the trainer applies the chat template with their system message, if any (``conversation``), and
    a reward function is called as TRL calls it on conversational data. An ``expert`` or ``answer``
    given as one assistant message (TRL's conversational completion) is read as its text; an
    ``answer`` given as a list of texts or numbers is the list of accepted answers."""
    question = row["question"]
    if isinstance(question, (list, tuple)):
        roles = [m.get("role") if isinstance(m, Mapping) else type(m).__name__ for m in question]
        texts = all(isinstance(m, Mapping) and isinstance(m.get("content"), str) for m in question)
        inner = roles[1 if roles[:1] == ["system"] else 0 : -1 if roles[-1:] == ["assistant"] else None]
        if not texts or inner != ["user"]:
            raise ConfigError(
                f"a conversational prompt in {where} is read as one user message, after a system message and "
                f"before an assistant message if any (the trainer applies the model's chat template); found the "
                f"turns {roles}: put the text of other turns into the user message",
                field="source.columns",
            )
        turns = dict(zip(roles, (m["content"] for m in question)))
        extra = {"prompt": [dict(m) for m in question if m["role"] != "assistant"]}
        if "assistant" in turns:
            extra["expert"] = turns["assistant"]
        if clash := sorted(extra.keys() & row.keys()):
            raise ConfigError(
                f"rows of {where} have a column '{clash[0]}' besides the conversation read as their question"
                f"{' (its assistant message is the demonstration)' if clash[0] == 'expert' else ''}; rename or "
                "drop one",
                field="source.columns",
            )
        row = {**row, "question": turns["user"], **extra}
    elif row["question"] is None or isinstance(question, Mapping):
        raise ConfigError(
            f"every row of {where} needs a question as text; found {question!r:.60}", field="source.columns"
        )
    for key in ("expert", "answer"):
        value = row.get(key)
        if not isinstance(value, (list, tuple)):
            continue
        if key == "answer" and value and all(isinstance(v, (str, int, float)) for v in value):
            continue  # the accepted answers (aliases): a reward that reads the answer accepts any of them
        said = [m.get("content") for m in value if isinstance(m, Mapping) and m.get("role") == "assistant"]
        if len(value) != 1 or len(said) != 1 or not isinstance(said[0], str):
            what = "a list of accepted answers (text or numbers) or " if key == "answer" else ""
            raise ConfigError(
                f"the {key} of a row of {where} is a list; it must be {what}one assistant message (TRL's "
                f"conversational completion); found {value!r:.80}",
                field="source.columns",
            )
        row = {**row, key: said[0]}
    return row


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _read_rows(path: Path, fmt: str, field: str) -> list[RowDict]:
    """Rows of the file, parsed here (not by ``datasets``, which costs ~140 MB of imports) so that
    bad text names its line and empty files are reported as such. CSV values stay strings."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for non-parquet input
            raise ConfigError(f"could not read {path} as parquet: {_one_line(e)}", field=field) from e
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8", Windows editors) is dropped
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{path} is not UTF-8 text (line {line}, byte {e.start}); re-save it as UTF-8", field=field
        ) from None
    if not text.strip():
        raise ConfigError(f"{path} is empty", field=field)
    if fmt == "csv":
        try:
            return list(csv.DictReader(io.StringIO(text)))
        except csv.Error as e:
            raise ConfigError(f"could not read {path} as csv: {e}", field=field) from None
    numbered = (
        [(1, text)] if fmt == "json" else [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    )
    rows = []
    for number, chunk in numbered:
        try:
            value = json.loads(chunk)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"line {number + e.lineno - 1} is not valid JSON: {e.msg} (in {path})", field=field
            ) from None
        values = value if fmt == "json" and isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, dict):
                raise ConfigError(
                    f"line {number} is not a JSON object (in {path})"
                    if fmt == "jsonl"
                    else f"{path} must hold a JSON object or a list of objects",
                    field=field,
                )
        rows += values
    return rows


def load_file_rows(path: Path, fmt: str, field: str) -> list[RowDict]:
    """Rows of a jsonl/json/csv/parquet file (``fmt`` "auto" picks by extension)."""
    if not path.is_file():
        raise ConfigError(f"file not found: {path.resolve()}", field=field)
    if fmt == "auto":
        if path.suffix.lower() not in _EXTENSIONS:
            raise ConfigError(
                f"cannot tell the format of {path.name} from its extension; set "
                f"source.format to one of {', '.join(_FORMATS)}",
                field=field,
            )
        fmt = _EXTENSIONS[path.suffix.lower()]
    rows = _read_rows(path, fmt, field)
    if not rows:
        raise ConfigError(f"{path} has no rows", field=field)
    return rows


def load_hub_rows(name: str, config: str | None, split: str, field: str, base_dir: Path) -> list[RowDict]:
    """Rows of one split of a hub dataset (or of the local cache when offline), or of a local folder
    (relative to ``base_dir``): one written by ``save_to_disk``, or data files / a clone of a repo."""
    import datasets

    local = base_dir / Path(name).expanduser()
    if local.is_dir():
        return _load_local_dataset(local, config, split, field)
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its per-request retry warnings: a failure is reported below, in one line
    try:
        rows = datasets.load_dataset(name, config, split=split).to_list()
    except Exception as e:  # offline, missing, gated, bad config or split: all the user's to fix
        raise ConfigError(
            f"could not load dataset '{name}' (config {config}, split {split}) "
            f"from the hub ({_one_line(e)}); offline, set HF_HUB_OFFLINE=1 to use "
            "a copy cached while online, or use a local `file` source",
            field=field,
        ) from e
    finally:
        hub_log.setLevel(level)
    if not rows:
        raise ConfigError(f"split '{split}' of '{name}' has no rows", field=field)
    return rows


def _load_local_dataset(folder: Path, config: str | None, split: str, field: str) -> list[RowDict]:
    import datasets

    saved = (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()
    try:
        if not saved:  # data files, or a clone of a hub repo: as load_dataset reads them
            data = datasets.load_dataset(str(folder), config, split=split)
        else:
            data = datasets.load_from_disk(str(folder))
            if isinstance(data, datasets.DatasetDict):
                if split not in data:
                    raise ConfigError(
                        f"no split '{split}' in the dataset saved at {folder}; its splits: {', '.join(data)}",
                        field="eval.split" if field == "eval.split" else "source.split",
                    )
                data = data[split]
            elif field == "eval.split":
                raise ConfigError(
                    f"the dataset saved at {folder} is one split, so eval.split '{split}' names nothing; save a "
                    "DatasetDict, or hold out eval.size rows (eval.split: null)",
                    field=field,
                )
        rows = data.to_list()
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            f"could not load the dataset folder {folder} (split {split}): {_one_line(e)}", field=field
        ) from e
    if not rows:
        raise ConfigError(f"split '{split}' of {folder} has no rows", field=field)
    return rows


def reasoning_gym_source(name: str, config: Mapping[str, Any], size: int, ctx: SourceContext) -> PoolSource:
    """``size`` training rows and ``ctx.eval_size`` eval rows from a reasoning_gym dataset.

    Each row has ``question``, ``answer`` (str or None), ``metadata`` and ``rg_entry`` (the
    original entry). Rewards should score with reasoning_gym 0.1.25's
    ``get_score_answer_fn(row["rg_entry"]["metadata"]["source_dataset"])(answer, row["rg_entry"])``.
    Eval entries come from a second seed; those whose question is in training are skipped.
    """
    try:
        import reasoning_gym
        from reasoning_gym.factory import DATASETS
    except ImportError:
        raise ConfigError(
            'reasoning_gym is not installed; pip install "spectrum-rl[reasoning-gym]"', field="source.type"
        ) from None
    if name not in DATASETS:
        raise ConfigError(
            f"unknown reasoning_gym dataset '{name}'{did_you_mean(name, DATASETS)} ({len(DATASETS)} registered)",
            field="source.name",
        )
    if {"size", "seed"} & config.keys():
        raise ConfigError("set the size with source.size; the seed is derived from the run seed", field="source.config")

    def entries(stream: str, n: int) -> Iterable[dict[str, Any]]:
        try:
            return reasoning_gym.create_dataset(name, size=n, seed=derive_seed(ctx.seed, ctx.domain, stream), **config)
        except (TypeError, ValueError, AssertionError) as e:
            raise ConfigError(
                f"invalid config for reasoning_gym dataset '{name}': {_one_line(e)}", field="source.config"
            ) from e

    train = [_rg_row(e) for e in entries("train", size)]
    seen = {r["question"] for r in train}
    held_out: list[RowDict] = []
    for entry in entries("eval", 4 * ctx.eval_size + 100):
        if len(held_out) == ctx.eval_size:
            break
        if entry["question"] not in seen:
            seen.add(entry["question"])
            held_out.append(_rg_row(entry))
    if len(held_out) < ctx.eval_size:
        raise ConfigError(
            f"reasoning_gym '{name}' gave only {len(held_out)} eval questions that "
            "are not in training; lower eval.size or source.size",
            field="eval.size",
        )
    return PoolSource(train, held_out, f"reasoning_gym:{name}(size={size})")


def _rg_row(entry: dict[str, Any]) -> RowDict:
    answer = entry.get("answer")
    return {
        "question": entry["question"],
        "answer": None if answer is None else str(answer),
        "metadata": entry.get("metadata", {}),
        "rg_entry": entry,
    }
