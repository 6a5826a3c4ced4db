"""Trainer set-up helpers: LoRA wrapping, LR schedule, trackers, weight loading, per-layer mu hooks
(the factors themselves come from scheduler/blend.py ``layer_factors``)."""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from spectrum_rl.errors import ConfigError


def layer_mu_hooks(model) -> tuple[torch.Tensor, list[float]]:
    """Register a hook scaling each trainable parameter's gradient by ``scale[i]`` (the caller sets
    ``scale`` before each backward); returns (scale, depth fraction in [0, 1] of each parameter).
    Embeddings sit at the bottom; parameters outside the blocks (final norm, head) at the top."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    depth = [int(m.group(1)) if (m := re.search(r"layers\.(\d+)\.", n)) else None for n, _ in named]
    n_layers = max([d for d in depth if d is not None], default=0) + 1
    fraction = [
        (d + 0.5) / n_layers if d is not None else (0.0 if "embed" in n else 1.0) for (n, _), d in zip(named, depth)
    ]
    scale = torch.ones(len(named))
    for i, (_, p) in enumerate(named):
        p.register_hook(lambda g, i=i: g * scale[i])
    return scale, fraction


def load_weights(model, folder: Path) -> None:
    """Load saved weights into ``model`` in place (full model or PEFT adapter)."""
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict  # optional dependency: only LoRA runs get here

        set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
        return
    state = {}
    for shard in sorted(folder.glob("*.safetensors")):
        state.update(load_file(shard))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if "lm_head" in k}
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"checkpoint {folder} does not match the model (missing {missing}, unexpected {unexpected})")


def with_lora(model, lora):
    try:
        from peft import LoraConfig, get_peft_model  # optional dependency: spectrum-rl[peft]
    except ImportError:
        raise ConfigError('needs peft: pip install "spectrum-rl[peft]"', field="training.lora") from None
    return get_peft_model(
        model,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),
    )


def check_trackers(trackers: list[str]) -> None:
    for name in trackers:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"tracker '{name}' is not installed: pip install \"spectrum-rl[{name}]\"", field="logging.trackers"
            )


def lr_lambda(cfg, total: int) -> Callable[[int], float]:
    def factor(update: int) -> float:
        if update < cfg.warmup_steps:
            return (update + 1) / cfg.warmup_steps
        t = (update - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        if cfg.lr_schedule == "linear":
            return max(0.0, 1 - t)
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return 1.0

    return factor


def flat_config(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "."))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
    return out
