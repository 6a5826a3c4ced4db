"""Checkpoints and the run directory's JSONL logs.

``checkpoints/step-N/`` holds the model (Hugging Face ``save_pretrained``; a PEFT adapter with
LoRA), the tokenizer, and ``trainer_state.pt`` (optimizer, LR schedule, planner state, step). A
sharded run (trainer/sharding.py) keeps the model and optimizer as each process's shards in
``sharded/`` (PyTorch distributed checkpointing) instead.
Sampling and data RNGs are re-derived from (seed, step, rank) at every step, so the step number
is the whole data position. A checkpoint is written to a temporary folder, fsynced and renamed,
so a crash never leaves a half-written ``step-N`` (its temporary folder is removed by the next
save); on resume a checkpoint whose state or weights do not load (truncated, corrupt, missing) is
skipped with a warning and the previous one is used.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from spectrum_rl.errors import ConfigError
from spectrum_rl.trainer.setup import TrainState, load_weights
from spectrum_rl.trainer.sharding import SHARDED_DIR, full_state_dict, load_sharded, save_sharded

STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def write_checkpoint(
    root: Path, step: int, write_model: Callable[[Path], None], state: dict[str, Any], keep: int
) -> Path:
    """Write ``root/step-N`` atomically and delete all but the ``keep`` newest checkpoints."""
    tmp = begin_checkpoint(root, step)
    try:
        write_model(tmp)
        return commit_checkpoint(root, step, tmp, state, keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def begin_checkpoint(root: Path, step: int) -> Path:
    """A fresh temporary folder for step N's files (and any left by a crash mid-write removed: the run
    lock excludes a live writer)."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".step-{step}.", dir=root))


def commit_checkpoint(root: Path, step: int, tmp: Path, state: dict[str, Any], keep: int) -> Path:
    """Add the trainer state to ``tmp``, fsync everything and rename it to ``root/step-N``; then delete
    all but the ``keep`` newest checkpoints."""
    final = root / f"step-{step}"
    torch.save(state, tmp / STATE_FILE)
    for path in sorted(tmp.rglob("*"), reverse=True):  # files before the folders that list them
        _fsync(path)
    _fsync(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(root)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete-looking checkpoint folders, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def load_latest(root: Path, load_model: Callable[[Path], None] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint whose state and (when given) model both load, falling back to older
    ones with a warning. ``load_model(folder)`` loads the weights in place."""
    for path in reversed(list_checkpoints(root)):
        try:
            state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
            if load_model is not None:
                load_model(path)
            return path, state
        except Exception as exc:  # truncated or corrupt: use the previous one
            warnings.warn(
                f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc)[:120]}); trying an older one",
                stacklevel=2,
            )
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL log ([] when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only records with ``step <= last_step`` (drops steps redone after a resume)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            break  # a torn last line from a crash
    path.write_text("".join(k + "\n" for k in kept))


def save_run_state(st: TrainState, root: Path, step: int, extra: dict[str, Any], keep: int) -> Path | None:
    """Write ``root/step-N``: weights, optimizer, LR schedule and ``extra`` (step, planner); every
    process takes part. Sharded, each process writes its shards of the model and optimizer
    (trainer/sharding.py) and rank 0 the rest. Returns the folder on rank 0."""
    state = {**extra, "lr_scheduler": st.lr_scheduler.state_dict()}
    path = None
    if not st.sharded:
        state["optimizer"] = st.optimizer.state_dict()
        if st.is_main:

            def write_model(folder: Path) -> None:
                st.policy.save_pretrained(folder)
                st.tokenizer.save_pretrained(folder)

            path = write_checkpoint(root, step, write_model, state, keep)
    else:
        folder = [str(begin_checkpoint(root, step)) if st.is_main else None]
        dist.broadcast_object_list(folder, src=0)  # one temporary folder for all processes' shards
        tmp = Path(folder[0])
        save_sharded(tmp / SHARDED_DIR, st.model, st.optimizer)
        st.acc.wait_for_everyone()
        if st.is_main:
            st.tokenizer.save_pretrained(tmp)
            path = commit_checkpoint(root, step, tmp, state, keep)
    st.acc.wait_for_everyone()
    return path


def load_run_state(st: TrainState, output_dir: Path) -> dict[str, Any] | None:
    """Load the newest readable checkpoint of the run in ``output_dir`` into ``st`` (weights,
    optimizer, LR schedule) and cut its logs back to that step; returns the rest of its state
    (step, planner), or None when there is none. Every process takes part."""
    root = output_dir / "checkpoints"
    if st.sharded:
        load = lambda folder: load_sharded(folder / SHARDED_DIR, st.model, st.optimizer)  # noqa: E731
    else:
        load = lambda folder: load_weights(st.policy, folder)  # noqa: E731
    newest = list_checkpoints(root)[-1:]
    if newest and (newest[0] / SHARDED_DIR).is_dir() != st.sharded:
        raise ConfigError(
            f"{newest[0]} was written {'without' if st.sharded else 'with'} sharding; resume with the same setting",
            field="training.sharding",
        )
    found = load_latest(root, load)
    state = None
    if found is not None:
        state = found[1]
        if "optimizer" in state:  # sharded: loaded with the model's shards
            st.optimizer.load_state_dict(state.pop("optimizer"))
        st.lr_scheduler.load_state_dict(state.pop("lr_scheduler"))
        if st.is_main:  # the logs forget the steps after the checkpoint, as the weights do
            for name in ("metrics.jsonl", "eval.jsonl"):
                truncate_jsonl(output_dir / name, int(state["step"]))
    st.acc.wait_for_everyone()
    return state


def save_final(st: TrainState, folder: Path, merge_lora: bool) -> None:
    """``final/``: the whole model in Hugging Face format, written by rank 0 (sharded, gathered
    there first: every process takes part); with LoRA the adapters merged."""
    weights = full_state_dict(st.model) if st.sharded else None
    if not st.is_main:
        return
    model = st.policy
    if weights is not None:  # a tied head comes back as a copy of the embeddings: keep one name per tensor
        names = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
        weights = {k: v for k, v in weights.items() if k in names}
    if merge_lora:
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(folder, state_dict=weights)
    st.tokenizer.save_pretrained(folder)
