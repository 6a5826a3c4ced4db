"""The YAML reference (docs/reference.md; `spectrum-rl schema`), generated from the schema: one
table per section with each field's default and meaning, then every registered name (policies,
mu schedules, losses, advantage estimators, sources, rewards) with its own parameters."""

from __future__ import annotations

from pydantic_core import PydanticUndefined

from spectrum_rl.config.schema import (
    DomainConfig,
    DomainEvalConfig,
    EvalConfig,
    LoggingConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    StudyConfig,
    TrainingConfig,
)
from spectrum_rl.objectives.advantages import ADVANTAGES
from spectrum_rl.objectives.losses import LOSSES
from spectrum_rl.registry import params_model
from spectrum_rl.rewards import REWARDS
from spectrum_rl.rewards.base import RewardSpec
from spectrum_rl.scheduler.blend import SFTConfig
from spectrum_rl.scheduler.difficulty import DifficultyConfig
from spectrum_rl.scheduler.mu import MU_SCHEDULES
from spectrum_rl.scheduler.policies import POLICIES, SchedulerConfig
from spectrum_rl.scheduler.prompts import PromptSamplingConfig
from spectrum_rl.schema import StrictModel
from spectrum_rl.sources.base import SOURCES
from spectrum_rl.sources.builtin import GENERATORS

_SECTIONS: list[tuple[str, type[StrictModel]]] = [
    ("run", RunConfig),
    ("model", ModelConfig),
    ("domains[i]", DomainConfig),
    ("domains[i].eval", DomainEvalConfig),
    ("scheduler", SchedulerConfig),
    ("scheduler.difficulty", DifficultyConfig),
    ("scheduler.prompt_sampling", PromptSamplingConfig),
    ("training", TrainingConfig),
    ("training.sft", SFTConfig),
    ("training.lora", LoraConfig),
    ("eval", EvalConfig),
    ("logging", LoggingConfig),
    ("study", StudyConfig),
]
_COMMON_REWARD_FIELDS = ("type", "weight", "name", "on_error")
_SUBSECTIONS = {
    DomainConfig: ("source", "reward", "eval"),
    TrainingConfig: ("sft", "lora"),
    SchedulerConfig: ("difficulty", "prompt_sampling"),
}


def reference_markdown() -> str:
    """Markdown tables of every config field with its default and description, then the names
    each registry accepts."""
    parts = []
    for prefix, model in _SECTIONS:
        parts.append(_field_table(f"`{prefix}`", model, prefix + ".", skip=_SUBSECTIONS.get(model, ())))
    parts.append(_field_table("Every reward component (`domains[i].reward[j]`)", RewardSpec, "", skip=()))
    for title, registry, skip in (("Source", SOURCES, ("type",)), ("Reward", REWARDS, _COMMON_REWARD_FIELDS)):
        for name, spec in registry.items():
            parts.append(_field_table(f"{title} `type: {name}` — {_first_line(spec)}", spec, "", skip=skip))
    for key, registry in (
        ("scheduler.policy", POLICIES),
        ("training.sft.mu", MU_SCHEDULES),
        ("training.loss", LOSSES),
        ("training.advantage", ADVANTAGES),
    ):
        for name, entry in registry.items():
            title = f"`{key}: {{type: {name}}}` — {_first_line(entry)}"
            parts.append(_field_table(title, params_model(entry), f"{key}.", skip=("type",)))
    rows = [f"| `{name}` | {gen.kind} | {gen.knob_help()} |" for name, gen in GENERATORS.items()]
    header = ["#### Values of `domains[i].source.generator`", "", "| name | kind | difficulty knobs |", "|---|---|---|"]
    parts.append("\n".join([*header, *rows]))
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
