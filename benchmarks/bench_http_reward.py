"""Share of a training step spent on an `http` reward whose server takes 50 ms per request, with
concurrent requests (`concurrency: 8`, the default) against one at a time (`concurrency: 1`),
measured side by side in one run.

Both sides: one `sorting` domain scored by exact match plus the http component, 8 prompts x 8
completions per step, one request per group (`batch: group`), RL only, the same seed; a loopback
server (127.0.0.1, a thread of this process) that sleeps ``--delay`` seconds per request and scores
each completion by its length. The reward share is the step's `time/reward` over the sum of its
`time/*` parts, median over ``--steps`` steps after one warm-up.

A step waits for its rewards before its update (on-policy), so the least a remote reward can cost
is one server round trip; its share of a step depends on how long the rest of the step takes. Two
policies are measured: the built-in tiny model (1.8M parameters, a step of about 0.1 s on 2 CPU
cores) and ``small``, a random-init Llama of 8 layers x 512 (27M parameters, the tiny model's
tokenizer) whose step is closer to what a real model costs.

    python benchmarks/bench_http_reward.py        # --models tiny,small --steps N --delay S --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def serve(delay: float) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay)
            data = json.dumps({"scores": [float(len(c)) for c in body["completions"]]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/score"


def small_model(folder: str) -> str:
    """A random-init Llama of 8 layers x 512 with the built-in tiny model's tokenizer, saved in ``folder``."""
    from transformers import AutoModelForCausalLM

    from spectrum_rl.bootstrap import ensure_builtin
    from spectrum_rl.models import load_tokenizer, tiny_config

    ensure_builtin("tiny")
    torch.manual_seed(0)
    shape = tiny_config(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8)
    shape.num_key_value_heads = 8
    AutoModelForCausalLM.from_config(shape).save_pretrained(folder)
    load_tokenizer("builtin:tiny").save_pretrained(folder)
    return folder


def shares(model: str, url: str, concurrency: int, steps: int, out: str) -> dict[str, float]:
    from spectrum_rl.bootstrap import ensure_builtin_models
    from spectrum_rl.config import Config
    from spectrum_rl.domains import build_domains
    from spectrum_rl.trainer.loop import Trainer

    config = Config.model_validate(
        {
            "run": {"name": f"http-c{concurrency}", "output_dir": out, "seed": 0},
            "model": {"name_or_path": model},
            "domains": [
                {
                    "name": "sorting",
                    "kind": "structured",
                    "source": {"type": "builtin", "generator": "sorting"},
                    "eval": {"size": 8},
                    "reward": [{"type": "exact_match"}, {"type": "http", "url": url, "concurrency": concurrency}],
                }
            ],
            "training": {"steps": steps + 1, "prompts_per_step": 8, "group_size": 8, "max_new_tokens": 16},
            "logging": {"progress": False},
        }
    )
    ensure_builtin_models(config)
    trainer = Trainer(config, build_domains(config, Path.cwd()), Path(out))
    trainer.train_step()  # warm-up
    reward, total = [], []
    for _ in range(steps):
        m = trainer.train_step()
        parts = {k: v for k, v in m.items() if k.startswith("time/")}
        reward.append(parts["time/reward"])
        total.append(sum(parts.values()))
    return {
        "step_s": statistics.median(total),
        "reward_s": statistics.median(reward),
        "reward_share": statistics.median(r / t for r, t in zip(reward, total)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,small", help="tiny (built-in) and/or small (random 27M Llama)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    httpd, url = serve(args.delay)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = {}
            for name in args.models.split(","):
                model = "builtin:tiny" if name == "tiny" else small_model(f"{tmp}/small-model")
                for c in (8, 1):
                    result[f"{name}/concurrency_{c}"] = shares(model, url, c, args.steps, f"{tmp}/{name}-c{c}")
    finally:
        httpd.shutdown()
    if args.json:
        print(json.dumps(result))
        return
    print(f"server {args.delay * 1000:.0f} ms per request; 8 groups per step, one request each")
    for name, r in result.items():
        print(
            f"{name}: step {r['step_s'] * 1000:.0f} ms, reward {r['reward_s'] * 1000:.0f} ms = "
            f"{100 * r['reward_share']:.1f}% of the step (target < 20%: {r['reward_share'] < 0.2})"
        )


if __name__ == "__main__":
    main()
