"""Building a run: ``build_state`` makes everything the stages share (accelerator, policy, frozen
base, LoRA, sharding, optimizer, LR schedule) and returns it as one ``TrainState``; plus the helpers
it uses (LoRA wrapping, LR schedule, trackers, weight loading, per-layer mu hooks; the factors
themselves come from scheduler/blend.py ``layer_factors``)."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from spectrum_rl.config import Config
from spectrum_rl.config.launcher import launcher_fsdp, wants_sharding
from spectrum_rl.config.load import check_sharding
from spectrum_rl.cpu.attention import hf_attention_fp32
from spectrum_rl.cpu.onednn import onednn_linear
from spectrum_rl.cpu.precision import cpu_bf16
from spectrum_rl.errors import ConfigError
from spectrum_rl.models import load_causal_lm
from spectrum_rl.trainer import shared_prefix
from spectrum_rl.trainer.alignment import GradientSketch
from spectrum_rl.trainer.sharding import ensure_process_group, gathered, shard


@dataclass
class TrainState:
    """What every stage of a run uses, built once by ``build_state``."""

    acc: Accelerator
    model: torch.nn.Module  # the trained model as the stages call it (DDP-wrapped, or FSDP-sharded)
    base: torch.nn.Module | None  # frozen copy of the initial model (KL penalty, kl_to_base)
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LambdaLR  # stepped once per update, not once per process
    sharded: bool
    activation_checkpointing: bool
    onednn: bool | str  # training.onednn_linear
    precision: str  # what training.bf16 resolved to, and why (printed at the start of `train`)
    grad_scale: torch.Tensor | None = None  # per-layer mu: one gradient factor per parameter (setup hooks)
    layer_depth: list[float] | None = None  # depth in [0, 1] of each trainable parameter
    sketch: GradientSketch | None = None  # per-domain gradient sketches (alignment signal)

    @property
    def policy(self) -> torch.nn.Module:
        """The model without its distributed wrapper (for decoding and saving)."""
        return self.acc.unwrap_model(self.model)

    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    @property
    def device(self) -> torch.device:
        return self.acc.device

    @property
    def share_prefix(self) -> bool:
        """Whether each distinct prompt goes through the training forward once (loss.completion_logits);
        not sharded, where a forward is a collective and must not vary in count."""
        return not self.sharded

    @property
    def prompts_once(self) -> bool:
        """Whether the training forward processes U * P + B * T tokens (prompts once) rather than
        B * (P + T): with a shared prefix, unless checkpointing rules out the model's own KV cache and
        the model is not one ``trainer/shared_prefix.py`` runs itself."""
        return self.share_prefix and (not self.activation_checkpointing or shared_prefix.supports(self.model, 0))

    @contextlib.contextmanager
    def kernels(self) -> Iterator[None]:
        """A block with CPU linear layers on oneDNN (``training.onednn_linear``; cpu/onednn.py) and,
        on a CPU, the models' own attention in fp32 under autocast (cpu/attention.py)."""
        cpu = self.acc.device.type == "cpu"
        with onednn_linear(self.onednn, self.acc.device, self.model, self.base):
            with hf_attention_fp32() if cpu else contextlib.nullcontext():
                yield


def _release_precision(precision: str) -> None:
    """Let a second run in one process choose its own mixed precision: accelerate keeps one
    process-wide state and refuses a new precision once an earlier ``Accelerator`` (ours, or TRL's
    with its bf16 default) set another; the process group (``PartialState``) is kept."""
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", precision) != precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def resolve_bf16(setting: bool | str, cuda: bool) -> tuple[bool, str]:
    """``training.bf16`` as a decision and the sentence that says why: auto is on for a CUDA GPU and
    for a CPU with bf16 matmul units (cpu/precision.py), off elsewhere."""
    if setting != "auto":
        return bool(setting), f"{'bf16 autocast' if setting else 'fp32'} (training.bf16: {str(setting).lower()})"
    if cuda:
        return True, "bf16 autocast (training.bf16: auto, a CUDA GPU)"
    support = cpu_bf16()
    if support.native:
        return True, f"bf16 autocast (training.bf16: auto, CPU: {support.describe()})"
    return False, f"fp32 (training.bf16: auto, CPU: {support.describe()})"


def build_state(config: Config, output_dir: Path, accelerator: Accelerator | None, *, alignment: bool) -> TrainState:
    """Accelerator, policy (+ LoRA, + sharding), frozen base, AdamW and LR schedule for ``config``;
    ``alignment``: the planner reads gradient alignment (per-domain sketches, one process only)."""
    cfg = config.training
    check_trackers(config.logging.trackers)
    cuda = torch.cuda.is_available()
    bf16, precision_note = resolve_bf16(cfg.bf16, cuda)
    precision = "bf16" if bf16 else "no"
    if accelerator is None:
        _release_precision(precision)
    acc = accelerator or Accelerator(
        cpu=not cuda,
        mixed_precision=precision,
        log_with=config.logging.trackers or None,
        project_dir=str(output_dir),
    )
    if cfg.prompts_per_step % acc.num_processes:
        raise ConfigError(
            f"must be divisible by the number of processes ({acc.num_processes})", field="training.prompts_per_step"
        )
    sharded = wants_sharding(cfg.sharding)
    if sharded:  # (load_config checks it too, before a built-in model is built)
        check_sharding(config)
    launcher = launcher_fsdp() or {}
    torch.manual_seed(config.run.seed)
    model, tokenizer = load_causal_lm(config.model.name_or_path, config.model.dtype)
    needs_base = cfg.beta > 0 or config.eval.kl_to_base
    base = copy.deepcopy(model).eval().requires_grad_(False) if needs_base else None
    checkpointing = cfg.gradient_checkpointing
    if checkpointing == "auto":  # on for CUDA (as TRL) or when the accelerate FSDP config asks for it
        checkpointing = acc.device.type == "cuda" or launcher.get("activation_checkpointing", False)
    if checkpointing:  # recompute each layer in the backward instead of keeping its activations
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x's name for it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora is not None:
        model = with_lora(model, cfg.lora)
    if sharded:  # before the optimizer exists: it holds the shards (trainer/sharding.py)
        ensure_process_group(acc.device)
        model = shard(model, acc.device, reshard_after_forward=launcher.get("reshard_after_forward", True))
        if base is not None:
            base = shard(base, acc.device)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for the whole update, on CPU and CUDA
    optimizer = torch.optim.AdamW(
        params, lr=cfg.learning_rate, betas=cfg.adam_betas, fused=True, weight_decay=cfg.weight_decay
    )
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, cfg.steps * cfg.num_iterations))
    if not sharded:  # accelerate would wrap a sharded model again (in DDP on a CPU)
        model, optimizer = acc.prepare(model, optimizer)
        if base is not None:
            base.to(acc.device)
    state = TrainState(
        acc,
        model,
        base,
        tokenizer,
        optimizer,
        lr_scheduler,
        sharded,
        bool(checkpointing),
        cfg.onednn_linear,
        precision_note,
    )
    if alignment and acc.num_processes == 1:  # per-domain gradients need one process
        state.sketch = GradientSketch(state.policy, config.scheduler.alignment_dim, config.run.seed)
    if cfg.sft.layer_mu != "uniform":  # per-layer mu scales gradients through hooks
        with gathered(model):  # sharded: on the whole parameters, which autograd sees (sharding.py)
            state.grad_scale, state.layer_depth = layer_mu_hooks(state.policy)
    return state


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
    for part in sorted(folder.glob("*.safetensors")):
        state.update(load_file(part))
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
