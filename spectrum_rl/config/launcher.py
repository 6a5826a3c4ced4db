"""What the process launcher asked for: ``accelerate launch`` passes its config file's choices to the
processes it starts through environment variables (``ACCELERATE_USE_FSDP``, ``FSDP_*``)."""

from __future__ import annotations

import os


def launcher_fsdp() -> dict[str, bool] | None:
    """The FSDP settings of an ``accelerate launch --use_fsdp`` run, or None when the launcher did
    not ask for FSDP."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return None
    flag = lambda name, default: os.environ.get(name, default).lower() == "true"  # noqa: E731
    # FSDP1 names the same choice "sharding strategy": SHARD_GRAD_OP keeps the weights after forward
    keep = os.environ.get("FSDP_SHARDING_STRATEGY", "").upper() in {"SHARD_GRAD_OP", "2"}
    return {
        "reshard_after_forward": flag("FSDP_RESHARD_AFTER_FORWARD", "true") and not keep,
        "activation_checkpointing": flag("FSDP_ACTIVATION_CHECKPOINTING", "false"),
    }


def wants_sharding(setting: str) -> bool:
    """``training.sharding`` resolved: "auto" shards when the launcher asked for FSDP."""
    return setting == "fsdp" or (setting == "auto" and launcher_fsdp() is not None)
