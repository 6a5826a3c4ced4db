"""Model and tokenizer loading: any Hugging Face causal LM, or the built-in tiny model.

``builtin:tiny`` is a small Llama-architecture model over a byte-level tokenizer (259 ids: the
256 bytes, then <pad>, <bos>, <eos>). It is pretrained by the project itself on a synthetic corpus
(see ``spectrum_rl.bootstrap``), and its weights ship with the package (``spectrum_rl/builtin/``), so
every machine starts from the same model (pretraining differs between CPUs); ``spectrum-rl
bootstrap`` reproduces it in the cache and compares it with the shipped one. Both parts are plain
Hugging Face files: ``AutoModelForCausalLM``/``AutoTokenizer`` load the folder without custom code.
Loading a ``builtin:`` name never builds the model (see ``resolve_model_path``).
transformers is imported inside the functions that use it, so that reading a config stays quick.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spectrum_rl.errors import ConfigError
from spectrum_rl.objects import held

BUILTIN_PREFIX = "builtin:"
OBJECT_PREFIX = "object:"  # a model object given to spectrum_rl.train (spectrum_rl/objects.py)
# name -> recipe version (spectrum_rl.bootstrap.RECIPES); bump one when its recipe changes: a new folder is built
BUILTIN_MODELS = {
    "tiny": 1,
    "ladder": 2,
    "ladder_v3": 1,
    "ladder_v4": 1,
    "ladder_v5": 1,
    "ladder_v6": 1,
    "ladder_v7": 1,
}
CACHE_ENV = "SPECTRUM_RL_CACHE"
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir() -> Path:
    """Where built-in models are cached: ``$SPECTRUM_RL_CACHE`` or ``~/.cache/spectrum_rl``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spectrum_rl")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode map (Radford et al., 2019), used by the
    ``tokenizers`` ByteLevel pre-tokenizer; we order it by byte value so token id == byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def byte_tokenizer():
    """The built-in byte-level tokenizer as a ``PreTrainedTokenizerFast`` (no download).

    Token id of a byte is its value; <pad>=256, <bos>=257, <eos>=258. Lossless for any UTF-8 text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    vocab.update({PAD: 256, BOS: 257, EOS: 258})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, model_max_length=512
    )
    fast.add_special_tokens({"pad_token": PAD, "bos_token": BOS, "eos_token": EOS})
    fast.padding_side = "left"  # left padding keeps every prompt's last token at the end for generation
    return fast


def tiny_config(**overrides: Any):
    """Llama config of the built-in tiny model (1.8M parameters with the defaults)."""
    from transformers import LlamaConfig

    cfg = dict(
        vocab_size=259,
        hidden_size=192,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=6,
        num_key_value_heads=6,
        max_position_embeddings=256,
        pad_token_id=256,
        bos_token_id=257,
        eos_token_id=258,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    )
    cfg.update(overrides)
    return LlamaConfig(**cfg)


SHIPPED_DIR = Path(__file__).parent / "builtin"  # the built-in models' weights, shipped with the package


def cache_path(name: str) -> Path:
    """Where ``spectrum-rl bootstrap`` builds built-in model ``name`` (``tiny`` -> ``<cache>/tiny-r1``)."""
    return cache_dir() / f"{name}-r{BUILTIN_MODELS[name]}"


def shipped_path(name: str) -> Path:
    """The folder of built-in model ``name`` as shipped with the package (``spectrum_rl/builtin/tiny-r1``)."""
    return SHIPPED_DIR / f"{name}-r{BUILTIN_MODELS[name]}"


def builtin_path(name: str) -> Path:
    """The folder ``builtin:NAME`` loads: the shipped weights, so every machine starts from the same
    model; the cache (``spectrum-rl bootstrap``) only where the package ships none."""
    shipped = shipped_path(name)
    return shipped if (shipped / "config.json").exists() else cache_path(name)


def looks_local(name: str) -> bool:
    """Whether a model name can only be a local folder (a hub id is ``org/name``)."""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


def resolve_local(name: str, base_dir: Path) -> str:
    """``name`` as a folder under ``base_dir`` (the config file's folder) when one is there, else
    unchanged: a built-in or object name, a hub id, or a folder the current directory holds."""
    if name.startswith((BUILTIN_PREFIX, OBJECT_PREFIX)):
        return name
    local = base_dir / Path(name).expanduser()
    return str(local) if local.exists() else name


def check_builtin_name(name_or_path: str, field: str = "model.name_or_path") -> None:
    """Raise a ConfigError when ``builtin:NAME`` names no built-in model."""
    if name_or_path.startswith(BUILTIN_PREFIX) and name_or_path[len(BUILTIN_PREFIX) :] not in BUILTIN_MODELS:
        raise ConfigError(
            f"unknown built-in model '{name_or_path}'; expected one of "
            + ", ".join(BUILTIN_PREFIX + m for m in BUILTIN_MODELS),
            field=field,
        )


def resolve_model_path(name_or_path: str) -> str:
    """Map ``builtin:NAME`` to its cached folder; anything else is returned unchanged.

    Loading never builds a model: the entry points (train, order, study, bootstrap) build the
    built-in model first (``spectrum_rl.bootstrap.ensure_builtin``)."""
    if not name_or_path.startswith(BUILTIN_PREFIX):
        return name_or_path
    check_builtin_name(name_or_path)
    path = builtin_path(name_or_path[len(BUILTIN_PREFIX) :])
    if not (path / "config.json").exists():
        raise ConfigError(
            f"built-in model '{name_or_path}' is not built yet (no {path}); run `spectrum-rl "
            "bootstrap`, or any of train / order / study, which build it on first use",
            field="model.name_or_path",
        )
    return str(path)


def adapter_base(name_or_path: str) -> str | None:
    """The base model of a PEFT adapter folder (its ``adapter_config.json`` and no whole model beside
    it): as the adapter names it, else relative to a folder above the adapter's when a model is found
    there; None for anything else. A LoRA SFT run saves such a folder; its base is where RL starts."""
    folder = Path(name_or_path)
    if not (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file():
        return None
    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        base = None
    if not isinstance(base, str) or not base:
        raise ConfigError(
            f"'{name_or_path}' is a PEFT adapter whose adapter_config.json names no base model "
            "(base_model_name_or_path); set it there, or merge the adapter into its base and save that",
            field="model.name_or_path",
        )
    # PEFT writes the path it was given, relative to the folder it was saved from: commonly one that
    # holds the adapter's folder, so each folder above the adapter is tried for a model of that name
    tried = [Path(base)] + ([] if Path(base).is_absolute() else [a / base for a in folder.resolve().parents])
    return next((str(c) for c in tried if (c / "config.json").is_file()), base)


def _base_error(adapter: str, base: str, exc: ConfigError) -> ConfigError:
    return ConfigError(
        f"'{adapter}' is a PEFT adapter, and its base model '{base}' (adapter_config.json) could not be loaded: "
        f"{exc.message}",
        field="model.name_or_path",
    )


def _has_tokenizer(folder: str) -> bool:
    return any((Path(folder) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))


def load_tokenizer(name_or_path: str):
    """AutoTokenizer for a path/hub id (``builtin:*`` resolved), with pad token and left padding; a
    PEFT adapter folder without a tokenizer of its own gives its base model's."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    base = adapter_base(path)
    if base is not None and not _has_tokenizer(path):
        try:
            return load_tokenizer(base)
        except ConfigError as exc:
            raise _base_error(name_or_path, base, exc) from None
    tok = hf_call(AutoTokenizer.from_pretrained, path, name_or_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_causal_lm(name_or_path: str, dtype: str = "float32", device: str | torch.device = "cpu"):
    """Load ``(model, tokenizer)`` for a Hugging Face id, local folder, or ``builtin:tiny``; or the
    ``object:KEY`` a Python caller handed over (spectrum_rl/objects.py), as given: trained in place."""
    from transformers import AutoModelForCausalLM

    if name_or_path.startswith(OBJECT_PREFIX):
        model, tok = held("model", name_or_path[len(OBJECT_PREFIX) :], "model.name_or_path")
        return model.to(device), tok
    path = resolve_model_path(name_or_path)
    tok = load_tokenizer(name_or_path)
    if (base := adapter_base(path)) is not None:  # trained from the base with the adapter merged into it
        return _merged(name_or_path, base, dtype).to(device), tok
    kwargs = {} if dtype == "auto" else {"dtype": DTYPES[dtype]}
    model = hf_call(AutoModelForCausalLM.from_pretrained, path, name_or_path, **kwargs)
    return model.to(device), tok


def _merged(adapter: str, base: str, dtype: str):
    """The base model of a PEFT adapter folder with the adapter merged into its weights."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError(
            f"'{adapter}' is a PEFT adapter (of base model '{base}'); loading one needs peft: pip install "
            "'spectrum-rl[peft]'",
            field="model.name_or_path",
        ) from None
    try:
        model, _ = load_causal_lm(base, dtype)
    except ConfigError as exc:
        raise _base_error(adapter, base, exc) from None
    merged = hf_call(lambda folder: PeftModel.from_pretrained(model, folder), adapter, adapter).merge_and_unload()
    return merged.requires_grad_(True)  # PEFT froze the base weights; the merged model trains as a whole


def hf_call(fn, path: str, shown: str, **kwargs):
    """Call a ``from_pretrained`` and turn missing/offline failures into one clear ConfigError."""
    try:
        return fn(path, **kwargs)
    except (OSError, ValueError) as exc:
        local = Path(path).exists()
        hint = (
            "the folder has no loadable model/tokenizer"
            if local
            else (
                "not a local folder, and it could not be loaded from the Hugging Face hub "
                "(offline? set HF_HUB_OFFLINE=1 and pass a local path)"
            )
        )
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load model '{shown}': {hint} ({first})", field="model.name_or_path") from exc


def uses_chat_template(tokenizer, chat_template: bool | None) -> bool:
    """Whether prompts go through the tokenizer's chat template (``model.chat_template``; None:
    when it has one). Such a prompt's text carries its own special tokens (Llama 3's
    ``<|begin_of_text|>``, Gemma's ``<bos>``), so it is tokenized without adding them again, as TRL
    does; a raw prompt gets the tokenizer's own."""
    return bool(getattr(tokenizer, "chat_template", None)) if chat_template is None else chat_template


def apply_prompt_format(
    tokenizer,
    prompt: str,
    chat_template: bool | None,
    system: str | None = None,
    template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Apply the tokenizer's chat template (``system``'s turn if given, the user turn, the generation
    prompt, ``template_kwargs`` as its extra variables: ``model.chat_template_kwargs``) when enabled.

    ``chat_template=None`` means auto: use it when the tokenizer defines one. A system message has
    no place in a prompt without the template: that is a config error, not a silent drop.
    """
    if not uses_chat_template(tokenizer, chat_template):
        if system is not None:
            why = "the model's tokenizer has none" if chat_template is None else "model.chat_template is false"
            raise ConfigError(
                f"a domain's prompts carry a system message (system_prompt, or one in its conversational rows), which "
                f"needs the chat template, and {why}; put the text into the domain's prompt template instead",
                field="model.chat_template",
            )
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "model.chat_template is true but the tokenizer has no chat template", field="model.chat_template"
        )
    turns = [{"role": "system", "content": system}] if system is not None else []
    # the user turn as the data holds it: a prompt template's trailing newline (the default's, which
    # ends a raw prompt before the answer line) has no place before the template's end-of-turn
    return tokenizer.apply_chat_template(
        [*turns, {"role": "user", "content": prompt.rstrip()}],
        tokenize=False,
        add_generation_prompt=True,
        **(template_kwargs or {}),
    )


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions [.., L] of a left-padded attention mask: 0 at the first real token (padding: 0)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def unwrap_model(model):
    """The Hugging Face model inside DDP, torch.compile and PEFT wrappers (same parameters)."""
    inner = getattr(model, "module", model)  # DDP wrapper
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile wrapper
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # PEFT wrapper


def end_token_ids(model, tokenizer) -> list[int]:
    """The ids that end a completion: the tokenizer's EOS and each EOS the model's generation config
    lists, as ``generate`` stops on them (chat models list their end-of-turn token there: Gemma's
    ``<end_of_turn>``, Llama 3's ``<|eot_id|>``, which their tokenizer's EOS may not be)."""
    listed = getattr(getattr(unwrap_model(model), "generation_config", None), "eos_token_id", None)
    ids = [tokenizer.eos_token_id, *(listed if isinstance(listed, (list, tuple)) else [listed])]
    return list(dict.fromkeys(i for i in ids if isinstance(i, int)))


def cache_kwarg(model) -> str:
    """transformers >= 5.2x renamed ``past_key_values`` to ``cache`` (input and output)."""
    inner = unwrap_model(model)
    return "cache" if "cache" in inspect.signature(type(inner).forward).parameters else "past_key_values"
