"""Base class for every config object: strict (unknown keys are errors), documented defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section. Unknown keys are rejected (the loader adds a "did you mean")."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
