"""Byte tokenizer, model loading (local HF folders, built-in), and bootstrap determinism."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spectrum_rl.bootstrap import BootstrapConfig, bootstrap, pretrain
from spectrum_rl.errors import ConfigError
from spectrum_rl.models import apply_prompt_format, byte_tokenizer, load_causal_lm, load_tokenizer
from spectrum_rl.trainer.generation import generate_texts

TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}
SPECIALS = ("<pad>", "<bos>", "<eos>")


@settings(max_examples=200, deadline=None)
@given(st.text().filter(lambda s: not any(t in s for t in SPECIALS)))
def test_byte_tokenizer_round_trip(text):
    tok = byte_tokenizer()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))  # token id == byte value
    assert tok.decode(ids) == text


def test_byte_tokenizer_specials_and_saved_form(tmp_path):
    tok = byte_tokenizer()
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, len(tok)) == (256, 257, 258, 259)
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))  # plain AutoTokenizer, no custom code
    assert again("sort: dcba\n")["input_ids"] == tok("sort: dcba\n")["input_ids"]
    assert again.padding_side == "left"


def test_load_local_hf_model_and_generate(tiny_random_lm_dir):
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    out = generate_texts(model, tok, ["add: 1+2\n", "sort: ba\n", "x"], max_new_tokens=5)
    assert len(out) == 3 and all(isinstance(o, str) for o in out)
    # greedy decoding is deterministic and independent of batching
    assert out == generate_texts(model, tok, ["add: 1+2\n", "sort: ba\n", "x"], max_new_tokens=5, batch_size=1)


def test_chat_template_applied_when_present(tiny_random_lm_dir, tmp_path):
    tok = load_tokenizer(str(tiny_random_lm_dir))
    assert apply_prompt_format(tok, "hi\n", None) == "hi\n"  # no template: raw prompt
    with pytest.raises(ConfigError, match="model.chat_template"):
        apply_prompt_format(tok, "hi\n", True)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    tok.save_pretrained(tmp_path)
    chat = load_tokenizer(str(tmp_path))
    assert apply_prompt_format(chat, "hi", None) == "<|user|>hi<|assistant|>"
    assert apply_prompt_format(chat, "hi\n", None) == "<|user|>hi<|assistant|>"  # the default template's newline
    assert apply_prompt_format(chat, "hi", False) == "hi"
    assert apply_prompt_format(chat, "hi", None, "be brief") == "<|system|>be brief<|user|>hi<|assistant|>"
    plain = load_tokenizer(str(tiny_random_lm_dir))
    for template, why in ((None, "tokenizer has none"), (False, "model.chat_template is false")):
        with pytest.raises(ConfigError, match=f"carry a system message.*{why}"):  # never dropped in silence
            apply_prompt_format(plain if template is None else chat, "hi", template, "be brief")


def test_missing_model_gives_config_error(tmp_path):
    with pytest.raises(ConfigError, match="model.name_or_path"):
        load_causal_lm(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="hub"):
        load_causal_lm("some-org/not-a-real-model-xyz")  # offline in tests
    with pytest.raises(ConfigError, match="unknown built-in"):
        load_causal_lm("builtin:huge")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_bootstrap_is_deterministic_for_a_seed():
    cfg = BootstrapConfig(steps=4, batch_size=8, model=TINY)
    a, _, _ = pretrain(cfg, progress=False)
    b, _, _ = pretrain(cfg, progress=False)
    c, _, _ = pretrain(BootstrapConfig(steps=4, batch_size=8, model=TINY, seed=1), progress=False)
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bootstrap_writes_hf_folder_used_by_builtin(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("SPECTRUM_RL_CACHE", str(tmp_path))
    from spectrum_rl.models import cache_path

    out = bootstrap(BootstrapConfig(steps=2, batch_size=4, eval_size=3, model=TINY), progress=False)
    assert out == cache_path("tiny") and out.parent == tmp_path
    meta = json.loads((out / "bootstrap.json").read_text())
    assert set(meta["eval_exact"]) >= {"addition", "sorting", "acrostic"}
    assert all(0.0 <= v <= 1.0 for v in meta["eval_exact"].values())
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == 259
    model, tok = load_causal_lm(str(out))
    assert model.config.hidden_size == TINY["hidden_size"] and tok.eos_token_id == 258
    assert not list(tmp_path.glob("tiny-r*.*"))  # no temp folders left behind


def test_a_trial_recipe_under_its_own_name_builds_without_a_recipe_version(tmp_path):
    """World trials (docs/world_trials/trials.py) pretrain recipes that are no built-in model."""
    out = bootstrap(
        BootstrapConfig(steps=2, batch_size=4, eval_size=3, model=TINY),
        output=tmp_path / "m",
        progress=False,
        name="trial",
    )
    assert json.loads((out / "bootstrap.json").read_text())["recipe_version"] is None


def test_builtin_names_load_the_shipped_weights_and_a_rebuild_is_compared_with_them(tmp_path, monkeypatch):
    """Every built-in model is the package's own files (no cache, no pretraining), made by its
    recipe (a field the recipe gained later is at its default; tiny's empty shortcut was once
    written 0.0); a rebuild's held-out exact match is compared with the shipped model's, domain by
    domain."""
    from dataclasses import asdict

    from spectrum_rl.bootstrap import RECIPES, BootstrapConfig, compare_with_shipped, ensure_builtin
    from spectrum_rl.models import BUILTIN_MODELS, SHIPPED_DIR, resolve_model_path

    monkeypatch.setenv("SPECTRUM_RL_CACHE", str(tmp_path))  # an empty cache: nothing is built
    default = json.loads(json.dumps(asdict(BootstrapConfig())))
    for name in BUILTIN_MODELS:
        folder = ensure_builtin(name)
        assert folder.parent == SHIPPED_DIR and resolve_model_path(f"builtin:{name}") == str(folder)
        assert (folder / "model.safetensors").stat().st_size > 1_000_000
        made_by = json.loads((folder / "bootstrap.json").read_text())["recipe"]
        recipe = json.loads(json.dumps(asdict(RECIPES[name])))
        differ = [k for k, v in recipe.items() if made_by.get(k, default[k]) != v and (made_by.get(k) or v)]
        assert not differ, (name, differ)
    assert not list(tmp_path.iterdir())
    shipped = json.loads((SHIPPED_DIR / "tiny-r1" / "bootstrap.json").read_text())
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    close = {d: v + 0.05 for d, v in shipped["eval_exact"].items()}
    (rebuilt / "bootstrap.json").write_text(json.dumps({**shipped, "eval_exact": close}))
    lines, ok = compare_with_shipped(rebuilt, "tiny")
    assert ok and lines[-1] == "matches the shipped model"
    far = {**close, "sorting": shipped["eval_exact"]["sorting"] - 0.3}
    (rebuilt / "bootstrap.json").write_text(json.dumps({**shipped, "eval_exact": far}))
    lines, ok = compare_with_shipped(rebuilt, "tiny")
    assert not ok and "DIFFERS" in lines[-1] and any("sorting" in line and "-0.30" in line for line in lines)


def test_a_peft_adapter_folder_loads_as_its_base_with_the_adapter_merged(
    tmp_path, tiny_random_lm_dir, monkeypatch, capsys
):
    """A LoRA SFT run saves an adapter folder (adapter_config.json naming its base, often by a path
    relative to where it was saved from, and no tokenizer): it loads as the base with the adapter
    merged in, every weight trainable, with the base's tokenizer; a base that cannot be found is one
    error naming the adapter and the base."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    shutil.copytree(tiny_random_lm_dir, tmp_path / "base")
    monkeypatch.chdir(tmp_path)  # PEFT records the base as given: here relative to tmp_path
    torch.manual_seed(0)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # not a no-op
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained("base"), lora)
    peft_model.save_pretrained(tmp_path / "sft" / "adapter")
    ids = torch.tensor([[5, 6, 7, 8]])
    expected = peft_model(input_ids=ids).logits
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for folder in (tmp_path / "sft" / "adapter", "../sft/adapter"):
        model, tok = load_causal_lm(str(folder))
        torch.testing.assert_close(model(input_ids=ids).logits, expected)
        assert all(p.requires_grad for p in model.parameters()) and not hasattr(model, "peft_config")
        assert tok.pad_token is not None and load_tokenizer(str(folder)).vocab_size == tok.vocab_size
    from spectrum_rl.cli import main

    domain = "{name: s, kind: structured, source: {type: builtin, generator: sorting}, reward: [exact_match]}"
    (elsewhere / "run.yaml").write_text(f"model: {{name_or_path: ../sft/adapter}}\ndomains: [{domain}]\n")
    assert main(["validate", str(elsewhere / "run.yaml")]) == 0  # says what it will load
    said = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"(a PEFT adapter: its base {tmp_path / 'base'}, the adapter merged in at load)" in said
    config = tmp_path / "sft" / "adapter" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(ConfigError, match=r"is a PEFT adapter, and its base model '.*gone' .* could not be loaded"):
        load_causal_lm(str(tmp_path / "sft" / "adapter"))
