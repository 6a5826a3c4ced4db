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
  ``torch.distributed.checkpoint`` (DCP): each process writes its own shards. ``full_state_dict``
  gathers the whole model on rank 0 for ``final/``. DCP's reader unpickles a checkpoint's
  ``.metadata`` with plain ``pickle`` and its non-tensor values (learning rates, betas) with
  ``torch.load(weights_only=False)``, either of which runs whatever a crafted file names; here the
  metadata goes through a restricted unpickler (``read_metadata``) and those values through torch's
  weights-only loader, so loading a checkpoint runs no code from it (trainer/checkpoint.py).

On GPUs, ``accelerate launch`` with an FSDP config (``--use_fsdp``) turns sharding on
(``sharding: auto``). Its ``reshard_after_forward`` and ``activation_checkpointing`` settings are
honoured. The model is sharded here, not by ``accelerate.prepare``: on a CPU, accelerate's FSDP
plugin quietly gives DDP instead, and this way CPU and GPU runs take the same code path.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import warnings
import weakref
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem
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
METADATA_FILE = ".metadata"  # DCP's index of the shards: a pickle

# All that DCP's .metadata pickle names (PyTorch 2.13), besides torch dtypes: its own
# dataclasses, tensor sizes and layouts, and the path it was saved to.
_METADATA_GLOBALS = {
    "torch.distributed.checkpoint.metadata": {
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "Metadata",
        "MetadataIndex",
        "StorageMeta",
        "TensorProperties",
        "TensorStorageMetadata",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},  # a lookup of torch.strided etc. by name
    "torch": {"Size"},
    "pathlib": {"PosixPath"},
}

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
    missing or unreadable shard on any process raises on every process: a ConfigError for content
    refused as unsafe (`read_metadata`, `_WeightsOnlyPlanner`), else a RuntimeError."""
    reader = _CheckedReader(folder, read_metadata(folder))
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    try:
        dcp.load(state, storage_reader=reader, planner=_WeightsOnlyPlanner(folder))
    except CheckpointException as exc:  # every process's failures, as a BaseException: unwrapped here
        failures = [failure for failure, _ in exc.failures.values()]
        for failure in failures:
            if isinstance(failure, ConfigError):
                raise failure from None
        if any(isinstance(failure, pickle.UnpicklingError) for failure in failures):  # DCP reads tensors weights-only
            raise ConfigError(
                "a shard holds more than tensors, so the weights-only loader refuses it (loading it could run code)",
                file=str(folder),
            ) from None
        raise RuntimeError("; ".join(f"{type(f).__name__}: {f}" for f in failures)[:300]) from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


class _MetadataRefused(pickle.UnpicklingError):
    """The metadata names something it is not made of (a damaged pickle raises other errors)."""


class _MetadataUnpickler(pickle.Unpickler):
    """Builds only what DCP's metadata is made of (``_METADATA_GLOBALS`` and torch dtypes): a
    function to call or a class to build that is not among them is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        dtype = module == "torch" and isinstance(torch.__dict__.get(name), torch.dtype)
        if dtype or name in _METADATA_GLOBALS.get(module, ()):
            return super().find_class(module, name)
        raise _MetadataRefused(f"{module}.{name}")


def read_metadata(folder: Path) -> Metadata:
    """The DCP metadata of ``folder``, unpickled by `_MetadataUnpickler` (DCP's own reader uses plain
    ``pickle.load``). Content that names anything else, or that points at files outside ``folder``,
    is a ConfigError naming the file; a missing or damaged file raises OSError or another error."""
    file = folder / METADATA_FILE
    with file.open("rb") as f:
        try:
            metadata = _MetadataUnpickler(f).load()
        except _MetadataRefused as exc:
            raise ConfigError(
                f"names {exc}, which is not part of a sharded checkpoint's metadata, so it is not loaded "
                "(loading it could run code); delete that checkpoint folder to resume from an older one, or start "
                "afresh with `train --overwrite`",
                file=str(file),
            ) from None
    storage = getattr(metadata, "storage_data", None)
    if not isinstance(metadata, Metadata) or not isinstance(storage, dict):
        raise ConfigError("not the metadata of a sharded checkpoint", file=str(file))
    if not all(_inside(getattr(info, "relative_path", None)) for info in storage.values()):
        raise ConfigError("names shard files outside its folder, so it is not loaded", file=str(file))
    return metadata


def _inside(name: Any) -> bool:
    """Whether ``name`` is a plain file name (no folder, so it stays in the checkpoint's folder)."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


class _CheckedReader(dcp.FileSystemReader):
    """DCP's file reader, handed the metadata `read_metadata` checked (it would unpickle it again)."""

    def __init__(self, folder: Path, metadata: Metadata) -> None:
        super().__init__(folder)
        self._metadata = metadata

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if getattr(self._metadata, "storage_meta", None) is None:  # as FileSystemReader.read_metadata
            self._metadata.storage_meta = StorageMeta()
        self._metadata.storage_meta.load_id = self.load_id
        return self._metadata


class _WeightsOnlyPlanner(DefaultLoadPlanner):
    """DCP's load planner, but a checkpoint's non-tensor values are unpickled by torch's weights-only
    loader: DCP's own ``load_bytes`` uses ``torch.load(weights_only=False)``. ``folder``: the
    checkpoint's, for the error."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            loaded = torch.load(value, weights_only=True)
        except pickle.UnpicklingError:
            info = self.metadata.storage_data.get(read_item.storage_index) if self.metadata else None
            shard = Path(self.folder, getattr(info, "relative_path", "?"))
            raise ConfigError(
                f"{read_item.dest_index.fqn} holds more than plain values, so the weights-only loader refuses it "
                "(loading it could run code)",
                file=str(shard),
            ) from None
        # The parent unpickles with weights_only=False: it gets a fresh pickle of what was accepted.
        again = io.BytesIO()
        torch.save(loaded, again)
        again.seek(0)
        super().load_bytes(read_item, again)
