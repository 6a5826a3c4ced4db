"""The ``source:`` section of a domain: any spec registered in ``SOURCES``, chosen by its ``type``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from spectrum_rl.objects import held
from spectrum_rl.registry import Registered
from spectrum_rl.sources.base import SOURCES, RowDict, RowSource, SourceContext, SourceSpec
from spectrum_rl.sources.builtin import GENERATORS
from spectrum_rl.sources.pools import (
    BuiltinSource,
    load_file_rows,
    load_hub_rows,
    map_columns,
    pool_source,
    reasoning_gym_source,
)

_COLUMNS_HELP = (
    "Rename source columns to row fields, e.g. {problem: question, solution: answer}; a dotted name reads a "
    "field of a nested column, e.g. {reward_model.ground_truth: answer} (verl's data). "
    "Rows need a `question` (without one, TRL's `prompt` or else `messages` column is it); `answer`, `expert` "
    "and `constraint` are used when present."
)


@SOURCES.register("builtin")
class BuiltinSpec(SourceSpec):
    """A procedural generator: unlimited seeded rows with a held-out eval set."""

    generator: str = Field(description="Generator name (the values of `domains[i].source.generator` below).")
    difficulty: dict[str, int | tuple[int, int]] = Field(
        default_factory=dict,
        description="Difficulty knobs overriding the generator's defaults, e.g. {digits: 3}. One knob may be a range "
        "[easiest, hardest], e.g. {length: [2, 8]}: the scheduler then picks each prompt's level (a moving frontier, "
        "`scheduler.difficulty`), logged as `difficulty/<domain>`; the eval set spans the range.",
    )

    @field_validator("generator")
    @classmethod
    def _registered(cls, v: str) -> str:
        return GENERATORS.check(v)

    def build(self, ctx: SourceContext) -> RowSource:
        return BuiltinSource(GENERATORS.get(self.generator, field="source.generator"), self.difficulty, ctx)


_DIFFICULTY_FIELD_HELP = (
    "A column (after `columns`) holding each row's integer difficulty level: the pool becomes a ladder from its "
    "easiest to its hardest level and the scheduler picks each prompt's level, as for a built-in range knob "
    "(`scheduler.difficulty`; logged as `difficulty/<domain>`). Null: no levels."
)


@SOURCES.register("file")
class FileSpec(SourceSpec):
    """Rows from a local jsonl/json/csv/parquet file. ``eval.split`` may name a separate eval
    file; otherwise ``eval.size`` rows are held out by a seeded shuffle."""

    path: str = Field(description="Data file, relative to the config file's folder.")
    format: Literal["auto", "jsonl", "json", "csv", "parquet"] = Field(
        "auto", description="File format; auto picks it from the extension (.jsonl, .json, .csv, .parquet)."
    )
    columns: dict[str, str] = Field(default_factory=dict, description=_COLUMNS_HELP)
    difficulty_field: str | None = Field(None, description=_DIFFICULTY_FIELD_HELP)

    def _read(self, base_dir: Path, path: str, field: str) -> list[RowDict]:
        full = base_dir / path
        return map_columns(load_file_rows(full, self.format, field), self.columns, str(full))

    def build(self, ctx: SourceContext) -> RowSource:
        rows = self._read(ctx.base_dir, self.path, "source.path")
        held_out = self._read(ctx.base_dir, ctx.eval_split, "eval.split") if ctx.eval_split else None
        return pool_source(rows, held_out, ctx, f"file:{self.path}", self.difficulty_field)


@SOURCES.register("rows")
class RowsSpec(SourceSpec):
    """Rows given to `spectrum_rl.train` as Python objects (`srl.Domain(data=...)`: a list of
    mappings or a `datasets.Dataset`), held in this process under `key` (spectrum_rl/objects.py).
    ``eval.size`` rows are held out by a seeded shuffle."""

    key: str = Field(description="The key the rows are held under in this process.")
    columns: dict[str, str] = Field(default_factory=dict, description=_COLUMNS_HELP)
    difficulty_field: str | None = Field(None, description=_DIFFICULTY_FIELD_HELP)

    def build(self, ctx: SourceContext) -> RowSource:
        rows = map_columns([dict(r) for r in held("rows", self.key, "source.key")], self.columns, f"rows {self.key}")
        return pool_source(rows, None, ctx, f"rows {self.key}", self.difficulty_field)


@SOURCES.register("hub")
class HubSpec(SourceSpec):
    """Rows from a Hugging Face hub dataset (needs network, or the local cache when offline).
    ``eval.split`` may name the eval split; otherwise ``eval.size`` rows are held out."""

    name: str = Field(
        description="Dataset name on the hub, e.g. openai/gsm8k, or a local folder (relative to the config file's "
        "folder): one written by `save_to_disk`, or data files or a clone of a hub repo, as `load_dataset` reads them."
    )
    config: str | None = Field(None, description="Dataset configuration, e.g. main.")
    split: str = Field("train", description="Split to train on.")
    columns: dict[str, str] = Field(default_factory=dict, description=_COLUMNS_HELP)
    difficulty_field: str | None = Field(None, description=_DIFFICULTY_FIELD_HELP)

    def _read(self, split: str, field: str, base_dir: Path) -> list[RowDict]:
        rows = load_hub_rows(self.name, self.config, split, field, base_dir)
        return map_columns(rows, self.columns, f"hub dataset '{self.name}' split '{split}'")

    def build(self, ctx: SourceContext) -> RowSource:
        rows = self._read(self.split, "source.name", ctx.base_dir)
        held_out = self._read(ctx.eval_split, "eval.split", ctx.base_dir) if ctx.eval_split else None
        name = f"{self.name}:{self.config}" if self.config else self.name
        return pool_source(rows, held_out, ctx, f"hub:{name}[{self.split}]", self.difficulty_field)


@SOURCES.register("reasoning_gym")
class ReasoningGymSourceSpec(SourceSpec):
    """A reasoning_gym procedural dataset (optional dependency ``spectrum-rl[reasoning-gym]``)."""

    name: str = Field(description="Registered reasoning_gym dataset, e.g. leg_counting.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the dataset's config (not size or seed)."
    )
    size: int = Field(1000, ge=1, description="Number of distinct training entries.")

    def build(self, ctx: SourceContext) -> RowSource:
        return reasoning_gym_source(self.name, self.config, self.size, ctx)


AnySourceSpec = Annotated[SourceSpec, Registered(SOURCES)]
"""The ``source:`` of a domain: the spec class registered under its ``type``."""
