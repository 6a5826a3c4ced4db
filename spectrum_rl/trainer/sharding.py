"""Sharded training with FSDP2 (``training.sharding: fsdp``).

PyTorch's ``fully_shard`` (FSDP2; Zhao et al. 2023, "PyTorch FSDP", arXiv:2304.11277) splits every
parameter along dim 0 over the W processes, and with it its gradient and its AdamW state: each
process holds 1/W of them. There is one FSDP unit per decoder layer plus the root (embeddings,
final norm, head). A layer's full weights exist only while it runs: all-gathered before its forward
and again before its backward, its gradient reduce-scattered after it.

What that asks of the trainer:
- **Decoding.** Rollouts and evaluation decode token by token, through layer submodules (the static
  decoder) or the model's own cache. ``gathered`` all-gathers every unit once for the block and keeps
  it whole: decoding then issues no collectives, and each process may decode a different number of
  rows and tokens. The cost is one full copy of the weights per process during the block, as when
  verl or OpenRLHF hand the weights to their inference engine.
- **Collective training passes.** Every forward and backward of a sharded model is a collective.
  All processes must run the same number of micro-batches, each with the same number of forwards.
  ``agree_counts`` says how many; the trainer pads with empty micro-batches of weight 0. The
  shared-prompt forward is off, since it takes one or two forwards depending on the rows.
- **State.** State dicts hold shards (DTensors). Checkpoints go through
  ``torch.distributed.checkpoint``: each process writes its own shards. ``full_state_dict`` gathers
  the whole model on rank 0 for ``final/``.

On GPUs, ``accelerate launch`` with an FSDP config (``--use_fsdp``) turns sharding on
(``sharding: auto``). Its ``reshard_after_forward`` and ``activation_checkpointing`` settings are
honoured. The model is sharded here, not by ``accelerate.prepare``: on a CPU, accelerate's FSDP
plugin quietly gives DDP instead, and this way CPU and GPU runs take the same code path.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from spectrum_rl.errors import ConfigError

SHARDED_DIR = "sharded"  # a checkpoint's torch.distributed.checkpoint folder (model and optimizer shards)

# Each unit's reshard_after_forward as configured: restored after a ``gathered`` block.
_RESHARD: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


def ensure_process_group(device: torch.device) -> None:
    """A process group of one when no launcher made one: FSDP needs a group even for a single process."""
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timedelta(minutes=30))


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks: modules of the classes Hugging Face marks as never to be split
    across devices (``_no_split_modules``), as accelerate's transformer auto-wrap policy picks them."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ConfigError(
            f"cannot find the decoder layers of {type(model).__name__} (no _no_split_modules) to shard",
            field="training.sharding",
        )
    return layers


def shard(model: torch.nn.Module, device: torch.device, *, reshard_after_forward: bool = True) -> torch.nn.Module:
    """Shard ``model`` in place over all processes: one FSDP unit per decoder layer, then the root.
    The root keeps its weights after forward, since the backward needs them at once (FSDP2's own
    choice for the root)."""
    model.to(device)
    # FSDP2 warns that a model returning a view (the logits slice) must not be changed in place; the
    # losses here never are.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward)
        _RESHARD[layer] = reshard_after_forward
    fully_shard(model, mesh=mesh, reshard_after_forward=False)
    _RESHARD[model] = False
    return model


def is_sharded(model: torch.nn.Module | None) -> bool:
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gathered(*models: torch.nn.Module | None) -> Iterator[None]:
    """Inside the block the sharded models are whole on every process and stay whole through any
    number of forwards; unsharded models are left as they are. Every process must enter the block
    (its all-gathers are collectives)."""
    units = [u for m in models if is_sharded(m) for u in m.modules() if isinstance(u, FSDPModule)]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(_RESHARD.get(unit, True), recurse=False)


def local_numel(tensors: Iterable[torch.Tensor]) -> int:
    """Elements this process holds (a shard's local part for a DTensor)."""
    return sum(t.to_local().numel() if isinstance(t, DTensor) else t.numel() for t in tensors)


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """``clip_grad_norm_`` over sharded gradients: the total norm of the whole model, on every process."""
    total = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)
    return float(total.full_tensor() if isinstance(total, DTensor) else total)


def agree_counts(counts: list[int], device: torch.device) -> list[int]:
    """The largest of each count over all processes."""
    t = torch.tensor(counts, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on rank 0, in CPU memory ({} on the other ranks). Collective."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Every process writes its shards of the model and optimizer state to ``folder``. Collective."""
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=folder)


def load_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load ``save_sharded``'s folder into the sharded model and optimizer in place. Collective; a
    missing or unreadable shard on any process raises on every process."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=folder)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
