"""Neural scorers: a sequence-classification reward model, and a causal LM used as a yes/no judge.

Models are loaded on the first ``score`` call (so validating a config stays cheap) and shared by
every component that names the same model and device. ``build`` only checks that a local model
path exists; a model that then fails to load raises ``ConfigError`` with field ``model``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from spectrum_rl.errors import ConfigError
from spectrum_rl.models import (
    BUILTIN_PREFIX,
    check_builtin_name,
    hf_call,
    load_causal_lm,
    load_tokenizer,
    looks_local,
    position_ids,
    resolve_local,
)
from spectrum_rl.rewards.base import REWARDS, RewardComponent, RewardSpec
from spectrum_rl.rewards.http import JudgeEndpoint, RemoteJudge
from spectrum_rl.sources.base import Example

_MODEL_DOC = "A local folder (relative to the config file's folder), a Hugging Face hub id"
_DEVICE_DOC = "auto (cuda when available, else cpu), cpu, or a torch device such as cuda:1."


def _model_ref(model: str, base_dir: Path) -> str:
    """Resolve ``model`` against ``base_dir``; raise ConfigError when it names a missing local path."""
    if model.startswith(BUILTIN_PREFIX):
        check_builtin_name(model, field="model")
        return model
    resolved = resolve_local(model, base_dir)  # the config's folder, then the current directory
    if looks_local(resolved) and not Path(resolved).expanduser().exists():
        raise ConfigError(f"model folder not found: {base_dir / Path(model).expanduser()}", field="model")
    return resolved  # a local folder, or a hub id such as "org/name"


def _device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


@cache
def _load_classifier(path: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification  # heavy: only when a reward model is used

    try:
        tok = load_tokenizer(path)
        model = hf_call(AutoModelForSequenceClassification.from_pretrained, path, path)
    except ConfigError as err:
        raise ConfigError(err.message, field="model") from err
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    tok.padding_side = "right"  # classifiers pool the last non-pad token (decoders) or the first (encoders)
    tok.truncation_side = "left"  # keep the end of the completion when a text is too long
    return model.to(device).eval(), tok


@cache
def _load_lm(model: str, device: str) -> tuple[Any, Any]:
    try:
        lm, tok = load_causal_lm(model, device=device)
    except ConfigError as err:
        raise ConfigError(err.message, field="model") from err
    tok.truncation_side = "left"  # the rubric's end (where the verdict goes) must survive truncation
    return lm.eval(), tok


@REWARDS.register("reward_model")
class RewardModelSpec(RewardSpec):
    """`reward_model`: a Hugging Face sequence-classification model scoring prompt + completion."""

    model: str = Field(..., min_length=1, description=_MODEL_DOC + ".")
    batch_size: int = Field(16, ge=1, description="Texts per forward pass.")
    normalize: Literal["sigmoid", "none"] = Field(
        "sigmoid", description="sigmoid: map the logit to (0, 1); none: use the raw logit."
    )
    device: str = Field("auto", description=_DEVICE_DOC)

    def build(self, base_dir: Path) -> RewardComponent:
        return RewardModel(self, _model_ref(self.model, base_dir))


class RewardModel(RewardComponent):
    """A learned reward model (Ouyang et al., 2022): the logit of label 0, or logit[1] - logit[0]
    for a two-label classifier, on the concatenated prompt and completion."""

    spec: RewardModelSpec

    def __init__(self, spec: RewardModelSpec, path: str) -> None:
        super().__init__(spec)
        self.path = path

    @cached_property
    def _loaded(self) -> tuple[Any, Any]:
        return _load_classifier(self.path, _device(self.spec.device))

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        model, tok = self._loaded
        texts = [example.prompt + c for c in completions]
        out: list[float] = []
        for i in range(0, len(texts), self.spec.batch_size):
            batch = tok(texts[i : i + self.spec.batch_size], padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                logits = model(**batch.to(model.device)).logits.float()
            value = logits[:, 1] - logits[:, 0] if logits.shape[-1] == 2 else logits[:, 0]
            out += (value.sigmoid() if self.spec.normalize == "sigmoid" else value).tolist()
        return out


DEFAULT_RUBRIC = (
    "Question: {prompt}\n"
    "Reference answer: {reference}\n"
    "Response: {completion}\n"
    "Is the response correct and well written? Answer yes or no.\n"
    "Answer:"
)
_RUBRIC_FIELDS = {"prompt", "completion", "reference"}


@REWARDS.register("judge")
class JudgeSpec(RewardSpec):
    """`judge`: a local causal LM asked whether the completion is good; reward = P(yes | rubric)."""

    model: str = Field(..., min_length=1, description=_MODEL_DOC + ", or builtin:tiny.")
    rubric: str = Field(
        DEFAULT_RUBRIC,
        description="Prompt template with {prompt}, {completion} and "
        "{reference} (the domain's answer, empty when none); it should end where the "
        "verdict word goes.",
    )
    yes: str = Field(" yes", min_length=1, description="Verdict text for a good completion.")
    no: str = Field(" no", min_length=1, description="Verdict text for a bad completion.")
    batch_size: int = Field(8, ge=1, description="Rubric prompts per forward pass.")
    device: str = Field("auto", description=_DEVICE_DOC)
    endpoint: JudgeEndpoint | None = Field(
        None,
        description="Ask an OpenAI-compatible chat server instead of a local model (`model` is then the served "
        "model's name): {base_url, api_key_env, timeout_s, retries, concurrency, ...}; the answer's yes/no word "
        "scores 1/0, a number 1-10 scores (n - 1) / 9 (docs/reliability.md).",
    )

    @field_validator("rubric")
    @classmethod
    def _known_fields(cls, v: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
        except ValueError as exc:
            raise ValueError(f"bad template ({exc}); use {{{{ }}}} for literal braces") from None
        unknown = names - _RUBRIC_FIELDS
        if unknown:
            raise ValueError(f"unknown template field(s) {sorted(unknown)}; allowed: {sorted(_RUBRIC_FIELDS)}")
        return v

    def build(self, base_dir: Path) -> RewardComponent:
        if self.yes == self.no:
            raise ConfigError("yes and no must differ", field="no")
        if self.endpoint is not None:
            return RemoteJudge(self, self.endpoint)
        return Judge(self, _model_ref(self.model, base_dir))


class Judge(RewardComponent):
    """LLM-as-a-judge (Zheng et al., 2023) with a probability verdict: the score is
    P(yes) / (P(yes) + P(no)) for the next token after the rubric.

    When the two verdicts tokenize with a common prefix (a byte tokenizer splits " yes" and " no"
    into " ", "y"... and " ", "n"...), the prefix is appended to the rubric and the first tokens
    that differ are compared; the prefix's probability cancels in the ratio.
    """

    spec: JudgeSpec

    def __init__(self, spec: JudgeSpec, path: str) -> None:
        super().__init__(spec)
        self.path = path

    @cached_property
    def _loaded(self) -> tuple[Any, Any, list[int], int, int]:
        model, tok = _load_lm(self.path, _device(self.spec.device))
        yes = tok(self.spec.yes, add_special_tokens=False)["input_ids"]
        no = tok(self.spec.no, add_special_tokens=False)["input_ids"]
        k = next((i for i, (a, b) in enumerate(zip(yes, no)) if a != b), None)
        if k is None:
            raise ConfigError(f"one verdict's tokens are a prefix of the other's ({yes} vs {no})", field="yes")
        return model, tok, yes[:k], yes[k], no[k]

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        model, tok, prefix, yes_id, no_id = self._loaded
        prompts = [
            self.spec.rubric.format(prompt=example.prompt, completion=c, reference=example.answer or "")
            for c in completions
        ]
        out: list[float] = []
        for i in range(0, len(prompts), self.spec.batch_size):
            ids = [p + prefix for p in tok(prompts[i : i + self.spec.batch_size], truncation=True)["input_ids"]]
            batch = tok.pad({"input_ids": ids}, return_tensors="pt").to(model.device)  # left padding
            # positions restart at each row's first real token, as if it were alone in the batch
            positions = position_ids(batch["attention_mask"])
            with torch.no_grad():
                logp = model(**batch, position_ids=positions).logits[:, -1].float().log_softmax(-1)
            out += (logp[:, yes_id] - logp[:, no_id]).sigmoid().tolist()
        return out
