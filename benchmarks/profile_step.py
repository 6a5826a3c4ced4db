"""Where a training step's host time goes, and every point where the host waits for the device.

One process builds a trainer on ``configs/quickstart.yaml`` (the built-in tiny model, its four
domains; 16 prompts x 8 completions a step as configured), runs 2 warm-up steps, then:

- **syncs**: counts every call that makes the host wait for a tensor's value (``Tensor.item``,
  ``tolist``, ``cpu``, ``numpy``, and ``float``/``int``/``bool`` of a tensor) over ``--steps``
  steps, by the spectrum_rl function that made it (on a CPU the wait is free, on a GPU each one
  drains the launch queue);
- **profile**: cProfile over the same steps, the functions with the most time of their own.

With ``--baseline-rev REV`` it also times steps of that revision and of this tree side by side
(fresh processes, alternating, the sync counter and the profiler off: ``--time-only``).

    python benchmarks/profile_step.py            # --steps N, --top K, --baseline-rev REV, --json
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


def build_trainer(output: Path):
    import torch

    from spectrum_rl.bootstrap import ensure_builtin_models
    from spectrum_rl.config import load_config, parse_override
    from spectrum_rl.domains import build_domains
    from spectrum_rl.trainer.loop import Trainer

    torch.set_num_threads(2)
    path = ROOT / "configs" / "quickstart.yaml"
    overrides = [parse_override(o) for o in (f"run.output_dir={output}", "training.save_every=0", "eval.every=1000")]
    config = load_config(path, overrides)
    ensure_builtin_models(config)
    return Trainer(config, build_domains(config, path.parent), config.output_path)


def count_syncs(steps, trainer) -> dict[str, float]:
    """Calls per step that wait for a tensor's value, by the spectrum_rl function that made them."""
    import torch

    counts: collections.Counter[str] = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in SYNCS}

    def wrap(name, original):
        def counted(self, *args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None and "spectrum_rl" not in frame.f_code.co_filename:
                frame = frame.f_back
            if frame is not None:
                where = frame.f_code.co_filename.split("spectrum_rl/", 1)[1]
                counts[f"{name:9s} {where}:{frame.f_code.co_name}"] += 1
            return original(self, *args, **kwargs)

        return counted

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        for _ in range(steps):
            trainer.train_step()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return {k: round(v / steps, 1) for k, v in counts.most_common()}


def profile(steps, trainer, top: int) -> list[dict]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        trainer.train_step()
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, name), (_, calls, own, total, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = file.split("site-packages/", 1)[-1].split("spectrum_rl/", 1)[-1]
        row = {"function": f"{short}:{line}({name})", "calls": calls, "own_ms": own * 1000, "total_ms": total * 1000}
        rows.append(row)
    rows.sort(key=lambda r: -r["own_ms"])
    return [{**r, "own_ms": round(r["own_ms"] / steps, 1), "total_ms": round(r["total_ms"] / steps, 1),
             "calls": round(r["calls"] / steps, 1)} for r in rows[:top]]  # fmt: skip


def time_steps(steps: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(Path(folder) / "run")
        for _ in range(2):
            trainer.train_step()
        out = []
        for _ in range(steps):
            start = time.perf_counter()
            trainer.train_step()
            out.append(time.perf_counter() - start)
        return out


def side_by_side(rev: str, steps: int, rounds: int) -> dict:
    """Step seconds of ``rev`` and of this tree, fresh processes alternating."""
    archive = subprocess.run(["git", "archive", rev, "spectrum_rl"], cwd=ROOT, capture_output=True, check=True).stdout
    times: dict[str, list[float]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        for _ in range(rounds):
            for side, path in (("old", folder), ("new", str(ROOT))):
                out = subprocess.run(
                    [sys.executable, __file__, "--time-only", "--steps", str(steps)],
                    env={**os.environ, "PYTHONPATH": path},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                times[side] += json.loads(out.stdout.splitlines()[-1])
    median = {side: statistics.median(t) * 1000 for side, t in times.items()}
    return {"rev": rev, "steps": len(times["new"]), "median_ms": median, "new_over_old": median["new"] / median["old"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--baseline-rev", default=None)
    parser.add_argument("--rounds", type=int, default=3, help="processes per side for --baseline-rev")
    parser.add_argument("--time-only", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.time_only:
        print(json.dumps(time_steps(args.steps)))
        return
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(Path(folder) / "run")
        for _ in range(2):
            trainer.train_step()
        report = {"syncs_per_step": count_syncs(args.steps, trainer), "profile": profile(args.steps, trainer, args.top)}
    if args.baseline_rev:
        report["side_by_side"] = side_by_side(args.baseline_rev, args.steps, args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    syncs = report["syncs_per_step"]
    print(f"host waits for a tensor's value, per step ({sum(syncs.values()):.0f} in all):")
    for where, n in syncs.items():
        print(f"  {n:7.1f}  {where}")
    print(f"\nmost own time per step (cProfile, {args.steps} steps):")
    for r in report["profile"]:
        print(f"  {r['own_ms']:8.1f} ms own {r['total_ms']:8.1f} ms total {r['calls']:9.1f} calls  {r['function']}")
    if "side_by_side" in report:
        s = report["side_by_side"]
        print(
            f"\nstep time, median of {s['steps']} steps each: {s['rev']} {s['median_ms']['old']:.1f} ms, this tree "
            f"{s['median_ms']['new']:.1f} ms (new/old {s['new_over_old']:.2f})"
        )


if __name__ == "__main__":
    main()
