"""Shared fixtures: tiny random-init models saved to temp dirs (no downloads)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch

# Nothing in the tests may reach the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The CLI is quiet in a fresh process; in-process CLI tests share one already-imported transformers.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent

# Tests of code rewards need the OS sandbox (bubblewrap). Without it they are skipped, with one line
# at the end of the run saying so; under CI (CI=true, where .ci/run installs bubblewrap) they fail.
needs_sandbox = pytest.mark.needs_sandbox
_SANDBOX_SKIPS: list[str] = []


@functools.cache
def sandbox_problem() -> str:
    """Why code cannot run isolated here ("" when it can)."""
    from spectrum_rl.rewards import sandbox

    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as exc:
        return str(exc)
    return ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_sandbox") is None or not sandbox_problem():
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"needs the code sandbox, which CI must provide: {sandbox_problem()}", pytrace=False)
    _SANDBOX_SKIPS.append(item.nodeid)
    pytest.skip(f"needs the code sandbox: {sandbox_problem()}")


def pytest_terminal_summary(terminalreporter) -> None:
    if _SANDBOX_SKIPS:
        terminalreporter.write_line(
            f"{len(_SANDBOX_SKIPS)} code-sandbox tests SKIPPED: {sandbox_problem()}; under CI they fail instead",
            yellow=True,
            bold=True,
        )


def _tiny_cfg():
    from spectrum_rl.models import tiny_config

    return tiny_config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2
    )


@pytest.fixture(scope="session")
def tiny_random_lm_dir(tmp_path_factory) -> Path:
    """A random-init tiny Llama causal LM + the byte tokenizer, saved in HF format."""
    from transformers import LlamaForCausalLM

    from spectrum_rl.models import byte_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_lm")
    LlamaForCausalLM(_tiny_cfg()).save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_random_rm_dir(tmp_path_factory) -> Path:
    """A random-init tiny Llama sequence-classification model (1 label) + byte tokenizer."""
    from transformers import LlamaForSequenceClassification

    from spectrum_rl.models import byte_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_rm")
    cfg = _tiny_cfg()
    cfg.num_labels = 1
    LlamaForSequenceClassification(cfg).save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def builtin_tiny() -> Path:
    """The real built-in tiny model (bootstrapped once into the cache, ~1.5 min on 2 cores)."""
    from spectrum_rl.bootstrap import ensure_builtin

    return ensure_builtin("tiny")
