"""The ``source:`` section of a domain: one spec per source type, told apart by ``type``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from spectrum_rl.schema import StrictModel
from spectrum_rl.tasks.base import Row, SourceContext, TaskSource
from spectrum_rl.tasks.builtin import GENERATORS, get_generator
from spectrum_rl.tasks.sources import (
    BuiltinSource,
    load_file_rows,
    load_hub_rows,
    map_columns,
    pool_source,
    reasoning_gym_source,
)

_COLUMNS_HELP = (
    "Rename source columns to row fields, e.g. {problem: question, solution: answer}. "
    "Rows need a `question`; `answer`, `expert` and `constraint` are used when "
    "present."
)


class BuiltinSpec(StrictModel):
    """A procedural generator: unlimited seeded rows with a held-out eval set."""

    type: Literal["builtin"] = Field("builtin", description="Source type.")
    generator: str = Field(description=f"Generator name: {', '.join(GENERATORS)}.")
    difficulty: dict[str, int] = Field(
        default_factory=dict, description="Difficulty knobs overriding the generator's defaults, e.g. {digits: 3}."
    )

    def build(self, ctx: SourceContext) -> TaskSource:
        return BuiltinSource(get_generator(self.generator), self.difficulty, ctx)


class FileSpec(StrictModel):
    """Rows from a local jsonl/json/csv/parquet file. ``eval.split`` may name a separate eval
    file; otherwise ``eval.size`` rows are held out by a seeded shuffle."""

    type: Literal["file"] = Field("file", description="Source type.")
    path: str = Field(description="Data file, relative to the config file's folder.")
    format: Literal["auto", "jsonl", "json", "csv", "parquet"] = Field(
        "auto", description="File format; auto picks it from the extension (.jsonl, .json, .csv, .parquet)."
    )
    columns: dict[str, str] = Field(default_factory=dict, description=_COLUMNS_HELP)

    def _read(self, base_dir: Path, path: str, field: str) -> list[Row]:
        full = base_dir / path
        return map_columns(load_file_rows(full, self.format, field), self.columns, str(full))

    def build(self, ctx: SourceContext) -> TaskSource:
        rows = self._read(ctx.base_dir, self.path, "source.path")
        held_out = self._read(ctx.base_dir, ctx.eval_split, "eval.split") if ctx.eval_split else None
        return pool_source(rows, held_out, ctx, f"file:{self.path}")


class HubSpec(StrictModel):
    """Rows from a Hugging Face hub dataset (needs network, or the local cache when offline).
    ``eval.split`` may name the eval split; otherwise ``eval.size`` rows are held out."""

    type: Literal["hub"] = Field("hub", description="Source type.")
    name: str = Field(description="Dataset name on the hub, e.g. openai/gsm8k.")
    config: str | None = Field(None, description="Dataset configuration, e.g. main.")
    split: str = Field("train", description="Split to train on.")
    columns: dict[str, str] = Field(default_factory=dict, description=_COLUMNS_HELP)

    def _read(self, split: str, field: str) -> list[Row]:
        rows = load_hub_rows(self.name, self.config, split, field)
        return map_columns(rows, self.columns, f"hub dataset '{self.name}' split '{split}'")

    def build(self, ctx: SourceContext) -> TaskSource:
        rows = self._read(self.split, "source.name")
        held_out = self._read(ctx.eval_split, "eval.split") if ctx.eval_split else None
        name = f"{self.name}:{self.config}" if self.config else self.name
        return pool_source(rows, held_out, ctx, f"hub:{name}[{self.split}]")


class ReasoningGymSpec(StrictModel):
    """A reasoning_gym procedural dataset (optional dependency ``spectrum-rl[reasoning-gym]``)."""

    type: Literal["reasoning_gym"] = Field("reasoning_gym", description="Source type.")
    name: str = Field(description="Registered reasoning_gym dataset, e.g. leg_counting.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the dataset's config (not size or seed)."
    )
    size: int = Field(1000, ge=1, description="Number of distinct training entries.")

    def build(self, ctx: SourceContext) -> TaskSource:
        return reasoning_gym_source(self.name, self.config, self.size, ctx)


SourceSpec = Annotated[BuiltinSpec | FileSpec | HubSpec | ReasoningGymSpec, Field(discriminator="type")]
