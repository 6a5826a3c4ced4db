"""The rule of claim C3 (docs/design.md; what counts as evidence is in ``claims/__init__.py``).

C3 supported: the rl_only unchanged fraction (bf16, tol 1e-5) has its mean in SPARSITY_BAND and
its interval overlapping it; rl_only - sft_only unchanged fraction (paired t-interval) is above
0; the rl_only mean rank ratio is >= MIN_RANK_RATIO; the chance-corrected overlap kappa over the
disjoint seed pairs (0,1), (2,3), ... has its t-interval's lower bound >= MIN_KAPPA over at
least MIN_SEEDS pairs. Not supported: the rl_only interval lies entirely outside the band, or
rl_only - sft_only is below 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spectrum_rl.analysis.stats import Interval, paired_diff, t_interval
from spectrum_rl.study.claims.verdicts import (
    INCONCLUSIVE,
    MIN_SEEDS,
    NOT_SUPPORTED,
    SUPPORTED,
    claim,
    missing_arms,
    number,
    too_few_seeds,
)

SPARSITY_BAND = (0.70, 0.95)  # C3: unchanged fraction of RL updates reported by arXiv:2505.11711
MIN_RANK_RATIO = 0.9  # C3: "nearly full rank"
# C3: seed overlap beyond chance. kappa = (overlap - chance) / (1 - chance): 0 is what independent
# masks give (chance = changed fraction), 1 is identical masks. 0.1 asks that the overlap go at
# least a tenth of the way from chance to identical.
MIN_KAPPA = 0.1


def _fmt(iv: Interval | dict, signed: bool = True) -> str:
    """``+0.210 [+0.185, +0.235], n=3`` (``n=1, no interval`` when there is none); ``signed``
    for a difference."""
    if isinstance(iv, Interval):
        iv = iv.to_dict()
    f = "{:+.3f}" if signed else "{:.3f}"
    mean = "nan" if iv["mean"] is None else f.format(iv["mean"])
    if iv.get("ci_low") is None or iv.get("ci_high") is None:
        return f"{mean}, n={iv.get('n')}, no interval"
    return f"{mean} [{f.format(iv['ci_low'])}, {f.format(iv['ci_high'])}], n={iv.get('n')}"


def _unchanged(s: dict) -> float | None:
    return (s.get("sparsity") or {}).get("unchanged_fraction")


def _pair_kappas(seeds: list[dict], overlaps: list) -> tuple[list[float | None], list[float | None]]:
    """Per disjoint seed pair j (seeds 2j, 2j+1): chance = 1 - mean unchanged fraction of the two,
    kappa = (overlap_j - chance) / (1 - chance); None where a number is missing."""
    chances, kappas = [], []
    for j, ov in enumerate(overlaps):
        u = [number(_unchanged(s)) for s in seeds[2 * j : 2 * j + 2]]
        ov = number(ov)
        if len(u) < 2 or not all(math.isfinite(v) for v in [*u, ov]) or np.mean(u) <= 0:
            chances.append(None)
            kappas.append(None)
            continue
        chance = 1 - float(np.mean(u))
        chances.append(round(chance, 4))
        kappas.append(round((ov - chance) / (1 - chance), 4))
    return chances, kappas


def judge_c3(runs: dict[str, list[dict]], arms: dict[str, dict], overlap: dict[str, list[float]]) -> dict[str, Any]:
    """C3 from the rl_only and sft_only update sparsity and the rl_only seed-pair overlaps."""
    lo_band, hi_band = SPARSITY_BAND
    rule = (
        f"bf16 update sparsity (tol 1e-5): supported when the rl_only unchanged fraction has its mean in "
        f"[{lo_band}, {hi_band}] and its 95% t-interval overlapping that band, rl_only - sft_only unchanged "
        f"fraction (paired by seed) has its interval above 0, the rl_only mean rank ratio is >= {MIN_RANK_RATIO}, "
        f"and the changed-entry overlap beats chance: per disjoint seed pair j (seeds 2j, 2j+1), kappa_j = "
        f"(overlap_j - chance_j) / (1 - chance_j) with chance_j = 1 - the pair's mean unchanged fraction, and the "
        f"95% t-interval over pairs has its lower bound >= {MIN_KAPPA} with at least {MIN_SEEDS} pairs; not "
        f"supported when the rl_only interval lies entirely outside the band or rl_only - sft_only is below 0 "
        f"(rl_only denser); else inconclusive; at least {MIN_SEEDS} seeds per arm"
    )
    if reason := missing_arms(["rl_only", "sft_only"], runs, arms):
        return claim(INCONCLUSIVE, rule, reason)
    rl_u, sft_u = arms["rl_only"]["sparsity_unchanged"], arms["sft_only"]["sparsity_unchanged"]
    rank = arms["rl_only"].get("rank_ratio") or {}
    as_list = lambda v: [] if v is None else [v] if isinstance(v, (int, float)) else list(v)  # noqa: E731
    ov = as_list(overlap.get("rl_only"))
    chances, kappas = _pair_kappas(runs["rl_only"], ov)
    defined = [k for k in kappas if k is not None]
    kappa_iv = t_interval(defined, method="Student t over disjoint seed pairs") if defined else None
    mean = rl_u.get("mean")
    numbers: dict[str, Any] = {
        "rl_unchanged": rl_u,
        "sft_unchanged": sft_u,
        "band": list(SPARSITY_BAND),
        "rl_rank_ratio": rank,
        "rl_seed_overlap": ov,
        "sft_seed_overlap": as_list(overlap.get("sft_only")),
        "overlap_chance": chances,
        "overlap_kappa": kappas,
        "overlap_kappa_interval": None if kappa_iv is None else kappa_iv.to_dict(),
    }
    if reason := too_few_seeds({"rl_only": len(runs["rl_only"]), "sft_only": len(runs["sft_only"])}):
        return claim(INCONCLUSIVE, rule, reason, **numbers, rl_minus_sft_unchanged=None)

    diff = paired_diff(*_common(runs, "rl_only", "sft_only", _unchanged))
    numbers["rl_minus_sft_unchanged"] = diff.to_dict()
    lo, hi = rl_u.get("ci_low"), rl_u.get("ci_high")
    rl_said, diff_said = (
        f"rl_only unchanged = {_fmt(rl_u, signed=False)}",
        f"rl_only - sft_only unchanged = {_fmt(diff)}",
    )
    if lo is not None and hi is not None and (hi < lo_band or lo > hi_band):
        return claim(NOT_SUPPORTED, rule, f"{rl_said} lies entirely outside [{lo_band}, {hi_band}]", **numbers)
    if diff.below(0):
        return claim(NOT_SUPPORTED, rule, f"{diff_said} lies below 0: rl_only is denser than sft_only", **numbers)
    overlaps_band = lo is not None and hi is not None and lo <= hi_band and hi >= lo_band
    in_band = overlaps_band and mean is not None and lo_band <= mean <= hi_band
    rank_mean = rank.get("mean")
    n_pairs = len(defined)
    if kappa_iv is None:
        kappa_said = f"seed-pair kappa: no pair with overlap and sparsity (overlaps {ov})"
    else:
        kappa_said = f"seed-pair kappa = {_fmt(kappa_iv)} pairs"
    kappa_ok = kappa_iv is not None and n_pairs >= MIN_SEEDS and kappa_iv.defined and kappa_iv.lo >= MIN_KAPPA
    if kappa_iv is not None and n_pairs < MIN_SEEDS:
        kappa_said += f": only {n_pairs} pair{'' if n_pairs == 1 else 's'}"
    parts = {  # each part: what was measured (what it needs) -> met?
        f"{rl_said} (needs its mean in [{lo_band}, {hi_band}])": in_band,
        f"{diff_said} (needs above 0)": diff.above(0),
        f"rank ratio {rank_mean} (needs >= {MIN_RANK_RATIO})": rank_mean is not None and rank_mean >= MIN_RANK_RATIO,
        f"{kappa_said} (needs >= {MIN_SEEDS} pairs and lower bound >= {MIN_KAPPA})": kappa_ok,
    }
    if all(parts.values()):
        return claim(SUPPORTED, rule, "all met: " + "; ".join(parts), **numbers)
    return claim(INCONCLUSIVE, rule, "not met: " + "; ".join(p for p, ok in parts.items() if not ok), **numbers)


def _common(runs: dict, a: str, b: str, value) -> tuple[list[float], list[float]]:
    """``value`` of arms a and b over the seeds both ran (NaN where missing)."""
    k = min(len(runs[a]), len(runs[b]))
    return [number(value(s)) for s in runs[a][:k]], [number(value(s)) for s in runs[b][:k]]
