"""GPU smoke test: a few bf16 training steps of our trainer on CUDA, and a vLLM rollout
of the same model when vLLM is installed. Not part of CI; run by `benchmarks/gpu_smoke.sh`.

Checks: the trainer runs on CUDA with bf16 autocast, its loss and grad norm are finite, the
weights changed, the KV-cache sampler gives the same greedy tokens as HF `generate` on the GPU,
the static-cache decoder the same seeded samples as the model's own cache, the fixed-shape decoder
in CUDA graphs the same seeded samples as the static decoder run eagerly (fp32; in bf16 the share
of equal tokens is printed) with its capture time, a second rollout of another batch size in the
same bucket captures nothing new, training steps of a Qwen2.5-0.5B-shaped model (358M, random
init) run with the static cache, CUDA graphs and activation checkpointing (peak memory printed),
and (vLLM present) vLLM's greedy completion of the same prompts matches ours. Exit 0 when every
check passes, 1 on a failed check, 2 when there is no CUDA device. ``--allow-cpu`` runs the same
checks on the CPU (a dry run of this script, not a GPU check: graphs are not captured there).
``--fsdp``, run under ``accelerate launch`` with an FSDP config (``gpu_smoke.sh`` does), checks
sharded training instead (``check_fsdp``); its CPU dry run is ``accelerate launch --config_file
configs/accelerate/fsdp.yaml benchmarks/gpu_smoke.py --fsdp --allow-cpu`` (not ``--cpu``, which
drops the FSDP settings).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def check(name: str, ok: bool, detail: str = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def main(argv: list[str]) -> int:
    cuda = torch.cuda.is_available()
    if not cuda and "--allow-cpu" not in argv:
        print("no CUDA device: nothing to check (this script is for GPU machines)")
        return 2
    device = "cuda" if cuda else "cpu"
    if "--fsdp" in argv:
        return check_fsdp(device)
    from spectrum_rl.bootstrap import ensure_builtin
    from spectrum_rl.config import Config
    from spectrum_rl.domains import build_domains
    from spectrum_rl.models import load_causal_lm
    from spectrum_rl.trainer.loop import Trainer
    from spectrum_rl.trainer.rollout import sample

    print(
        f"device: {torch.cuda.get_device_name(0) if cuda else 'cpu (dry run)'}, torch {torch.__version__}", flush=True
    )
    model_dir = str(ensure_builtin("tiny"))
    ok = True
    out = tempfile.mkdtemp()
    config = Config.model_validate(
        {
            "run": {"output_dir": out},
            "model": {"name_or_path": model_dir},
            "domains": [
                {
                    "name": "sorting",
                    "kind": "structured",
                    "source": {"type": "builtin", "generator": "sorting"},
                    "reward": [{"type": "exact_match"}],
                    "eval": {"size": 16},
                }
            ],
            "training": {
                "steps": 3,
                "prompts_per_step": 16,
                "group_size": 8,
                "max_new_tokens": 32,
                "learning_rate": 1e-4,
                "bf16": True,
            },
            "logging": {"progress": False},
        }
    )
    trainer = Trainer(config, build_domains(config, Path.cwd()), Path(out))
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    t0 = time.perf_counter()
    metrics = [trainer.train_step() for _ in range(3)]
    if cuda:
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / 3
    last = metrics[-1]
    ok &= check(
        f"bf16 training steps on {device}",
        next(trainer.policy.parameters()).device.type == device and trainer.state.acc.mixed_precision == "bf16",
        f"{step_s * 1000:.0f} ms/step, {16 * 8 / step_s:.0f} samples/s",
    )
    ok &= check(
        "finite loss and grad norm",
        all(torch.isfinite(torch.tensor(float(m[k]))) for m in metrics for k in ("loss/rl", "grad_norm") if k in m),
        f"loss/rl {last.get('loss/rl')}, grad_norm {last.get('grad_norm')}",
    )
    moved = sum(float((p.detach() - b).abs().max()) for p, b in zip(trainer.policy.parameters(), before))
    ok &= check("weights changed", moved > 0, f"sum of max |dw| {moved:.2e}")

    model, tok = load_causal_lm(model_dir, device=device)
    prompts = ["sort: dcba\n", "reverse: abcdefg\n", "count a: banana\n"]
    ids = [tok(p)["input_ids"] for p in prompts]
    ro = sample(model, ids, max_new_tokens=16, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, temperature=0)
    batch = tok(prompts, return_tensors="pt", padding=True).to(device)
    plain = model.generate(
        **batch, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id
    )[:, batch["input_ids"].shape[1] :].cpu()
    ours = [ro.completion_ids[i, : int(ro.completion_mask[i].sum())].tolist() for i in range(len(prompts))]
    ok &= check(
        f"greedy rollout == HF generate on {device}", all(o == plain[i, : len(o)].tolist() for i, o in enumerate(ours))
    )
    seeded = [
        sample(
            model,
            ids * 4,
            max_new_tokens=16,
            eos_id=tok.eos_token_id,
            pad_id=tok.pad_token_id,
            temperature=1.0,
            generator=torch.Generator(device=device).manual_seed(0),
            static_cache=static,
        )
        for static in (True, False)
    ]
    ok &= check(
        f"static-cache rollout == the model's own cache on {device} (seeded sampling)",
        torch.equal(seeded[0].completion_ids, seeded[1].completion_ids),
        f"max |logprob difference| {float((seeded[0].logprobs - seeded[1].logprobs).abs().max()):.1e}",
    )

    ok &= check_graphs(model, tok, device)
    ok &= check_half_billion(device)

    if importlib.util.find_spec("vllm") is None:
        print("SKIP  vLLM rollout: vllm is not installed")
    else:
        from vllm import LLM, SamplingParams

        llm = LLM(model=model_dir, dtype="float32", gpu_memory_utilization=0.2, enforce_eager=True)
        outs = llm.generate(
            [{"prompt_token_ids": i} for i in ids], SamplingParams(temperature=0, max_tokens=16, logprobs=0)
        )
        theirs = [list(o.outputs[0].token_ids) for o in outs]
        agree = sum(t[: len(o)] == o[: len(t)] for t, o in zip(theirs, ours))
        ok &= check("vLLM greedy rollout == ours", agree == len(prompts), f"{agree}/{len(prompts)} prompts agree")
    return 0 if ok else 1


def check_graphs(model, tok, device: str) -> bool:
    """CUDA-graph decode == eager fixed-shape decode (same seed); one capture per bucket."""
    from spectrum_rl.trainer.decoder import CAPTURES
    from spectrum_rl.trainer.rollout import sample

    ids = [tok(p)["input_ids"] for p in ["sort: dcba\n", "reverse: abcdefg\n", "count a: banana\n"]] * 8  # 24 rows

    def roll(rows, graphs: bool, bf16: bool):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16 and device == "cuda"):
            return sample(
                model,
                rows,
                max_new_tokens=24,
                eos_id=tok.eos_token_id,
                pad_id=tok.pad_token_id,
                temperature=1.0,
                generator=torch.Generator(device=device).manual_seed(0),
                static_cache=True,
                graphs=graphs,
            )

    before = dict(CAPTURES)
    graphed, eager = roll(ids, True, False), roll(ids, False, False)
    ok = check(
        f"CUDA-graph decode == eager static decode on {device} (fp32, seeded)",
        torch.equal(graphed.completion_ids, eager.completion_ids),
        f"max |logprob difference| {float((graphed.logprobs - eager.logprobs).abs().max()):.1e}; "
        f"{CAPTURES['graphs'] - before['graphs']} capture(s), {CAPTURES['seconds'] - before['seconds']:.2f} s",
    )
    captured = CAPTURES["graphs"]
    roll(ids[:20], True, False)  # 20 rows: the same 32-row bucket
    ok &= check("another batch size in the same bucket captures nothing new", CAPTURES["graphs"] == captured)
    half = [roll(ids, g, True) for g in (True, False)]
    same = float((half[0].completion_ids == half[1].completion_ids).float().mean())
    print(f"INFO  bf16: {same:.1%} of sampled tokens equal between CUDA-graph and eager decode", flush=True)
    return ok


def half_billion_model() -> Path:
    """A Qwen2.5-0.5B-shaped Llama (358M, random init, byte tokenizer) saved to a temporary folder."""
    from transformers import LlamaForCausalLM

    from spectrum_rl.models import byte_tokenizer, tiny_config

    folder = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    shape = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14)
    LlamaForCausalLM(tiny_config(**shape, num_key_value_heads=2, max_position_embeddings=1024)).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


def two_step_config(model: Path | str, overrides: dict | None = None):
    """2 training steps of 8 prompts x 8 samples, 128 new tokens, on sorting; output in a temporary folder."""
    from spectrum_rl.config import Config

    return Config.model_validate(
        {
            "run": {"output_dir": tempfile.mkdtemp()},
            "model": {"name_or_path": str(model)},
            "domains": [
                {
                    "name": "sorting",
                    "kind": "structured",
                    "source": {"type": "builtin", "generator": "sorting"},
                    "reward": [{"type": "exact_match"}],
                    "eval": {"size": 8},
                }
            ],
            "training": {
                "steps": 2,
                "prompts_per_step": 8,
                "group_size": 8,
                "max_new_tokens": 128,
                "static_cache": True,
                **(overrides or {}),
            },
            "eval": {"kl_to_base": False},
            "logging": {"progress": False},
        }
    )


def check_half_billion(device: str) -> bool:
    """Two training steps of the 0.5B-class shape: static cache, CUDA graphs, checkpointing (auto)."""
    if device != "cuda":
        print("SKIP  0.5B-class training steps: CUDA only")
        return True
    from spectrum_rl.domains import build_domains
    from spectrum_rl.trainer.loop import Trainer

    config = two_step_config(half_billion_model())
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(config, build_domains(config, Path.cwd()), config.output_path)
    t0 = time.perf_counter()
    metrics = [trainer.train_step() for _ in range(2)]
    torch.cuda.synchronize()
    return check(
        "0.5B-class steps (static cache, CUDA graphs, checkpointing auto)",
        trainer.state.activation_checkpointing
        and all(torch.isfinite(torch.tensor(float(m["grad_norm"]))) for m in metrics),
        f"{(time.perf_counter() - t0) / 2:.1f} s/step, micro-batch caps {trainer.learner.budget.limits}, "
        f"graph capture {metrics[0].get('time/graph_capture', 0):.2f} s, "
        f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB",
    )


def check_fsdp(device: str) -> int:
    """Under ``accelerate launch --config_file configs/accelerate/fsdp.yaml`` (sharding: auto): the
    built-in model and the 0.5B-class model train sharded (FSDP2 units on every decoder layer),
    with a checkpoint and a final/ that loads as a whole Hugging Face model."""
    from torch.distributed.fsdp import FSDPModule
    from transformers import AutoModelForCausalLM

    from spectrum_rl.bootstrap import ensure_builtin
    from spectrum_rl.domains import build_domains
    from spectrum_rl.trainer.loop import Trainer

    ok = True
    configs = {"built-in tiny": two_step_config(ensure_builtin("tiny"), {"save_every": 1})}
    if device == "cuda":
        configs["0.5B-class"] = two_step_config(half_billion_model(), {"save_every": 1})
    for name, config in configs.items():
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(config, build_domains(config, Path.cwd()), config.output_path)
        t0 = time.perf_counter()
        scores = trainer.train()
        seconds = (time.perf_counter() - t0) / config.training.steps
        units = sum(isinstance(m, FSDPModule) for m in trainer.state.model.modules())
        metrics = [json.loads(line) for line in (config.output_path / "metrics.jsonl").read_text().splitlines()]
        final = AutoModelForCausalLM.from_pretrained(config.output_path / "final")
        peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
        ok &= check(
            f"FSDP under accelerate launch: {name} on {device}",
            trainer.state.sharded
            and units == trainer.policy.config.num_hidden_layers + 1
            and all(m["nonfinite_skipped"] == 0 for m in metrics)
            and final.num_parameters() == trainer.policy.num_parameters(),
            f"{units} FSDP units, {seconds:.1f} s/step (eval and saving included), held-out {scores}{peak}",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
