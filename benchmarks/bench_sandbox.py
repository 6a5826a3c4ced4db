"""Per-sample cost of the code sandbox and its judge: this tree against an earlier revision,
measured side by side in one run.

The earlier ``spectrum_rl`` package is read from git (``--baseline-rev``, default the revision
before the hardening of security round 2: a cgroup per run, the judge's collision and deadline
checks) into a temporary folder and its ``run_tests`` imported from there, so both run on this
machine, in this process, on the same completions and tests (the ``add`` row of
configs/data/python_functions.jsonl): a correct solution, a wrong one, and one that does not load.
Each sample is one ``run_tests`` call (one sandbox start, the code, three tests); runs alternate
old/new to share the machine's state.

    python benchmarks/bench_sandbox.py            # --runs N, --baseline-rev REV, --json
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spectrum_rl.rewards.code import run_tests  # noqa: E402

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"]
CODES = {
    "correct": "def add(a, b):\n    return a + b\n",
    "wrong": "def add(a, b):\n    return a - b\n",
    "syntax error": "def add(a, b:\n",
}
LIMITS = {"wall_s": 10.0, "cpu_s": 5.0, "memory_mb": 256}


def load_baseline(rev: str, folder: Path):
    """``run_tests`` of the ``spectrum_rl`` package at ``rev``, imported from ``folder``; the
    package's modules are swapped back out of ``sys.modules`` afterwards (the function keeps its own)."""
    archive = subprocess.run(["git", "archive", rev, "spectrum_rl"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    saved = {k: v for k, v in sys.modules.items() if k == "spectrum_rl" or k.startswith("spectrum_rl.")}
    for key in saved:
        del sys.modules[key]
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("spectrum_rl.rewards.code")
        assert Path(module.__file__).is_relative_to(folder), module.__file__
        return module.run_tests
    finally:
        sys.path.remove(str(folder))
        for key in [k for k in sys.modules if k == "spectrum_rl" or k.startswith("spectrum_rl.")]:
            del sys.modules[key]
        sys.modules.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="samples per completion and sandbox (default 40)")
    parser.add_argument("--baseline-rev", default="3cf00e3", help="git revision of the old sandbox and judge")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        old = load_baseline(args.baseline_rev, Path(folder))
        sides = {f"{args.baseline_rev} (old)": old, "this tree (new)": run_tests}
        for fn in sides.values():  # warm-up: start-up caches, the availability probe
            fn(CODES["correct"], TESTS, **LIMITS)
        times: dict[str, dict[str, list[float]]] = {side: {c: [] for c in CODES} for side in sides}
        passed: dict[str, dict[str, int]] = {side: {} for side in sides}
        for _ in range(args.runs):
            for case, code in CODES.items():
                for side, fn in sides.items():
                    start = time.perf_counter()
                    result = fn(code, TESTS, **LIMITS)
                    times[side][case].append(time.perf_counter() - start)
                    passed[side][case] = result.passed
    report = {
        "runs": args.runs,
        "baseline_rev": args.baseline_rev,
        "median_ms": {s: {c: round(1000 * statistics.median(t), 2) for c, t in d.items()} for s, d in times.items()},
        "passed": passed,
    }
    old_name, new_name = sides
    report["ratio_new_over_old"] = {
        c: round(report["median_ms"][new_name][c] / report["median_ms"][old_name][c], 3) for c in CODES
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"per-sample wall time, median of {args.runs} (one sandbox start, the code, {len(TESTS)} tests):")
    for case in CODES:
        old_ms, new_ms = (report["median_ms"][s][case] for s in sides)
        ratio = report["ratio_new_over_old"][case]
        print(
            f"  {case:13s} old {old_ms:7.1f} ms   new {new_ms:7.1f} ms   new/old {ratio:.2f}"
            f"   (passed: old {passed[old_name][case]}, new {passed[new_name][case]})"
        )


if __name__ == "__main__":
    main()
