"""Components that call code from outside the project: a user's Python function, reasoning_gym."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from spectrum_rl.errors import ConfigError
from spectrum_rl.objects import held
from spectrum_rl.rewards.base import REWARDS, RewardComponent, RewardSpec
from spectrum_rl.rewards.text import answer_text, error_summary, row_field
from spectrum_rl.sources.base import Example, conversation


@REWARDS.register("python")
class PythonSpec(RewardSpec):
    """`python`: a user function called like a TRL reward function."""

    function: str = Field(
        ...,
        description="`module:function` (an importable module) or "
        "`path/to/file.py:function` (relative to the config file's folder; the file can import the modules "
        "beside it).",
    )

    @field_validator("function")
    @classmethod
    def _has_colon(cls, v: str) -> str:
        module, _, name = v.rpartition(":")
        if not module or not name.isidentifier():
            raise ValueError(f"expected 'module:function' or 'path/to/file.py:function'; found {v!r}")
        return v

    def build(self, base_dir: Path) -> RewardComponent:
        module, _, name = self.function.rpartition(":")
        try:
            loaded = _import_file(base_dir / module) if module.endswith(".py") else importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import-time failure is a config problem
            raise ConfigError(f"cannot import '{module}': {error_summary(exc)}", field="function") from exc
        fn = getattr(loaded, name, None)
        if not callable(fn):
            raise ConfigError(f"'{module}' has no function '{name}'", field="function")
        check_trl_signature(fn, "function")
        return PythonReward(self, fn)


def check_trl_signature(fn: Callable[..., Any], field: str) -> None:
    """A ConfigError at ``field`` unless ``fn`` can be called as TRL calls a reward function: every
    argument by keyword, the row's columns among them, so it must take ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): the call will tell
        return
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        name = getattr(fn, "__qualname__", repr(fn))
        raise ConfigError(
            f"{name}{inspect.signature(fn)} takes no **kwargs; a reward function is called like TRL's, "
            "fn(prompts, completions, **columns) -> one number per completion, every row column (answer "
            "included) passed by keyword",
            field=field,
        )


def _import_file(path: Path) -> Any:
    """Import a Python file as a module named after its path. It is registered in ``sys.modules`` so
    that dataclasses and pickling inside it work, and its folder is on ``sys.path`` so that it can
    import the modules beside it, as a script can (after the installed packages: a file there never
    shadows one)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"spectrum_rl_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


@cache
def _event_loop() -> asyncio.AbstractEventLoop:
    """One event loop in a daemon thread for async reward functions: it runs whether or not the
    caller's thread has a loop of its own (a notebook's)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="spectrum-rl-rewards", daemon=True).start()
    return loop


@REWARDS.register("function")
class FunctionSpec(RewardSpec):
    """`function`: a Python function given to `spectrum_rl.train` (`srl.Domain(reward=fn)`), called
    like a TRL reward function; held in this process under `key` (spectrum_rl/objects.py)."""

    key: str = Field(..., description="The key the function is held under in this process.")

    def build(self, base_dir: Path) -> RewardComponent:
        fn = held("function", self.key, "key")
        check_trl_signature(fn, "key")
        return PythonReward(self, fn)


class PythonReward(RewardComponent):
    """Calls ``fn(prompts=[...], completions=[...], answer=[...], **columns)`` as TRL's GRPOTrainer
    does: every row column becomes a keyword argument holding one value per completion. On
    conversational rows (a ``prompt`` of messages, sources/pools.py) the prompts are those messages
    and each completion is ``[{"role": "assistant", "content": text}]``, as TRL passes them there.
    The function (or ``async`` function, as TRL takes it) must accept ``**kwargs`` and return one
    number per completion, or None where it does not apply (TRL's meaning: one list of functions
    serving several tasks), which adds 0 to the hybrid sum; NaN or inf is a failure (``on_error``).
    """

    def __init__(self, spec: PythonSpec | FunctionSpec, fn: Callable[..., Sequence[float | None]]) -> None:
        super().__init__(spec)
        self.fn = fn

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        g = len(completions)
        messages = conversation(example.fields)
        chat = messages is not None  # conversational data: TRL passes messages, not text
        prompts = [list(messages)] * g if chat else [example.prompt] * g
        said = [[{"role": "assistant", "content": c}] for c in completions] if chat else list(completions)
        columns = {key: [value] * g for key, value in example.fields.items() if not (chat and key == "prompt")}
        columns.update(answer=[example.reference] * g, prompts=prompts, completions=said)
        result = self.fn(**columns)
        if inspect.isawaitable(result):  # an async function, as TRL runs it: on an event loop of its own
            result = asyncio.run_coroutine_threadsafe(_awaited(result), _event_loop()).result()
        if getattr(result, "ndim", None) == 1 and hasattr(result, "tolist"):  # a numpy array or a tensor, as TRL takes
            result = result.tolist()
        if isinstance(result, (str, bytes)) or not isinstance(result, Sequence):
            name = getattr(self.fn, "__qualname__", "the reward function")
            raise TypeError(f"{name} must return a list of numbers; returned {type(result).__name__}")
        return [0.0 if v is None else v for v in result]


@REWARDS.register("reasoning_gym")
class ReasoningGymRewardSpec(RewardSpec):
    """`reasoning_gym`: reasoning_gym's own verifier on the row's original entry (`rg_entry`)."""

    extract: bool = Field(True, description="Verify the extracted answer instead of the whole completion.")

    def build(self, base_dir: Path) -> RewardComponent:
        try:
            import reasoning_gym  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "reasoning_gym is not installed; pip install 'spectrum-rl[reasoning-gym]'", field="type"
            ) from exc
        return ReasoningGymReward(self)


@cache
def _verifier(dataset: str) -> Callable[..., float]:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(dataset)


class ReasoningGymReward(RewardComponent):
    """Scores with ``reasoning_gym.get_score_answer_fn(entry["metadata"]["source_dataset"])``
    (Stojanovski et al., 2025, "Reasoning Gym"); the row must carry the original entry in `rg_entry`."""

    spec: ReasoningGymRewardSpec

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        entry = row_field(example, "rg_entry")
        verify = _verifier(entry["metadata"]["source_dataset"])
        return [verify(answer=answer_text(c, self.spec.extract), entry=entry) for c in completions]
