"""Build the built-in tiny model: pretrain a small Llama on a synthetic corpus of the built-in
domains so that it starts with *partial* competence (room for SFT and RL to matter).

Corpus: ``question + "\\n" + short answer + <eos>`` from every built-in generator at its default
difficulty; a fraction ``noise`` of the answers is replaced by the answer of another random row
(plausible but wrong), which keeps the model from mastering the tasks. The model never sees the
worked-steps style of the expert demonstrations, so SFT on them is off-policy (claim C1).
Deterministic for a seed and thread count. Saved in Hugging Face format with ``bootstrap.json``
(recipe, held-out scores per domain, wall time).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from spectrum_rl.config import Config, DomainConfig
from spectrum_rl.domains import Domain, build_domain
from spectrum_rl.models import (
    BUILTIN_MODELS,
    BUILTIN_PREFIX,
    BUILTIN_RECIPE_VERSION,
    builtin_path,
    byte_tokenizer,
    tiny_config,
)
from spectrum_rl.tasks.builtin import GENERATORS
from spectrum_rl.trainer.evaluate import evaluate


@dataclass(frozen=True)
class BootstrapConfig:
    """Recipe of the built-in tiny model (defaults take about 1.5 minutes on 2 CPU cores)."""

    seed: int = 0
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    noise: float = 0.1
    eval_size: int = 100
    model: dict = field(default_factory=dict)  # overrides of tiny_config()


def builtin_world_domains(eval_size: int = 100, seed: int = 0) -> list[Domain]:
    """One domain per built-in generator at default difficulty, scored by exact match
    (structured) or the constraint checker (creative) — the world the tiny model is built for."""
    domains = []
    for name, gen in GENERATORS.items():
        reward = [{"type": "exact_match"}] if gen.kind == "structured" else [{"type": "constraint"}]
        cfg = DomainConfig.model_validate(
            {
                "name": name,
                "kind": gen.kind,
                "source": {"type": "builtin", "generator": name},
                "eval": {"size": eval_size},
                "reward": reward,
            }
        )
        domains.append(build_domain(cfg, base_dir=Path.cwd(), seed=seed))
    return domains


def _corpus_batch(rng: random.Random, tokenizer, batch_size: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of (input_ids, labels) [B, T]; labels are -100 on padding."""
    names = sorted(n for n, g in GENERATORS.items() if g.pretrained)
    seqs = []
    for _ in range(batch_size):
        gen = GENERATORS.get(rng.choice(names))
        row = gen.make(rng, **gen.defaults)
        answer = row["answer"]
        if rng.random() < noise:
            answer = gen.make(rng, **gen.defaults)["answer"]
        prompt = tokenizer(f"{row['question']}\n")["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        seqs.append((prompt, answer_ids))
    width = max(len(p) + len(a) for p, a in seqs)
    input_ids = torch.full((batch_size, width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((batch_size, width), -100, dtype=torch.long)
    for i, (prompt, answer_ids) in enumerate(seqs):
        n = len(prompt) + len(answer_ids)
        input_ids[i, :n] = torch.tensor(prompt + answer_ids)
        labels[i, len(prompt) : n] = torch.tensor(answer_ids)  # loss on the answer only
    return input_ids, labels


def pretrain(cfg: BootstrapConfig, progress: bool = True):
    """Train the tiny model from scratch; returns (model, tokenizer, seconds)."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tokenizer = byte_tokenizer()
    model = LlamaForCausalLM(tiny_config(**cfg.model))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    start = time.perf_counter()
    bar = _progress(cfg.steps, progress)
    for step in range(cfg.steps):
        input_ids, labels = _corpus_batch(rng, tokenizer, cfg.batch_size, cfg.noise)
        attention_mask = (input_ids != tokenizer.pad_token_id).long()
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar(step, loss.item())
    bar(None, None)
    return model, tokenizer, time.perf_counter() - start


def _progress(total: int, enabled: bool):
    """A tiny progress callback on stderr: ``bar(step, loss)``; ``bar(None, None)`` ends the line."""
    start = time.perf_counter()

    def bar(step: int | None, loss: float | None) -> None:
        if not enabled:
            return
        if step is None:
            print(file=sys.stderr)
            return
        if step % 10 == 0 or step == total - 1:
            done = step + 1
            eta = (time.perf_counter() - start) / done * (total - done)
            print(
                f"\rbootstrap builtin:tiny  step {done}/{total}  loss {loss:.3f}  eta {eta:4.0f}s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    return bar


def bootstrap(
    cfg: BootstrapConfig = BootstrapConfig(), output: Path | None = None, force: bool = False, progress: bool = True
) -> Path:
    """Pretrain, evaluate and save the tiny model to ``output`` (default: the cache), atomically."""
    output = Path(output) if output else builtin_path("tiny")
    if (output / "config.json").exists() and not force:
        return output
    model, tokenizer, seconds = pretrain(cfg, progress)
    scores = evaluate(model, tokenizer, builtin_world_domains(cfg.eval_size, cfg.seed), max_new_tokens=24).scores
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=output.name + ".", dir=output.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {
            "recipe_version": BUILTIN_RECIPE_VERSION,
            "recipe": asdict(cfg),
            "seconds": round(seconds, 1),
            "eval_exact": scores,
            "torch_threads": torch.get_num_threads(),
        }
        (tmp / "bootstrap.json").write_text(json.dumps(meta, indent=2))
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output


def ensure_builtin(name: str) -> Path:
    """The cached folder of a built-in model, building it on first use."""
    path = builtin_path(name)
    if not (path / "config.json").exists():
        print(f"building builtin:{name} (first use; cached in {path})", file=sys.stderr)
        bootstrap(output=path)
    return path


def ensure_builtin_models(config: Config) -> None:
    """Build every built-in model ``config`` names (the policy, and reward or judge models) that is
    not cached yet. The entry points call this; loading a model never builds one."""
    names = {config.model.name_or_path}
    names |= {getattr(r, "model", None) for t in config.tasks for r in t.reward}
    for name in sorted(n for n in names if isinstance(n, str) and n.startswith(BUILTIN_PREFIX)):
        if name[len(BUILTIN_PREFIX) :] in BUILTIN_MODELS:  # an unknown name is reported where it is used
            ensure_builtin(name[len(BUILTIN_PREFIX) :])
