"""Shared fixtures: tiny random-init models saved to temp dirs (no downloads)."""

from __future__ import annotations

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
