"""The YAML reference (docs/reference.md; `spectrum-rl schema`), generated from the schema: one
table per section with each field's default and meaning, then the registered names."""

from __future__ import annotations

import typing

from pydantic_core import PydanticUndefined

from spectrum_rl.config.schema import (
    DomainConfig,
    DomainEvalConfig,
    EvalConfig,
    LoggingConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
)
from spectrum_rl.rewards.base import RewardSpec
from spectrum_rl.rewards.specs import RewardComponentSpec
from spectrum_rl.scheduler.blend import MU_SCHEDULES, MuSchedule, SFTConfig
from spectrum_rl.scheduler.policies import POLICIES, SchedulerConfig
from spectrum_rl.schema import StrictModel
from spectrum_rl.tasks.specs import SourceSpec

_SECTIONS: list[tuple[str, type[StrictModel]]] = [
    ("run", RunConfig),
    ("model", ModelConfig),
    ("tasks[i]", DomainConfig),
    ("tasks[i].eval", DomainEvalConfig),
    ("scheduler", SchedulerConfig),
    ("training", TrainingConfig),
    ("training.sft", SFTConfig),
    ("training.sft.mu", MuSchedule),
    ("training.lora", LoraConfig),
    ("eval", EvalConfig),
    ("logging", LoggingConfig),
]
_COMMON_REWARD_FIELDS = ("type", "weight", "name", "on_error")
_SUBSECTIONS = {DomainConfig: ("source", "reward", "eval"), TrainingConfig: ("sft", "lora"), SFTConfig: ("mu",)}


def reference_markdown() -> str:
    """Markdown tables of every config field with its default and description, then the names
    each registry accepts."""
    parts = []
    for prefix, model in _SECTIONS:
        parts.append(_field_table(f"`{prefix}`", model, prefix + ".", skip=_SUBSECTIONS.get(model, ())))
    parts.append(_field_table("Every reward component (`tasks[i].reward[j]`)", RewardSpec, "", skip=()))
    for title, union, skip in (
        ("Source", SourceSpec, ("type",)),
        ("Reward", RewardComponentSpec, _COMMON_REWARD_FIELDS),
    ):
        for member in typing.get_args(typing.get_args(union)[0]):
            tag = member.model_fields["type"].default
            doc = " ".join((member.__doc__ or "").strip().split("\n\n")[0].split())
            parts.append(_field_table(f"{title} `type: {tag}` — {doc}", member, "", skip=skip))
    for title, registry in (("`scheduler.policy`", POLICIES), ("`training.sft.mu.schedule`", MU_SCHEDULES)):
        rows = [f"| `{name}` | {_first_line(cls)} |" for name, cls in registry.items()]
        parts.append("\n".join([f"#### Values of {title}", "", "| name | what it does |", "|---|---|", *rows]))
    return "\n\n".join(parts) + "\n"


def _first_line(cls: type) -> str:
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split()).replace("|", "\\|")


def _field_table(title: str, model: type[StrictModel], prefix: str, skip: tuple[str, ...]) -> str:
    lines = [f"#### {title}", "", "| field | default | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        if field.default_factory is not None:
            value = field.default_factory()
            default = "(section)" if isinstance(value, StrictModel) else f"`{value!r}`"
        elif field.default is PydanticUndefined:
            default = "**required**"
        else:
            default = f"`{field.default!r}`"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{prefix}{name}` | {default} | {description} |")
    return "\n".join(lines)
