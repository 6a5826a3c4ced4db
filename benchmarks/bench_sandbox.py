"""Per-sample cost of the code sandbox and its judge: this tree against an earlier revision,
measured side by side in one run.

The earlier ``spectrum_rl`` package is read from git (``--baseline-rev``; benchmarks/README.md
names the revision each record was measured against) into a temporary folder and its ``run_tests``
imported from there, so both run on this
machine, in this process, on the same completions and tests (the ``add`` row of
configs/data/python_functions.jsonl): a correct solution, a wrong one, and one that does not load.
Each sample is one ``run_tests`` call (one sandbox start, the code, three tests); runs alternate
old/new to share the machine's state.

    python benchmarks/bench_sandbox.py --baseline-rev REV   # --runs N, --json
"""

from __future__ import annotations

import argparse
import functools
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

from spectrum_rl.rewards import cgroup  # noqa: E402
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
    parser.add_argument("--baseline-rev", required=True, help="git revision of the old sandbox and judge")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        old = load_baseline(args.baseline_rev, Path(folder))
        sides = {"old": old, "new": run_tests}
        if cgroup.layout() is not None:  # the opt-in memory cgroup, where this machine allows one
            sides["new, memory_cgroup"] = functools.partial(run_tests, memory_cgroup=True)
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
    median = {s: {c: round(1000 * statistics.median(t), 2) for c, t in d.items()} for s, d in times.items()}
    ratio = {s: {c: round(median[s][c] / median["old"][c], 3) for c in CODES} for s in sides if s != "old"}
    report = {
        "runs": args.runs,
        "baseline_rev": args.baseline_rev,
        "median_ms": median,
        "passed": passed,
        "ratio_over_old": ratio,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"per-sample wall time, median of {args.runs} (one sandbox start, the code, {len(TESTS)} tests);")
    print(f"old = {args.baseline_rev}, new = this tree:")
    for case in CODES:
        cells = [f"{s} {median[s][case]:6.1f} ms" for s in sides]
        ratios = [f"{s}/old {report['ratio_over_old'][s][case]:.2f}" for s in sides if s != "old"]
        print(f"  {case:13s} " + "   ".join(cells + ratios) + f"   (passed: {[passed[s][case] for s in sides]})")


if __name__ == "__main__":
    main()
