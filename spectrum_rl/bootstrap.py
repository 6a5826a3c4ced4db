"""Build the built-in models: pretrain a small Llama on a synthetic corpus of the built-in
domains so that it starts with *partial* competence (room for SFT and RL to matter).

``builtin:tiny`` — corpus ``question + "\\n" + short answer + <eos>`` from every pretrained
generator at its default difficulty; a fraction ``noise`` of the answers is replaced by the
answer of another random row (plausible but wrong), which keeps the model from mastering the
tasks.

``builtin:ladder`` — the curriculum world (docs/world.md): a few generators over a *range* of
one knob (``ladders``), a level drawn uniformly per row; at each level the answer is replaced by
the generator's *shortcut* (a plausible wrong answer: the input copied for sorting and reversal,
the letter next to the asked one for first/last letter) with that level's probability
(``shortcut``, rising to 1 at the hardest levels). The easiest level is solved, the next one
half-solved, the ones above start near 0; the skill is the same at every level, so training the
half-solved level carries over to the next one: a ladder that RL climbs level by level.

``builtin:ladder_v3`` — the same with distinct letters in the letter ladders (no row where the
shortcut is right by coincidence) and steeper shortcut schedules: length 3 starts near 0 on both.

``builtin:ladder_v4`` — v3 with the letter after the answer in the alphabet as the letter ladders'
shortcut (never the other ladder's answer).

``builtin:ladder_v5`` — one ladder whose rungs teach in order: ``shift`` (each letter moved on by
its position) over lengths 1-6, the shortcut drawn letter by letter (``per_letter``), so a length
starts at about the product of its letters' chances and comes alive as the length below is learned.

``builtin:ladder_v6`` — v5 with each letter from the third on right more often in pretraining (35%
against 25%), so that a length's new letter becomes the greedy answer once the length below is learned.

``builtin:ladder_v7`` — v6's recipe with another pretraining seed, whose ladder carries two rungs up.

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
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from spectrum_rl.config import Config, DomainConfig
from spectrum_rl.domains import BuiltDomain, build_domain
from spectrum_rl.models import (
    BUILTIN_MODELS,
    BUILTIN_PREFIX,
    builtin_path,
    byte_tokenizer,
    cache_path,
    shipped_path,
    tiny_config,
)
from spectrum_rl.sources.builtin import GENERATORS, LETTERS, moved
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
    # generator -> (knob, easiest, hardest); empty: every pretrained generator at its defaults
    ladders: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    # generator -> probability of the shortcut answer at each level of its ladder, easiest first
    shortcut: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # generator -> its other knobs in the corpus (default: the generator's defaults)
    knobs: dict[str, dict[str, int]] = field(default_factory=dict)
    # generators whose wrong answer is a decoy (letters not in the input, one per question) instead
    # of the neighbouring letters: a diffuse wrong habit rather than one confident rule
    decoy: tuple[str, ...] = ()
    # generators whose wrong answer is the letter after the answer in the alphabet: with two letters
    # the neighbouring letter of one letter ladder's answer is the other ladder's answer (docs/world.md)
    alphabet: tuple[str, ...] = ()
    # generator -> probability that the j-th letter of an answer is the shortcut's j-th letter, drawn
    # per letter (instead of ``shortcut``'s whole answer per level): a rung is right only when every
    # letter is, so each length starts at about the product of the letters' chances (world v5)
    per_letter: dict[str, tuple[float, ...]] = field(default_factory=dict)


_LADDER = BootstrapConfig(  # world v2: two letter ladders over lengths 1-6, sorting and reversal at 2-3
    steps=1000,
    noise=0.0,
    ladders={
        "sorting": ("length", 2, 3),
        "reversal": ("length", 2, 3),
        "first_letter": ("length", 1, 6),
        "last_letter": ("length", 1, 6),
    },
    shortcut={
        "sorting": (0.0, 0.7),
        "reversal": (0.0, 0.7),
        "first_letter": (0.0, 0.6, 0.9, 0.97, 0.99, 1.0),
        "last_letter": (0.0, 0.6, 0.9, 0.97, 0.99, 1.0),
    },
)
_LADDER_V3 = replace(  # distinct letters, steeper schedules
    _LADDER,
    seed=1,  # of seeds 1-3, the one whose length 3 started under 0.05 on both ladders (probe prompts)
    shortcut={
        **_LADDER.shortcut,
        "first_letter": (0.0, 0.6, 0.95, 1.0, 1.0, 1.0),
        "last_letter": (0.0, 0.5, 1.0, 1.0, 1.0, 1.0),
    },
    knobs={"first_letter": {"distinct": 1}, "last_letter": {"distinct": 1}},
)
RECIPES: dict[str, BootstrapConfig] = {
    "tiny": BootstrapConfig(),
    "ladder": _LADDER,
    "ladder_v3": _LADDER_V3,
    # v3's letter ladders with the next letter of the alphabet as their shortcut; seed 1 of seeds 0-1,
    # again the one whose length 3 started under 0.05 on both ladders (probe prompts)
    "ladder_v4": replace(_LADDER_V3, alphabet=("first_letter", "last_letter")),
    # world v5: one ladder whose rungs teach in order, `shift` over lengths 1-6, each letter after the
    # first right a quarter of the time (its shortcut: moved on by 1, as the first letter is)
    "ladder_v5": BootstrapConfig(
        steps=1000,
        noise=0.0,
        ladders={"shift": ("length", 1, 6)},
        per_letter={"shift": (0.0, 0.7, 0.75, 0.75, 0.75, 0.75)},
    ),
    # world v6: v5 with each letter from the third on right 35% of the time, so that once the second
    # letter is learned the third letter's rule can become the model's greedy answer
    "ladder_v6": BootstrapConfig(
        steps=1000,
        noise=0.0,
        ladders={"shift": ("length", 1, 6)},
        per_letter={"shift": (0.0, 0.7, 0.65, 0.65, 0.65, 0.65)},
    ),
    # world v7: v6's recipe, pretraining seed 2 of seeds 0-2, the lowest whose ladder carried two rungs
    # in the trials (training length 2 then 3 brought length 4 alive; probe prompts)
    "ladder_v7": BootstrapConfig(
        steps=1000,
        seed=2,
        noise=0.0,
        ladders={"shift": ("length", 1, 6)},
        per_letter={"shift": (0.0, 0.7, 0.65, 0.65, 0.65, 0.65)},
    ),
}
"""The recipe of each built-in model (``builtin:<name>``)."""


def shortcut_answer(generator: str, question: str, decoy: bool = False, alphabet: bool = False) -> str | None:
    """The plausible wrong answer of a ``ladder`` row (module docstring), or None (no shortcut);
    with ``decoy``, as many letters as the answer has, none of them in the input, fixed per question;
    with ``alphabet`` (first/last letter), the letter after the answer in the alphabet."""
    payload = question.split(": ", 1)[-1]
    if alphabet and generator in ("first_letter", "last_letter"):
        answer = payload[0] if generator == "first_letter" else payload[-1]
        return LETTERS[(LETTERS.index(answer) + 1) % len(LETTERS)]
    if decoy:
        n = len(shortcut_answer(generator, question) or "")
        outside = [c for c in LETTERS if c not in payload]
        pick = random.Random(zlib.crc32(question.encode()))
        return "".join(pick.choice(outside) for _ in range(n)) or None
    n = int(question.split(" ")[1]) if generator in ("prefix", "suffix") else 1  # "first 2 letters: ..."
    shifted = {"first_letter": payload[1:2], "last_letter": payload[-2:-1], "prefix": payload[1 : n + 1]}
    shifted["penultimate"] = payload[-3:-2]  # the neighbour away from the end: not last_letter's answer
    shifted["suffix"] = payload[-n - 1 : -1]
    shifted["ends"] = payload[1:2] + payload[-2:-1]
    shifted["shift"] = moved(payload, lambda j: 1)  # every letter moved as the first one is
    return ({"sorting": payload, "reversal": payload} | shifted).get(generator)


def builtin_world_domains(
    eval_size: int = 100, seed: int = 0, ladders: dict | None = None, knobs: dict | None = None
) -> list[BuiltDomain]:
    """The world a built-in model is built for, one domain per generator scored by exact match
    (structured) or the constraint checker (creative): every generator at its default difficulty,
    or, with ``ladders``, each ladder generator over its range (the eval spans the range) with its
    other ``knobs`` as the recipe sets them."""
    domains = []
    for name, gen in GENERATORS.items():
        if ladders and name not in ladders:
            continue
        source: dict = {"type": "builtin", "generator": name}
        if ladders:
            knob, lo, hi = ladders[name]
            source["difficulty"] = {**(knobs or {}).get(name, {}), knob: [lo, hi]}
        reward = [{"type": "exact_match"}] if gen.kind == "structured" else [{"type": "constraint"}]
        cfg = DomainConfig.model_validate(
            {"name": name, "kind": gen.kind, "source": source, "eval": {"size": eval_size}, "reward": reward}
        )
        domains.append(build_domain(cfg, base_dir=Path.cwd(), seed=seed))
    return domains


def _corpus_row(rng: random.Random, cfg: BootstrapConfig) -> tuple[str, str]:
    """One (question, answer) of the corpus (module docstring)."""
    if not cfg.ladders:
        gen = GENERATORS.get(rng.choice(sorted(n for n, g in GENERATORS.items() if g.pretrained)))
        row = gen.make(rng, **gen.defaults)
        wrong = rng.random() < cfg.noise
        return row["question"], gen.make(rng, **gen.defaults)["answer"] if wrong else row["answer"]
    name = rng.choice(sorted(cfg.ladders))
    knob, lo, hi = cfg.ladders[name]
    level = rng.randint(lo, hi)
    row = GENERATORS.get(name).make(rng, **{**cfg.knobs.get(name, {}), knob: level})
    if name in cfg.per_letter:
        short, odds = shortcut_answer(name, row["question"]), cfg.per_letter[name]
        letters = (s if rng.random() < odds[j] else a for j, (a, s) in enumerate(zip(row["answer"], short)))
        return row["question"], "".join(letters)
    shortcut = shortcut_answer(name, row["question"], decoy=name in cfg.decoy, alphabet=name in cfg.alphabet)
    if shortcut is not None and rng.random() < cfg.shortcut[name][level - lo]:
        return row["question"], shortcut
    return row["question"], row["answer"]


def _corpus_batch(rng: random.Random, tokenizer, cfg: BootstrapConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of (input_ids, labels) [B, T]; labels are -100 on padding."""
    batch_size = cfg.batch_size
    seqs = []
    for _ in range(batch_size):
        question, answer = _corpus_row(rng, cfg)
        prompt = tokenizer(f"{question}\n")["input_ids"]
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


def pretrain(cfg: BootstrapConfig, progress: bool = True, name: str = "tiny"):
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
    bar = _progress(cfg.steps, progress, name)
    for step in range(cfg.steps):
        input_ids, labels = _corpus_batch(rng, tokenizer, cfg)
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


def _progress(total: int, enabled: bool, name: str):
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
                f"\rbootstrap builtin:{name}  step {done}/{total}  loss {loss:.3f}  eta {eta:4.0f}s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    return bar


def bootstrap(
    cfg: BootstrapConfig | None = None,
    output: Path | None = None,
    force: bool = False,
    progress: bool = True,
    name: str = "tiny",
) -> Path:
    """Pretrain, evaluate and save built-in model ``name`` (recipe ``cfg``, default ``RECIPES[name]``)
    to ``output`` (default: the cache), atomically."""
    cfg = cfg or RECIPES[name]
    output = Path(output) if output else cache_path(name)
    if (output / "config.json").exists() and not force:
        return output
    model, tokenizer, seconds = pretrain(cfg, progress, name)
    world = builtin_world_domains(cfg.eval_size, cfg.seed, cfg.ladders, cfg.knobs)
    scores = evaluate(model, tokenizer, world, max_new_tokens=24).scores
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=output.name + ".", dir=output.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {
            "recipe_version": BUILTIN_MODELS.get(name),  # None: a trial recipe, not a built-in model
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
    """The folder of a built-in model: the shipped one, else the cache, built there on first use."""
    path = builtin_path(name)
    if not (path / "config.json").exists():
        print(f"building builtin:{name} (first use; cached in {path})", file=sys.stderr)
        bootstrap(output=path, name=name)
    return path


SHIPPED_TOLERANCE = 0.10  # per-domain exact-match difference a rebuild may show (CPUs round differently)


def compare_with_shipped(built: Path, name: str) -> tuple[list[str], bool]:
    """Lines comparing a rebuilt model's held-out exact match (its bootstrap.json) with the shipped
    model's, per domain, and whether every difference is within SHIPPED_TOLERANCE. Pretraining is
    seeded but not bitwise the same on every CPU (kernels round differently), so the check is on
    what the model can do, not on its bytes."""
    shipped = shipped_path(name) / "bootstrap.json"
    if not shipped.exists():
        return [f"no shipped builtin:{name} to compare with"], True
    ours = json.loads((built / "bootstrap.json").read_text())["eval_exact"]
    theirs = json.loads(shipped.read_text())["eval_exact"]
    lines, ok = [f"held-out exact match, shipped builtin:{name} vs this build (tolerance {SHIPPED_TOLERANCE}):"], True
    for domain in theirs:
        diff = ours.get(domain, float("nan")) - theirs[domain]
        close = abs(diff) <= SHIPPED_TOLERANCE
        ok &= close
        lines.append(f"  {domain:<14} {theirs[domain]:.2f}  {ours.get(domain, float('nan')):.2f}  {diff:+.2f}")
    lines.append("matches the shipped model" if ok else "DIFFERS from the shipped model beyond the tolerance")
    return lines, ok


def ensure_builtin_models(config: Config) -> None:
    """Build every built-in model ``config`` names (the policy, and reward or judge models) that is
    not cached yet. The entry points call this; loading a model never builds one."""
    names = {config.model.name_or_path}
    names |= {getattr(r, "model", None) for t in config.domains for r in t.reward}
    for name in sorted(n for n in names if isinstance(n, str) and n.startswith(BUILTIN_PREFIX)):
        if name[len(BUILTIN_PREFIX) :] in BUILTIN_MODELS:  # an unknown name is reported where it is used
            ensure_builtin(name[len(BUILTIN_PREFIX) :])
