"""Our trainer vs TRL's GRPOTrainer at identical settings, measured side by side.

Same model weights, prompts (the built-in sorting domain), reward (exact match of the extracted
answer), group size 8, 8 prompts per step, at most 32 new tokens, temperature 1.0, loss dapo /
token_mean, beta 0, one optimizer pass per rollout, float32, same thread count. Each measurement
runs in its own process (so peak RSS is its own); ours and TRL alternate in pairs and the ratio
is the median over pairs. Sizes: the built-in tiny model and a ~20M-parameter Llama (random init).
At the 20M size it also measures the fraction of this machine's dense matmul throughput at the
model's own layer shapes (the faster of torch.mm and oneDNN's linear) that our training
forward+backward reaches.

It also runs ours with 16 identically defined domains vs 1 domain on the tiny model (same work;
more scheduling and reward dispatch) and prints their throughput ratio.

    python benchmarks/bench_vs_trl.py [--pairs 3] [--steps 5] [--sizes tiny,20m] [--domains 16] [--json]
                                      [--default-kernels]

``--default-kernels`` also runs ours with ``training.onednn_linear: false`` (PyTorch's default CPU
matmul, as TRL uses) in every pair, to show how much of the ratio the oneDNN kernels give.

``--device cuda`` runs both on the GPU with bf16 autocast (fp32 weights) instead (no matmul
fraction: that target is for the CPU machine), ours with ``--ours-static-cache`` (default true
there: the static-cache decoder, its steps in CUDA graphs) and, per size, our decode rate: ms per
token for 64 rows with each decoder (the model's own cache, static eager, static in CUDA graphs).
``--json`` prints the figures as one JSON object on stdout (the table goes to stderr).

Sizes: ``tiny`` (built-in, 1.8M), ``20m`` (hidden 512, 6 layers), ``0.5b`` (the shape of
Qwen2.5-0.5B with a byte vocabulary: hidden 896, 24 layers, 14 heads, 2 K/V heads, intermediate
4864; 358M parameters, random init). ``--max-new-tokens`` sets the completion cap of both sides.

Activation checkpointing: TRL's GRPOConfig turns ``gradient_checkpointing`` on by default (CPU
too); ours turns it on for CUDA only (``training.gradient_checkpointing: auto``). ``--checkpointing
both`` runs each side with it on and with it off in every pair and reports every ratio, so the
table compares settings, not defaults; ``default`` runs each side as it ships.
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
) -> dict:
    """Our trainer; ``domains`` > 1 splits the same prompts over that many identically defined
    domains (same work, more scheduling and reward dispatch); ``onednn``, ``checkpointing`` and
    ``static_cache`` are training.onednn_linear, gradient_checkpointing and static_cache."""
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
    }


def child_trl(
    model: str, prompts: Path, steps: int, device: str, max_new: int = 32, checkpointing: str = "default"
) -> dict:
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
        bf16=device == "cuda",
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **({} if checkpointing == "default" else {"gradient_checkpointing": checkpointing == "on"}),
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
    return {"samples_per_s": steps * PROMPTS_PER_STEP * GROUP / wall, "checkpointing": args.gradient_checkpointing}


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
) -> dict:
    """One measurement in a fresh process; ``kind``: ours, ours-default-kernels (onednn_linear
    false) or trl; ``gc``: activation checkpointing on, off or the side's default."""
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
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matmul_fraction(model_dir: str, threads: int) -> dict:
    """Our training fwd+bwd FLOP rate (6 * params * tokens) over the machine's matmul rate at the layer
    shapes: the faster of torch.mm (PyTorch's BLAS, MKL) and oneDNN's linear, both measured here (on an
    AMD CPU, MKL runs AVX2 code and oneDNN AVX-512). Also the rate of a plain HF fwd+bwd (MKL)."""
    import torch
    from transformers import AutoModelForCausalLM

    from spectrum_rl.cpu.onednn import onednn_available, onednn_linear

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = model.config
    batch, seq = PROMPTS_PER_STEP * GROUP, 48  # a rollout batch: prompt + completion tokens
    tokens = batch * seq
    a, b = torch.randn(tokens, cfg.hidden_size), torch.randn(cfg.hidden_size, cfg.intermediate_size)
    w = b.t().contiguous()  # [out, in], a linear layer's weight

    def rate(flops: float, fn, runs: int) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(runs):
            fn()
        return runs * flops / (time.perf_counter() - t0)

    mm_flops = 2 * tokens * cfg.hidden_size * cfg.intermediate_size
    mm_rate = rate(mm_flops, lambda: torch.mm(a, b), 20)
    onednn_rate = (
        rate(mm_flops, lambda: torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], ""), 20)
        if onednn_available()
        else 0.0
    )
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    n_params = sum(p.numel() for p in model.parameters())

    def step() -> None:
        model(input_ids=ids).logits.float().mean().backward()

    plain_rate = rate(6 * n_params * tokens, step, 3)
    with onednn_linear("auto", torch.device("cpu"), model):  # our trainer's kernels
        train_rate = rate(6 * n_params * tokens, step, 3)
    machine = max(mm_rate, onednn_rate)
    return {
        "mm_gflops": round(mm_rate / 1e9, 1),
        "onednn_gflops": round(onednn_rate / 1e9, 1),
        "train_gflops": round(train_rate / 1e9, 1),
        "plain_train_gflops": round(plain_rate / 1e9, 1),
        "fraction": round(train_rate / machine, 3),
        "params_m": round(n_params / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sizes", default="tiny,20m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
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
        "--checkpointing",
        choices=["default", "both", "on", "off"],
        default="default",
        help="activation checkpointing: each side's default, both ways for each side, or on/off for both",
    )
    parser.add_argument(
        "--ours-static-cache",
        choices=["auto", "true", "false"],
        default=None,
        help="ours: training.static_cache (default: true on cuda, auto on cpu)",
    )
    parser.add_argument("--child", choices=["ours", "ours-default-kernels", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    static_cache = args.ours_static_cache or ("true" if args.device == "cuda" else "auto")
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        if args.child.startswith("ours"):
            onednn = "auto" if args.child == "ours" else False
            gc = {"default": "auto", "on": True, "off": False}[args.checkpointing]
            static = {"auto": "auto", "true": True, "false": False}[static_cache]
            result = child_ours(
                args.model, Path(args.prompts), args.steps, args.domains, onednn, args.max_new_tokens, gc, static
            )
        else:
            result = child_trl(
                args.model, Path(args.prompts), args.steps, args.device, args.max_new_tokens, args.checkpointing
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
    gcs = ["on", "off"] if args.checkpointing == "both" else [args.checkpointing]
    report: dict = {
        "sizes": {},
        "settings": {
            "prompts_per_step": PROMPTS_PER_STEP,
            "group_size": GROUP,
            "max_new_tokens": args.max_new_tokens,
            "threads": args.threads,
            "device": args.device,
            "checkpointing": args.checkpointing,
            "ours_static_cache": static_cache,
        },
    }
    for name, model in models.items():
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.pairs):  # every variant once per pair, alternating
            for kind in ["ours", "trl"] + (["ours-default-kernels"] if args.default_kernels else []):
                for gc in gcs:
                    result = run_child(
                        kind,
                        model,
                        prompts,
                        args.steps,
                        args.threads,
                        args.device,
                        1,
                        args.max_new_tokens,
                        gc,
                        static_cache,
                    )
                    runs.setdefault((kind, gc), []).append(result)

        def label(kind: str, gc: str, rs: list[dict]) -> str:
            used = "on" if rs[0]["checkpointing"] else "off"
            return f"{kind} (checkpointing {gc if gc != 'default' else 'default: ' + used})"

        variants = {
            label(kind, gc, rs): {
                "kind": kind,
                "samples_per_s": round(statistics.median(r["samples_per_s"] for r in rs), 2),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                **({"peak_gpu_mb": max(r["peak_gpu_mb"] for r in rs)} if args.device == "cuda" else {}),
                **({"breakdown": rs[len(rs) // 2]["breakdown"]} if kind != "trl" else {}),
            }
            for (kind, gc), rs in runs.items()
        }
        keys = dict(zip(runs, variants))  # (kind, gc) -> its label
        ratios = {  # ours variant / TRL variant, median over pairs of the per-pair ratio
            f"{keys[o]} / {keys[t]}": round(
                statistics.median(a["samples_per_s"] / b["samples_per_s"] for a, b in zip(runs[o], runs[t])), 3
            )
            for o in runs
            if o[0] != "trl"
            for t in runs
            if t[0] == "trl"
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
        report["matmul_fraction"] = matmul_fraction(models["20m"], args.threads)
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
        f"{settings['group_size']} completions, at most {settings['max_new_tokens']} new tokens"
    ]
    gpu = device == "cuda"
    for name, r in report["sizes"].items():
        lines.append(f"{name}:")
        lines.append(f"  {'variant':48} {'s/s':>7} {'RSS':>7}" + (f" {'GPU peak':>9}" if gpu else "") + "  breakdown")
        for label, v in r["variants"].items():
            b = v.get("breakdown")
            parts = f"rollout {b['rollout']:.0%} reward {b['reward']:.0%} train {b['train']:.0%}" if b else ""
            gpu_cell = f" {v['peak_gpu_mb']:8.0f}M" if gpu else ""
            lines.append(f"  {label:48} {v['samples_per_s']:7.1f} {v['peak_rss_mb']:6.0f}M{gpu_cell}  {parts}")
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
    if "matmul_fraction" in report:
        m = report["matmul_fraction"]
        lines.append(
            f"20M training fwd+bwd: {m['train_gflops']} GFLOP/s = {m['fraction']:.0%} of the matmul rate at the "
            f"layer shapes, the faster of oneDNN {m['onednn_gflops']} and torch.mm {m['mm_gflops']} GFLOP/s "
            f"({m['train_gflops'] / m['mm_gflops']:.0%} of torch.mm's); "
            f"a plain HF fwd+bwd {m['plain_train_gflops']} GFLOP/s"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
