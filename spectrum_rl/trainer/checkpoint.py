"""Checkpoints and the run directory's JSONL logs.

``checkpoints/step-N/`` holds the model (Hugging Face ``save_pretrained``: safetensors; a PEFT
adapter with LoRA), the tokenizer, ``trainer_state.json`` (format, step, planner state, LR
schedule) and ``optimizer.pt`` (the optimizer's state_dict). A sharded run (trainer/sharding.py)
keeps the model and optimizer as each process's shards in ``sharded/`` (PyTorch distributed
checkpointing) instead, and has no ``optimizer.pt``.
Sampling and data RNGs are re-derived from (seed, step, rank) at every step, so the step number
is the whole data position. A checkpoint is written to a temporary folder, fsynced and renamed,
so a crash never leaves a half-written ``step-N`` (its temporary folder is removed by the next
save); on resume a checkpoint whose state or weights do not load (truncated, corrupt, missing) is
skipped with a warning and the previous one is used.

Loading a checkpoint never runs code from it. Checkpoints are shared and downloaded like models,
and unpickling a file runs whatever the file names. So nothing in a run folder is unpickled with
plain ``pickle``/``torch.load``: the trainer state is JSON, the weights safetensors, ``optimizer.pt``
is read only by torch's weights-only loader (tensors and plain containers) and a sharded
checkpoint's pickled index only by a restricted unpickler (trainer/sharding.py). A file refused for
that (a pickle where JSON or safetensors belong, an ``optimizer.pt`` the weights-only loader
refuses, the single ``trainer_state.pt`` pickle of the old layout) is a ConfigError naming it,
never skipped for an older checkpoint, which would hide it.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import pickletools
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from spectrum_rl.errors import ConfigError
from spectrum_rl.trainer.setup import TrainState, load_weights
from spectrum_rl.trainer.sharding import SHARDED_DIR, full_state_dict, load_sharded, save_sharded

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
BASE_DIR_NOTE = "# relative paths in this config start from "  # the first line of a run's config.yaml
RUN_LOGS = ("metrics.jsonl", "eval.jsonl", "completions.jsonl")  # one record per step (or eval), cut on resume
OLD_STATE_FILE = "trainer_state.pt"  # the layout before FORMAT 1: everything in one pickle, never loaded
FORMAT = 2  # the layout of trainer_state.json (2: with the rollouts generated); another one is refused
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TO_PROCEED = "delete that checkpoint folder to resume from an older one, or start afresh with `train --overwrite`"


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
    """Add the trainer state to ``tmp`` (its ``optimizer`` entry, when there is one, as optimizer.pt;
    the rest as trainer_state.json), fsync everything and rename it to ``root/step-N``; then delete
    all but the ``keep`` newest checkpoints."""
    final = root / f"step-{step}"
    state = dict(state)
    optimizer = state.pop("optimizer", None)
    if optimizer is not None:  # tensors: read back only by the weights-only loader (`_read_tensors`)
        torch.save(optimizer, tmp / OPTIMIZER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({"format": FORMAT, **state}))
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


def load_latest(
    root: Path, load_model: Callable[[Path], None] | None = None, *, optimizer: bool = False
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint whose state and (when given) model both load, falling back to older
    ones with a warning when one is damaged. ``load_model(folder)`` loads the weights in place;
    ``optimizer``: read optimizer.pt too (`read_state`). A refused file (a ConfigError) ends the
    search: falling back would hide it."""
    for path in reversed(list_checkpoints(root)):
        try:
            state = read_state(path, optimizer=optimizer)
            if load_model is not None:
                load_model(path)
            return path, state
        except ConfigError:
            raise
        except Exception as exc:  # truncated or corrupt: use the previous one, unless a pickle replaced the weights
            for weights in sorted(path.glob("*.safetensors")):
                _refuse_pickle(weights, "safetensors", _TO_PROCEED)
            warnings.warn(
                f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc)[:120]}); trying an older one",
                stacklevel=2,
            )
    return None


def read_state(folder: Path, *, optimizer: bool = False) -> dict[str, Any]:
    """The trainer state of checkpoint ``folder``: ``step``, ``planner``, ``lr_scheduler`` and, with
    ``optimizer``, the optimizer's state_dict (``optimizer``). A file this version will not load
    (the old pickle layout, a pickle where JSON belongs, a foreign or newer state) is a ConfigError
    naming it; a damaged one raises another exception."""
    file = folder / STATE_FILE
    if not file.exists() and (folder / OLD_STATE_FILE).exists():
        raise ConfigError(
            "a checkpoint in the old pickle format, which can run code, is not loaded; resume from a checkpoint "
            "written by this version of spectrum-rl, or start afresh with `train --overwrite`",
            file=str(folder / OLD_STATE_FILE),
        )
    state = read_json(file, _TO_PROCEED)
    version = state.get("format") if isinstance(state, dict) else None
    if isinstance(version, int) and version > FORMAT:
        raise ConfigError(
            f"written by a newer spectrum-rl (checkpoint format {version}; this one reads {FORMAT}); upgrade "
            "spectrum-rl to resume it",
            file=str(file),
        )
    if isinstance(version, int) and 0 < version < FORMAT:
        raise ConfigError(
            f"written by an older spectrum-rl (checkpoint format {version}; this one reads {FORMAT}); resume it "
            "with that version, or start afresh with `train --overwrite`",
            file=str(file),
        )
    kinds = {"step": int, "rollouts": int, "planner": dict, "lr_scheduler": dict}
    if version != FORMAT or any(not isinstance(state.get(k), t) for k, t in kinds.items()):
        raise ConfigError(
            f"not a trainer state of spectrum-rl (format {FORMAT} with {', '.join(kinds)}); {_TO_PROCEED}",
            file=str(file),
        )
    del state["format"]
    if optimizer:
        state["optimizer"] = _read_tensors(folder / OPTIMIZER_FILE)
    return state


def read_json(path: Path, remedy: str) -> Any:
    """The JSON document in ``path``. A pickle there (an old or foreign format) is a ConfigError
    naming the file and ending with ``remedy`` (what to do), and is never loaded; other damage
    raises ValueError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        _refuse_pickle(path, "JSON", remedy)
        raise


def _read_tensors(file: Path) -> Any:
    """``torch.load`` by the weights-only loader: tensors and plain containers load; a file naming
    anything else (a function to call, a class to build) is a ConfigError, and nothing it names runs."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL (\S+)", str(exc))
        refers = f" (it names {named.group(1)})" if named else ""
        raise ConfigError(
            f"holds more than tensors and plain containers{refers}, so the weights-only loader refuses it "
            f"(loading it could run code); {_TO_PROCEED}",
            file=str(file),
        ) from None


def _refuse_pickle(path: Path, expected: str, remedy: str) -> None:
    """A ConfigError when ``path``, which should hold ``expected``, holds a pickle instead."""
    kind = _pickle_kind(path)
    if kind is not None:
        raise ConfigError(
            f"holds {kind}, not {expected}; a pickle can run code when loaded, so it is not loaded; {remedy}",
            file=str(path),
        )


def _pickle_kind(path: Path) -> str | None:
    """What kind of pickle ``path`` holds when it is a whole one (a raw pickle, or torch.save's zip
    archive of one), else None (a damaged file, or no pickle). The file is only parsed
    (``pickletools``, ``zipfile``), never loaded."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickled = any(name.endswith("data.pkl") for name in archive.namelist())
            return "a torch.save archive (a pickle)" if pickled else None
        with path.open("rb") as f:
            if f.read(1) != pickle.PROTO:  # every pickle of protocol 2 or later starts so; JSON never does
                return None
            f.seek(0)
            for _ in pickletools.genops(f):  # to its STOP; a truncated stream raises
                pass
        return "a pickle"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL log ([] when the file does not exist); a file that is not one is a
    ConfigError naming it."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _not_jsonl(path, exc) from None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only records with ``step <= last_step`` (drops steps redone after a resume)."""
    if not path.exists():
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:  # the logs are ASCII JSON: this is some other file
        raise _not_jsonl(path, exc) from None
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            break  # a torn last line from a crash
    path.write_text("".join(k + "\n" for k in kept))


def _not_jsonl(path: Path, exc: ValueError) -> ConfigError:
    return ConfigError(
        f"not a JSON-lines log ({type(exc).__name__}: {str(exc)[:80]}); restore the file or delete it",
        file=str(path),
    )


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
    found = load_latest(root, load, optimizer=not st.sharded)  # sharded: the optimizer is in the shards
    if found is None and newest:  # starting afresh would overwrite a run the user asked to continue
        raise ConfigError(
            "no checkpoint here loads (each is damaged: see the warnings); start afresh with `train --overwrite`",
            file=str(root),
        )
    state = None
    if found is not None:
        path, state = found
        if "optimizer" in state:
            _load_into(st.optimizer, state.pop("optimizer"), path / OPTIMIZER_FILE)
        _load_into(st.lr_scheduler, state.pop("lr_scheduler"), path / STATE_FILE)
        if st.is_main:  # the logs forget the steps after the checkpoint, as the weights do
            for name in RUN_LOGS:
                truncate_jsonl(output_dir / name, int(state["step"]))
    st.acc.wait_for_everyone()
    return state


def _load_into(target: Any, saved: Any, file: Path) -> None:
    """``target.load_state_dict(saved)`` (an optimizer or LR schedule); a state that does not fit it
    is a ConfigError naming ``file``. Its keys are checked first: a scheduler's ``load_state_dict``
    sets whatever attributes it is given."""
    try:
        if not isinstance(saved, dict):
            raise TypeError(f"a {type(saved).__name__}, not a state_dict")
        if unexpected := sorted(set(saved) - set(target.state_dict())):
            raise KeyError(f"unexpected entries {unexpected[:5]}")
        target.load_state_dict(saved)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"does not fit this run's {type(target).__name__} ({type(exc).__name__}: {str(exc)[:120]}); {_TO_PROCEED}",
            file=str(file),
        ) from None


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


def config_base_dir(config_file: Path) -> Path | None:
    """The folder a run's config.yaml says its relative paths start from (None: it does not say)."""
    first = config_file.read_text(encoding="utf-8").split("\n", 1)[0] if config_file.exists() else ""
    return Path(first[len(BASE_DIR_NOTE) :]) if first.startswith(BASE_DIR_NOTE) else None
