"""Our trainer vs TRL's GRPOTrainer, measured side by side: as each ships, and at equal settings.

Same model weights, prompts (the built-in sorting domain), reward (exact match of the extracted
answer), group size 8, 8 prompts per step, at most 32 new tokens, temperature 1.0, loss dapo /
token_mean, beta 0, one optimizer pass per rollout, same thread count. Each measurement runs in
its own process (so peak RSS is its own); ours and TRL alternate in pairs and each ratio is the
median over pairs of ours / TRL in the same pair. Sizes: the built-in tiny model and a
~20M-parameter Llama (random init).

Settings (``--compare``):
- ``ships``: each side as it ships. TRL 1.16's GRPOConfig defaults to ``bf16=True`` (on a CPU
  too, ``use_cpu=True``) and ``gradient_checkpointing=True``; nothing of either is passed, and the
  table prints what TRL's config resolved them to. Ours runs its defaults, ``training.bf16: auto``
  (bf16 autocast on a CUDA GPU or a CPU with bf16 matmul units; cpu/precision.py) and
  ``training.gradient_checkpointing: auto`` (on for CUDA only).
- ``equal``: both sides fp32 and both bf16 autocast, each with activation checkpointing off and
  on: four settings, the same on both sides.
- ``all`` (the default): both.

The header names the CPU, its bf16 units (AMX, AVX512-BF16 or none, from its flags) and the
fp32 and bf16 matmul rates measured here at each model's own MLP shape (a rollout batch's tokens x
hidden x intermediate; fp32 the faster of torch.mm and oneDNN's linear). At the 20M size it also
measures our training forward+backward rate (6 x params x tokens per second) in fp32 and in bf16,
each as a fraction of that precision's matmul rate.

It also runs ours with 16 identically defined domains vs 1 domain on the tiny model (same work;
more scheduling and reward dispatch) and prints their throughput ratio.

    python benchmarks/bench_vs_trl.py [--pairs 3] [--steps 5] [--sizes tiny,20m] [--compare all|ships|equal]
                                      [--domains 16] [--json] [--default-kernels]

``--default-kernels`` also runs ours with ``training.onednn_linear: false`` (PyTorch's default CPU
matmul, as TRL uses) in every pair and setting, to show how much of the ratio the oneDNN kernels give.

``--device cuda`` runs both on the GPU instead (no matmul rates: those are for the CPU), ours with
``--ours-static-cache`` (default true there: the static-cache decoder, its steps in CUDA graphs)
and, per size, our decode rate: ms per token for 64 rows with each decoder (the model's own
cache, static eager, static in CUDA graphs), under bf16 autocast.
``--json`` prints the figures as one JSON object on stdout (the table goes to stderr).

Sizes: ``tiny`` (built-in, 1.8M), ``20m`` (hidden 512, 6 layers), ``0.5b`` (the shape of
Qwen2.5-0.5B with a byte vocabulary: hidden 896, 24 layers, 14 heads, 2 K/V heads, intermediate
4864; 358M parameters, random init). ``--max-new-tokens`` sets the completion cap of both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS_PER_STEP, GROUP, LR = 8, 8, 1e-4
SHIPS = ("default", "default")  # (precision, checkpointing) as each side ships
EQUAL = [(precision, gc) for precision in ("fp32", "bf16") for gc in ("off", "on")]
SHAPES = {  # tiny_config overrides per size
    "20m": dict(
        hidden_size=512, intermediate_size=1408, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8
    ),
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    ),
}


def reward_exact(prompts, completions, answer, **_):
    """TRL-style reward: exact match of the extracted answer (our `exact_match` component's rule)."""
    from spectrum_rl.rewards.text import extract_answer, normalize

    return [float(normalize(extract_answer(c)) == normalize(a)) for c, a in zip(completions, answer)]


def make_prompts(path: Path, n: int) -> None:
    import random

    from spectrum_rl.sources.builtin import GENERATORS

    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(n):
            row = GENERATORS.get("sorting").make(rng)
            f.write(json.dumps({"question": row["question"], "answer": row["answer"]}) + "\n")


def make_model(path: Path, size: str) -> None:
    """A random-init Llama of ``SHAPES[size]`` with the byte tokenizer, saved in HF format."""
    import torch
    from transformers import LlamaForCausalLM

    from spectrum_rl.models import byte_tokenizer, tiny_config

    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(**SHAPES[size])).save_pretrained(path)
    byte_tokenizer().save_pretrained(path)


def child_ours(
    model: str,
    prompts: Path,
    steps: int,
    domains: int = 1,
    onednn: bool | str = "auto",
    max_new: int = 32,
    checkpointing: bool | str = "auto",
    static_cache: bool | str = "auto",
    bf16: bool | str = "auto",
) -> dict:
    """Our trainer; ``domains`` > 1 splits the same prompts over that many identically defined
    domains (same work, more scheduling and reward dispatch); ``onednn``, ``checkpointing``,
    ``static_cache`` and ``bf16`` are training.onednn_linear, gradient_checkpointing, static_cache
    and bf16."""
    import torch

    from spectrum_rl.config import Config
    from spectrum_rl.cpu.host_memory import reuse_freed_memory
    from spectrum_rl.domains import build_domains
    from spectrum_rl.trainer.loop import Trainer

    out = tempfile.mkdtemp()
    config = Config.model_validate(
        {
            "run": {"output_dir": out},
            "model": {"name_or_path": model},
            "domains": [
                {
                    "name": f"sorting{i}",
                    "kind": "structured",
                    "expert_field": None,
                    "eval": {"size": 8},
                    "source": {"type": "file", "path": str(prompts)},
                    "reward": [{"type": "exact_match"}],
                }
                for i in range(domains)
            ],
            "training": {
                "prompts_per_step": PROMPTS_PER_STEP,
                "group_size": GROUP,
                "max_new_tokens": max_new,
                "temperature": 1.0,
                "loss": "dapo",
                "beta": 0.0,
                "num_iterations": 1,
                "learning_rate": LR,
                "onednn_linear": onednn,
                "gradient_checkpointing": checkpointing,
                "static_cache": static_cache,
                "bf16": bf16,
            },
            "eval": {"kl_to_base": False},
            "logging": {"progress": False},
        }
    )
    if config.training.reuse_host_memory and not torch.cuda.is_available():
        reuse_freed_memory()  # what `spectrum-rl train` sets up for a CPU run (process-wide)
    trainer = Trainer(config, build_domains(config, Path.cwd()), Path(out))
    trainer.train_step()  # warm-up
    parts = {"rollout": 0.0, "reward": 0.0, "train": 0.0}
    t0 = time.perf_counter()
    for _ in range(steps):
        m = trainer.train_step()
        for k in parts:
            parts[k] += m[f"time/{k}"]
    wall = time.perf_counter() - t0
    return {
        "samples_per_s": steps * PROMPTS_PER_STEP * GROUP / wall,
        "breakdown": {k: round(v / wall, 3) for k, v in parts.items()},
        "checkpointing": trainer.state.activation_checkpointing,
        "bf16": trainer.state.acc.mixed_precision == "bf16",
    }


def child_trl(
    model: str,
    prompts: Path,
    steps: int,
    device: str,
    max_new: int = 32,
    checkpointing: str = "default",
    precision: str = "default",
) -> dict:
    """TRL's GRPOTrainer; ``checkpointing`` on/off and ``precision`` fp32/bf16 are passed to its
    GRPOConfig, "default" passes nothing (TRL's own defaults: bf16 and checkpointing on)."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from spectrum_rl.models import load_tokenizer

    data = load_dataset("json", data_files=str(prompts), split="train").map(lambda r: {"prompt": r["question"] + "\n"})
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=PROMPTS_PER_STEP * GROUP,
        num_generations=GROUP,
        max_completion_length=max_new,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        loss_type="dapo",
        beta=0.0,
        num_iterations=1,
        learning_rate=LR,
        max_steps=steps + 1,
        logging_steps=1,
        report_to=[],
        use_cpu=device == "cpu",
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **({} if checkpointing == "default" else {"gradient_checkpointing": checkpointing == "on"}),
        **({} if precision == "default" else {"bf16": precision == "bf16"}),
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model),
        reward_funcs=reward_exact,
        args=args,
        train_dataset=data,
        processing_class=load_tokenizer(model),
        callbacks=[Clock()],
    )
    trainer.train()
    wall = stamps[-1] - stamps[0]  # the first step is the warm-up
    return {
        "samples_per_s": steps * PROMPTS_PER_STEP * GROUP / wall,
        "checkpointing": args.gradient_checkpointing,
        "bf16": bool(args.bf16),
    }


def decode_ms_per_token(model_dir: str, device: str, rows: int = 64, new_tokens: int = 128) -> dict:
    """Our sampler's decode time per token for ``rows`` rows (8 prompts x 8), EOS never ending a
    row, for each decoder: the model's own cache, the static cache eagerly, the static cache in
    CUDA graphs (CUDA only; its capture is timed apart and not counted)."""
    import torch

    from spectrum_rl.models import load_causal_lm
    from spectrum_rl.trainer.decoder import CAPTURES
    from spectrum_rl.trainer.rollout import sample

    model, tok = load_causal_lm(model_dir, device=device)
    prompts = [tok(f"sort: {'dcba' * (1 + i % 3)}\n")["input_ids"] for i in range(rows // 8) for _ in range(8)]
    decoders = {"hf_cache": (False, False), "static": (True, False)}
    if device == "cuda":
        decoders["static_graphs"] = (True, True)
    out = {}
    for name, (static, graphs) in decoders.items():

        def run(n: int, static: bool = static, graphs: bool = graphs) -> float:
            gen = torch.Generator(device=device).manual_seed(0)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                t0 = time.perf_counter()
                sample(
                    model,
                    prompts,
                    max_new_tokens=n,
                    eos_id=-1,
                    pad_id=tok.pad_token_id,
                    generator=gen,
                    static_cache=static,
                    graphs=graphs,
                )
                if device == "cuda":
                    torch.cuda.synchronize()
                return time.perf_counter() - t0

        capture = CAPTURES["seconds"]
        run(new_tokens)  # warm-up (and, with graphs, the capture)
        # the difference of two lengths leaves the prefill out: decode steps only
        t_long, t_short = min(run(new_tokens) for _ in range(3)), min(run(new_tokens // 2) for _ in range(3))
        out[name] = round(1000 * (t_long - t_short) / (new_tokens - new_tokens // 2), 3)
        if graphs:
            out["capture_s"] = round(CAPTURES["seconds"] - capture, 3)
    return out


def run_child(
    kind: str,
    model: str,
    prompts: Path,
    steps: int,
    threads: int,
    device: str,
    domains: int = 1,
    max_new: int = 32,
    gc: str = "default",
    static_cache: str = "auto",
    precision: str = "default",
) -> dict:
    """One measurement in a fresh process; ``kind``: ours, ours-default-kernels (onednn_linear
    false) or trl; ``gc``: activation checkpointing on, off or the side's default; ``precision``:
    fp32, bf16 or the side's default."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if device == "cpu":  # ours picks a visible GPU by itself
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, __file__, "--child", kind, "--model", model, "--prompts", str(prompts)]
    cmd += ["--device", device, "--steps", str(steps), "--threads", str(threads), "--domains", str(domains)]
    cmd += ["--max-new-tokens", str(max_new), "--checkpointing", gc, "--ours-static-cache", static_cache]
    cmd += ["--precision", precision]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_header(models: dict[str, str], threads: int) -> dict:
    """The CPU's name, its bf16 units (from its flags) and, per model, the fp32 and bf16 matmul
    rates at its MLP shape (a rollout batch's tokens x hidden x intermediate), ``threads`` threads."""
    import torch
    from transformers import AutoConfig

    from spectrum_rl.cpu.precision import bf16_units, cpu_flags, cpu_name, matmul_gflops

    torch.set_num_threads(threads)
    rates = {}
    for size, model in models.items():
        cfg = AutoConfig.from_pretrained(model)
        shape = (PROMPTS_PER_STEP * GROUP * 48, cfg.hidden_size, cfg.intermediate_size)
        fp32, bf16 = matmul_gflops(torch.float32, shape, 0.2), matmul_gflops(torch.bfloat16, shape, 0.2)
        rates[size] = {"shape": list(shape), "fp32_gflops": round(fp32, 1), "bf16_gflops": round(bf16, 1)}
    return {"cpu": cpu_name(), "bf16_units": bf16_units(cpu_flags()), "matmul": rates}


def training_rates(model_dir: str, threads: int, matmul: dict) -> dict:
    """Our training forward+backward FLOP rate in fp32 and under bf16 autocast, each over that
    precision's matmul rate at the layer shapes (``matmul``: this model's entry of `cpu_header`):
    the trainer's own log-prob pass (`token_logprobs`: 8 prompts of 16 tokens once, 64 completions
    of 32 attending to them) with our kernels, 6 x params x tokens per second; also a plain HF
    fwd+bwd in fp32 over the same 64 rows of 48 tokens (PyTorch's default kernels)."""
    import torch
    from transformers import AutoModelForCausalLM

    from spectrum_rl.cpu.onednn import onednn_linear
    from spectrum_rl.trainer.batch import Row, collate
    from spectrum_rl.trainer.logprobs import token_logprobs

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    vocab, n_params = model.config.vocab_size, sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (16,), generator=gen).tolist() for _ in range(PROMPTS_PER_STEP)]
    rows = [
        Row(p, torch.randint(3, vocab, (32,), generator=gen).tolist(), "rl", "d", 1.0)
        for p in prompts
        for _ in range(GROUP)
    ]
    mb = collate(rows, 0)
    tokens = PROMPTS_PER_STEP * 16 + len(rows) * 32  # each prompt once (shared prefix), every completion

    def timed(step, flops: float, runs: int = 3) -> float:
        step()
        t0 = time.perf_counter()
        for _ in range(runs):
            step()
        return runs * flops / (time.perf_counter() - t0) / 1e9

    def ours(bf16: bool) -> float:
        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                token_logprobs(model, mb).mean().backward()

        with onednn_linear("auto", torch.device("cpu"), model):
            return timed(step, 6 * n_params * tokens)

    ids = torch.cat([mb.prompt_ids[mb.group], mb.completion_ids], 1)
    fp32, bf16 = ours(False), ours(True)
    plain = timed(lambda: model(input_ids=ids).logits.float().mean().backward(), 6 * n_params * ids.numel())
    return {
        "params_m": round(n_params / 1e6, 1),
        "fp32_gflops": round(fp32, 1),
        "fp32_fraction": round(fp32 / matmul["fp32_gflops"], 3),
        "bf16_gflops": round(bf16, 1),
        "bf16_fraction": round(bf16 / matmul["bf16_gflops"], 3),
        "plain_fp32_gflops": round(plain, 1),
    }


def setting_label(kind: str, setting: tuple[str, str], result: dict) -> str:
    """A variant's row label: the side, its setting, and for a default what it resolved to."""
    side = "TRL" if kind == "trl" else ("ours, default kernels" if kind == "ours-default-kernels" else "ours")
    resolved = f"{'bf16' if result['bf16'] else 'fp32'}, ckpt {'on' if result['checkpointing'] else 'off'}"
    if setting == SHIPS:
        return f"{side} as it ships ({resolved})"
    return f"{side} {setting[0]}, ckpt {setting[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sizes", default="tiny,20m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--compare",
        choices=["all", "ships", "equal"],
        default="all",
        help="each side as it ships, both at four equal settings (fp32/bf16 x checkpointing off/on), or both",
    )
    parser.add_argument(
        "--domains",
        type=int,
        default=16,
        help="also compare ours with this many domains vs 1 on the tiny model (0: skip)",
    )
    parser.add_argument(
        "--default-kernels",
        action="store_true",
        help="also run ours with training.onednn_linear false (PyTorch's default CPU matmul) in each pair",
    )
    parser.add_argument("--max-new-tokens", type=int, default=32, help="completion cap of both sides")
    parser.add_argument(
        "--ours-static-cache",
        choices=["auto", "true", "false"],
        default=None,
        help="ours: training.static_cache (default: true on cuda, auto on cpu)",
    )
    parser.add_argument("--child", choices=["ours", "ours-default-kernels", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()
    static_cache = args.ours_static_cache or ("true" if args.device == "cuda" else "auto")
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        if args.child.startswith("ours"):
            onednn = "auto" if args.child == "ours" else False
            gc = {"default": "auto", "on": True, "off": False}[args.checkpointing]
            static = {"auto": "auto", "true": True, "false": False}[static_cache]
            bf16 = {"default": "auto", "bf16": True, "fp32": False}[args.precision]
            result = child_ours(
                args.model, Path(args.prompts), args.steps, args.domains, onednn, args.max_new_tokens, gc, static, bf16
            )
        else:
            result = child_trl(
                args.model,
                Path(args.prompts),
                args.steps,
                args.device,
                args.max_new_tokens,
                args.checkpointing,
                args.precision,
            )
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if torch.cuda.is_available():
            result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        print(json.dumps(result))
        return

    from spectrum_rl.bootstrap import ensure_builtin

    tmp = Path(tempfile.mkdtemp())
    prompts = tmp / "prompts.jsonl"
    make_prompts(prompts, 400)
    models = {}
    for size in args.sizes.split(","):
        if size == "tiny":
            models["tiny"] = str(ensure_builtin("tiny"))
        else:
            make_model(tmp / size, size)
            models[size] = str(tmp / size)
    settings = {"all": [SHIPS, *EQUAL], "ships": [SHIPS], "equal": EQUAL}[args.compare]
    report: dict = {
        "sizes": {},
        "settings": {
            "prompts_per_step": PROMPTS_PER_STEP,
            "group_size": GROUP,
            "max_new_tokens": args.max_new_tokens,
            "threads": args.threads,
            "device": args.device,
            "compare": args.compare,
            "ours_static_cache": static_cache,
            "pairs": args.pairs,
            "steps": args.steps,
        },
    }
    if args.device == "cpu":
        report["header"] = cpu_header(models, args.threads)
    kinds = ["ours", "trl"] + (["ours-default-kernels"] if args.default_kernels else [])
    for name, model in models.items():
        runs: dict[tuple[str, tuple[str, str]], list[dict]] = {}
        for _ in range(args.pairs):  # every variant once per pair, alternating
            for setting in settings:
                for kind in kinds:
                    result = run_child(
                        kind,
                        model,
                        prompts,
                        args.steps,
                        args.threads,
                        args.device,
                        1,
                        args.max_new_tokens,
                        setting[1],
                        static_cache,
                        setting[0],
                    )
                    runs.setdefault((kind, setting), []).append(result)
        labels = {key: setting_label(key[0], key[1], rs[0]) for key, rs in runs.items()}
        variants = {
            labels[key]: {
                "kind": key[0],
                "setting": list(key[1]),
                "samples_per_s": round(statistics.median(r["samples_per_s"] for r in rs), 2),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                **({"peak_gpu_mb": max(r["peak_gpu_mb"] for r in rs)} if args.device == "cuda" else {}),
                **({"breakdown": rs[len(rs) // 2]["breakdown"]} if key[0] != "trl" else {}),
            }
            for key, rs in runs.items()
        }
        ratios = {  # ours / TRL at the same setting, median over pairs of the per-pair ratio
            f"{labels[key]} / {labels['trl', key[1]]}": round(
                statistics.median(a["samples_per_s"] / b["samples_per_s"] for a, b in zip(rs, runs["trl", key[1]])),
                3,
            )
            for key, rs in runs.items()
            if key[0] != "trl"
        }
        report["sizes"][name] = {"variants": variants, "ratios": ratios}
        if args.device == "cuda":
            report["sizes"][name]["decode_ms_per_token"] = decode_ms_per_token(
                model, "cuda", new_tokens=args.max_new_tokens
            )
    if args.domains > 1:
        model = str(ensure_builtin("tiny"))
        one, many = [], []
        steps = 10 * args.steps  # tiny steps are short: more of them average out completion-length noise
        for _ in range(args.pairs):
            one.append(run_child("ours", model, prompts, steps, args.threads, args.device, 1)["samples_per_s"])
            many.append(
                run_child("ours", model, prompts, steps, args.threads, args.device, args.domains)["samples_per_s"]
            )
        report["domains"] = {
            "n": args.domains,
            "one_samples_per_s": round(statistics.median(one), 2),
            "many_samples_per_s": round(statistics.median(many), 2),
            "ratio": round(statistics.median(m / o for m, o in zip(many, one)), 3),
        }
    if "20m" in models and args.device == "cpu":
        report["training_rates"] = training_rates(models["20m"], args.threads, report["header"]["matmul"]["20m"])
    table = render(report)
    if args.json:  # the JSON object on stdout, the table on stderr
        print(table, file=sys.stderr)
        print(json.dumps(report))
    else:
        print(table)


def render(report: dict) -> str:
    """The human-readable table of a report (also used to render a saved ``--json`` report)."""
    settings = report["settings"]
    device = settings.get("device", "cpu")
    lines = [
        f"device: {device}, {settings['threads']} CPU threads, {settings['prompts_per_step']} prompts x "
        f"{settings['group_size']} completions, at most {settings['max_new_tokens']} new tokens, "
        f"{settings.get('pairs', '?')} pairs x {settings.get('steps', '?')} steps"
    ]
    if "header" in report:
        h = report["header"]
        units = {"amx": "AMX", "avx512_bf16": "AVX512-BF16", "arm_bf16": "Arm BF16", None: "none"}[h["bf16_units"]]
        lines.append(f"CPU: {h['cpu']}; bf16 matmul units: {units}")
        for size, m in h["matmul"].items():
            shape = "x".join(map(str, m["shape"]))
            lines.append(
                f"  matmul at {size}'s MLP shape ({shape}): fp32 {m['fp32_gflops']} GFLOP/s, bf16 "
                f"{m['bf16_gflops']} GFLOP/s ({m['bf16_gflops'] / m['fp32_gflops']:.1f}x)"
            )
    gpu = device == "cuda"
    for name, r in report["sizes"].items():
        lines.append(f"{name}:")
        lines.append(f"  {'variant':52} {'s/s':>7} {'RSS':>7}" + (f" {'GPU peak':>9}" if gpu else "") + "  breakdown")
        for label, v in r["variants"].items():
            b = v.get("breakdown")
            parts = f"rollout {b['rollout']:.0%} reward {b['reward']:.0%} train {b['train']:.0%}" if b else ""
            gpu_cell = f" {v['peak_gpu_mb']:8.0f}M" if gpu else ""
            lines.append(f"  {label:52} {v['samples_per_s']:7.1f} {v['peak_rss_mb']:6.0f}M{gpu_cell}  {parts}")
        for pair, ratio in r["ratios"].items():
            lines.append(f"  ratio {pair}: {ratio:.2f}")
        if "decode_ms_per_token" in r:
            lines.append(
                "  decode, ms per token for 64 rows: "
                + ", ".join(f"{k} {v}" for k, v in r["decode_ms_per_token"].items())
            )
    if "domains" in report:
        d = report["domains"]
        lines.append(
            f"tiny, ours with {d['n']} domains vs 1: {d['many_samples_per_s']:.1f} vs "
            f"{d['one_samples_per_s']:.1f} samples/s = {d['ratio']:.2f} (target >= 0.95)"
        )
    if "training_rates" in report:
        t = report["training_rates"]
        lines.append(
            f"20M training fwd+bwd (our kernels): fp32 {t['fp32_gflops']} GFLOP/s = {t['fp32_fraction']:.0%} of the "
            f"fp32 matmul rate, bf16 autocast {t['bf16_gflops']} GFLOP/s = {t['bf16_fraction']:.0%} of the bf16 "
            f"matmul rate; a plain HF fwd+bwd in fp32 {t['plain_fp32_gflops']} GFLOP/s"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
