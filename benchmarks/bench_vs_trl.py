"""Our trainer vs TRL's GRPOTrainer at identical settings, measured side by side (issue 6).

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
fraction: that target is for the CPU machine).
``--json`` prints the figures as one JSON object on stdout (the table goes to stderr).
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

PROMPTS_PER_STEP, GROUP, MAX_NEW, LR = 8, 8, 32, 1e-4


def reward_exact(prompts, completions, answer, **_):
    """TRL-style reward: exact match of the extracted answer (our `exact_match` component's rule)."""
    from spectrum_rl.rewards.text import extract_answer, normalize

    return [float(normalize(extract_answer(c)) == normalize(a)) for c, a in zip(completions, answer)]


def make_prompts(path: Path, n: int) -> None:
    import random

    from spectrum_rl.tasks.builtin import GENERATORS

    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(n):
            row = GENERATORS["sorting"].make(rng)
            f.write(json.dumps({"question": row["question"], "answer": row["answer"]}) + "\n")


def make_20m(path: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    from spectrum_rl.models import byte_tokenizer, tiny_config

    torch.manual_seed(0)
    cfg = tiny_config(
        hidden_size=512, intermediate_size=1408, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    byte_tokenizer().save_pretrained(path)


def child_ours(model: str, prompts: Path, steps: int, domains: int = 1, onednn: bool | str = "auto") -> dict:
    """Our trainer; ``domains`` > 1 splits the same prompts over that many identically defined
    domains (same work, more scheduling and reward dispatch); ``onednn`` is training.onednn_linear."""
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
            "tasks": [
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
                "max_new_tokens": MAX_NEW,
                "temperature": 1.0,
                "aggregation": "token_mean",
                "beta": 0.0,
                "num_iterations": 1,
                "learning_rate": LR,
                "onednn_linear": onednn,
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
    }


def child_trl(model: str, prompts: Path, steps: int, device: str) -> dict:
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
        max_completion_length=MAX_NEW,
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
    return {"samples_per_s": steps * PROMPTS_PER_STEP * GROUP / wall}


def run_child(kind: str, model: str, prompts: Path, steps: int, threads: int, device: str, domains: int = 1) -> dict:
    """One measurement in a fresh process; ``kind``: ours, ours-default-kernels (onednn_linear false) or trl."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if device == "cpu":  # ours picks a visible GPU by itself
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--model",
        model,
        "--prompts",
        str(prompts),
        "--device",
        device,
        "--steps",
        str(steps),
        "--threads",
        str(threads),
        "--domains",
        str(domains),
    ]
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
    parser.add_argument("--child", choices=["ours", "ours-default-kernels", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        if args.child.startswith("ours"):
            onednn = "auto" if args.child == "ours" else False
            result = child_ours(args.model, Path(args.prompts), args.steps, args.domains, onednn)
        else:
            result = child_trl(args.model, Path(args.prompts), args.steps, args.device)
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
            make_20m(tmp / "m20")
            models["20m"] = str(tmp / "m20")
    report: dict = {
        "sizes": {},
        "settings": {
            "prompts_per_step": PROMPTS_PER_STEP,
            "group_size": GROUP,
            "max_new_tokens": MAX_NEW,
            "threads": args.threads,
            "device": args.device,
        },
    }
    for name, model in models.items():
        ours, trl, plain = [], [], []
        for _ in range(args.pairs):
            ours.append(run_child("ours", model, prompts, args.steps, args.threads, args.device))
            trl.append(run_child("trl", model, prompts, args.steps, args.threads, args.device))
            if args.default_kernels:
                plain.append(run_child("ours-default-kernels", model, prompts, args.steps, args.threads, args.device))
        ratios = [o["samples_per_s"] / t["samples_per_s"] for o, t in zip(ours, trl)]
        report["sizes"][name] = {
            "ours_samples_per_s": round(statistics.median(o["samples_per_s"] for o in ours), 2),
            "trl_samples_per_s": round(statistics.median(t["samples_per_s"] for t in trl), 2),
            "ratio": round(statistics.median(ratios), 3),
            "ours_peak_rss_mb": max(o["peak_rss_mb"] for o in ours),
            "trl_peak_rss_mb": max(t["peak_rss_mb"] for t in trl),
            "ours_breakdown": ours[len(ours) // 2]["breakdown"],
        }
        if plain:
            report["sizes"][name].update(
                ours_default_kernels_samples_per_s=round(statistics.median(p["samples_per_s"] for p in plain), 2),
                ratio_default_kernels=round(
                    statistics.median(p["samples_per_s"] / t["samples_per_s"] for p, t in zip(plain, trl)), 3
                ),
            )
        if args.device == "cuda":
            report["sizes"][name].update(
                ours_peak_gpu_mb=max(o["peak_gpu_mb"] for o in ours), trl_peak_gpu_mb=max(t["peak_gpu_mb"] for t in trl)
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
    device = report["settings"].get("device", "cpu")
    lines = [f"device: {device}, {report['settings']['threads']} CPU threads"] if device != "cpu" else []
    lines += [
        f"{'size':6} {'ours s/s':>9} {'TRL s/s':>9} {'ratio':>6} {'ours RSS':>9} {'TRL RSS':>8}  ours step breakdown"
    ]
    for name, r in report["sizes"].items():
        b = r["ours_breakdown"]
        lines.append(
            f"{name:6} {r['ours_samples_per_s']:9.1f} {r['trl_samples_per_s']:9.1f} {r['ratio']:6.2f} "
            f"{r['ours_peak_rss_mb']:8.0f}M {r['trl_peak_rss_mb']:7.0f}M  rollout {b['rollout']:.0%} "
            f"reward {b['reward']:.0%} train {b['train']:.0%}"
        )
        if "ratio_default_kernels" in r:
            lines.append(
                f"{'':6} ours with training.onednn_linear false: {r['ours_default_kernels_samples_per_s']:.1f} "
                f"s/s = {r['ratio_default_kernels']:.2f}x TRL"
            )
        if "ours_peak_gpu_mb" in r:
            lines.append(
                f"{'':6} GPU memory peak (torch.cuda.max_memory_allocated): ours {r['ours_peak_gpu_mb']:.0f}M, "
                f"TRL {r['trl_peak_gpu_mb']:.0f}M"
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
