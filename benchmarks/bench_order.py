"""Time the exact best training order (subset DP) on random 16-domain instances.

    python benchmarks/bench_order.py [--json] [--domains 16] [--runs 5]

Prints the median wall time of ``best_order`` over ``--runs`` random instances without
prerequisites, the time of one instance with a few prerequisites, and whether both are under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from spectrum_rl.scheduler.order import best_order


def instance(domains: int, seed: int, prerequisites: bool):
    """Random transfer matrix and kinds; with ``prerequisites``, a short chain and a fan-in."""
    rng = np.random.default_rng(seed)
    names = [f"d{i}" for i in range(domains)]
    T = rng.normal(0.0, 0.1, (domains, domains))
    kinds = {n: ("structured" if rng.random() < 0.5 else "creative") for n in names}
    prereqs = {"d1": ["d0"], "d2": ["d1"], "d5": ["d3", "d4"]} if prerequisites else {}
    return names, T, kinds, prereqs


def timed(domains: int, seed: int, prerequisites: bool) -> float:
    names, T, kinds, prereqs = instance(domains, seed, prerequisites)
    start = time.perf_counter()
    result = best_order(names, T, kinds, prereqs, forward_weight=0.5, exact_limit=domains)
    elapsed = time.perf_counter() - start
    assert result.exact
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    median_s = statistics.median(timed(args.domains, seed, False) for seed in range(args.runs))
    prerequisites_s = timed(args.domains, args.runs, True)
    under_1s = median_s < 1.0 and prerequisites_s < 1.0
    if args.json:
        print(
            json.dumps(
                {
                    "domains": args.domains,
                    "median_s": round(median_s, 4),
                    "prerequisites_s": round(prerequisites_s, 4),
                    "under_1s": under_1s,
                }
            )
        )
    else:
        print(
            f"best_order, {args.domains} domains (exact): median {median_s:.3f} s over {args.runs} runs, "
            f"{prerequisites_s:.3f} s with prerequisites; under 1 s: {under_1s}"
        )


if __name__ == "__main__":
    main()
