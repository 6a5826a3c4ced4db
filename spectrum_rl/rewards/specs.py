"""The YAML schema of reward components: any spec registered in ``REWARDS``, chosen by its ``type``."""

from __future__ import annotations

from typing import Annotated

from spectrum_rl.registry import Registered
from spectrum_rl.rewards.base import REWARDS, RewardSpec

# The built-in components register themselves when their modules are imported, in this order (that of
# the reference and of error messages); a new module joins the list.
# isort: off
from spectrum_rl.rewards import rules, similarity, preference, neural, external, code, http  # noqa: F401
# isort: on

RewardComponentSpec = Annotated[RewardSpec, Registered(REWARDS)]
"""One entry of ``domains[i].reward``: the spec class registered under its ``type``."""
