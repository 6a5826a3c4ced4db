"""Run configuration: the YAML schema (schema.py), loading with ``extends`` and ``--set``
overrides (load.py), one-line error messages (messages.py) and the generated reference
(reference.py)."""

from spectrum_rl.config.load import (
    Override,
    check_cross_fields,
    load_config,
    locate_error,
    merge_config,
    parse_override,
    read_yaml,
)
from spectrum_rl.config.reference import reference_markdown
from spectrum_rl.config.schema import (
    AUTO_EXPERT,
    Config,
    DomainConfig,
    DomainEvalConfig,
    EvalConfig,
    LoggingConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
)
from spectrum_rl.scheduler.blend import SFTConfig
from spectrum_rl.scheduler.policies import SchedulerConfig

__all__ = [
    "AUTO_EXPERT",
    "Config",
    "DomainConfig",
    "DomainEvalConfig",
    "EvalConfig",
    "LoggingConfig",
    "LoraConfig",
    "ModelConfig",
    "Override",
    "RunConfig",
    "SFTConfig",
    "SchedulerConfig",
    "TrainingConfig",
    "check_cross_fields",
    "load_config",
    "locate_error",
    "merge_config",
    "parse_override",
    "read_yaml",
    "reference_markdown",
]
