"""Per-sample cost of the code sandbox: the OS-isolated sandbox (bubblewrap + the trusted judge)
against the audit-hook sandbox it replaced (issue 22), measured side by side in one run.

The old implementation is read from git (``--baseline-rev``, default the last commit before the
change) into a temporary folder and imported from there, so both run on this machine, in this
process, on the same completions and tests (the ``add`` row of configs/data/python_functions.jsonl):
a correct solution, a wrong one, and one that does not load. Each sample is one ``run_tests`` call
(one sandbox start, the code, three tests); runs alternate old/new to share the machine's state.

    python benchmarks/bench_sandbox.py            # --runs N, --baseline-rev REV, --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
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
    """The old ``run_tests`` (sandbox.py + _sandbox_runner.py at ``rev``) as a module."""
    package = folder / "spectrum_rl" / "rewards"
    package.mkdir(parents=True)
    for init in (folder / "spectrum_rl" / "__init__.py", package / "__init__.py"):
        init.write_text("")
    for name in ("sandbox.py", "_sandbox_runner.py"):
        source = subprocess.run(
            ["git", "show", f"{rev}:spectrum_rl/rewards/{name}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        (package / name).write_text(source)
    saved = {k: v for k, v in sys.modules.items() if k == "spectrum_rl" or k.startswith("spectrum_rl.")}
    for key in saved:
        del sys.modules[key]
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location("baseline_sandbox", package / "sandbox.py")
        module = sys.modules["baseline_sandbox"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
        for key in [k for k in sys.modules if k == "spectrum_rl" or k.startswith("spectrum_rl.")]:
            del sys.modules[key]
        sys.modules.update(saved)
    return module.run_tests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="samples per completion and sandbox (default 40)")
    parser.add_argument("--baseline-rev", default="c0c571a", help="git revision of the old sandbox")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        old = load_baseline(args.baseline_rev, Path(folder))
        sides = {"audit hook (old)": old, "OS sandbox + judge (new)": run_tests}
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
