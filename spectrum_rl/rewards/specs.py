"""The YAML schema of reward components: a union discriminated by ``type``."""

from __future__ import annotations

from typing import Annotated, Union, get_args

from pydantic import Field

from spectrum_rl.rewards.code import CodeTestsSpec
from spectrum_rl.rewards.external import PythonSpec, ReasoningGymSpec
from spectrum_rl.rewards.neural import JudgeSpec, RewardModelSpec
from spectrum_rl.rewards.preference import PreferenceModelSpec
from spectrum_rl.rewards.rules import ConstraintSpec, ContainsSpec, ExactMatchSpec, FormatSpec, LengthSpec, NumericSpec
from spectrum_rl.rewards.similarity import DiversitySpec, SimilaritySpec

# The registry of reward types: a new component is a spec + component in one file and one entry here.
COMPONENT_SPECS = (
    ExactMatchSpec, NumericSpec, FormatSpec, ContainsSpec, LengthSpec, ConstraintSpec, SimilaritySpec, DiversitySpec,
    PreferenceModelSpec, RewardModelSpec, JudgeSpec, PythonSpec, ReasoningGymSpec, CodeTestsSpec,
)  # fmt: skip

RewardComponentSpec = Annotated[Union[COMPONENT_SPECS], Field(discriminator="type")]  # noqa: UP007 (built from a tuple)
"""One entry of ``tasks[i].reward``: any component spec, chosen by its ``type``."""

REWARD_TYPES: tuple[str, ...] = tuple(get_args(cls.model_fields["type"].annotation)[0] for cls in COMPONENT_SPECS)
"""Every component ``type``, in schema order."""
