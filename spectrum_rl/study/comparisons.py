"""The study's family of paired comparisons: which pairs of arms are compared, each pair's paired
test over seeds (t, or exact sign-flip where n is small or the differences discrete), and Holm's
correction over the family with Bonferroni intervals (the
statistics are in ``analysis/stats.py``). The claims C1 and C4 and the curriculum goal read their
verdicts from this family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from spectrum_rl.analysis.stats import PAIRED_INTERVAL, holm, paired_diff, paired_test, t_interval
from spectrum_rl.study.arms import BASELINE_ARMS, SPECTRUM_VS


def eval_auc(run: dict[str, Any]) -> float:
    """Area under the held-out mean's curve divided by the steps it spans (trapezoids): the mean
    score over the run, so an arm that gets there sooner scores higher at the same final score."""
    steps, values = run["eval_mean"]
    if len(steps) < 2:
        return float(values[-1])
    area = sum((a + b) / 2 * (t1 - t0) for a, b, t0, t1 in zip(values, values[1:], steps, steps[1:]))
    return float(area / (steps[-1] - steps[0]))


def family_pairs(arms: Sequence[str]) -> list[tuple[str, str]]:
    """The study's family of paired comparisons (a, b) meaning a - b: every arm that ran against
    ``joint`` (rl_only is joint's run), ``adaptive`` against every baseline curriculum that ran,
    ``spectrum`` against the blends it competes with, against ``adaptive_mu`` (the same
    adaptive mu under the joint mixture: the mixture policy's own effect) and against
    ``adaptive`` (the same policy without SFT: mu's own effect), and ``chord_mu`` against
    ``staged`` (claim C1)."""
    ran = set(arms)
    pairs = [(a, "joint") for a in arms if a not in ("joint", "rl_only")] if "joint" in ran else []
    pairs += [("adaptive", b) for b in BASELINE_ARMS]
    pairs += [("spectrum", b) for b in SPECTRUM_VS if b != "joint"]
    pairs += [("spectrum", "adaptive")]  # the same scheduler with and without its mu: what SFT adds
    pairs += [("chord_mu", "staged")]
    return [(a, b) for a, b in dict.fromkeys(pairs) if a in ran and b in ran]


def _tested(a: list[float], b: list[float]) -> dict[str, Any]:
    p, test = paired_test(a, b)
    out = {**paired_diff(a, b).to_dict(), "method": f"{PAIRED_INTERVAL}; {test}"}
    out["p"] = None if np.isnan(p) else round(p, 6)
    return out


def _adjust(entries: list[dict[str, Any]], diffs: list[list[float]], alpha: float) -> None:
    """Holm-adjust the entries' p-values as one family, in place; add the Bonferroni interval
    (confidence 1 - alpha/m) and whether 0 is excluded after adjustment."""
    adjusted = holm([np.nan if e["p"] is None else e["p"] for e in entries])
    m = sum(e["p"] is not None for e in entries)
    level = 1 - alpha / max(m, 1)
    for e, d, p in zip(entries, diffs, adjusted):
        iv = t_interval(d, level, PAIRED_INTERVAL) if np.all(np.isfinite(d)) else None
        e["p_holm"] = None if np.isnan(p) else round(p, 6)
        e["adjusted"] = {
            "ci_low": None if iv is None or not iv.defined else round(iv.lo, 4),
            "ci_high": None if iv is None or not iv.defined else round(iv.hi, 4),
            "confidence": round(level, 6),
            "method": f"Bonferroni interval over the family of {m}",
        }
        e["excludes_0"] = e["p_holm"] is not None and e["p_holm"] < alpha


def _alone(entry: dict[str, Any], d: np.ndarray, alpha: float) -> None:
    """The pre-registered comparison, in place: tested alone (no correction), its 95% interval, and
    the smallest difference it could detect with 80% power at this n and the observed spread
    (``(t_{1-alpha/2} + t_{0.8}) s / sqrt(n)``, df n - 1) beside the exact test's smallest p."""
    n = len(d)
    sd = float(np.std(d, ddof=1)) if n > 1 else float("nan")
    mde = (student_t.ppf(1 - alpha / 2, n - 1) + student_t.ppf(0.8, n - 1)) * sd / math.sqrt(n) if n > 1 else None
    entry["p_holm"] = entry["p"]
    entry["adjusted"] = {
        "ci_low": entry["ci_low"],
        "ci_high": entry["ci_high"],
        "confidence": 0.95,
        "method": "the pre-registered comparison, tested alone",
    }
    entry["excludes_0"] = entry["p"] is not None and entry["p"] < alpha
    entry["role"] = "primary"
    entry["power"] = {
        "detectable_at_80pct": None if mde is None or not math.isfinite(mde) else round(float(mde), 4),
        "sd_of_differences": None if not math.isfinite(sd) else round(sd, 4),
        "smallest_p": round(2 / 2**n, 6),
        "rule": "(t(1 - alpha/2) + t(0.8)) * sd / sqrt(n), df n - 1; an exact sign-flip test's smallest p is 2 / 2^n",
    }


def compare_family(
    runs: dict[str, list[dict[str, Any]]],
    pairs: Sequence[tuple[str, str]],
    alpha: float = 0.05,
    primary: str | None = None,
) -> dict[str, Any]:
    """Every pair's a - b, paired by seed over the seeds both ran: the final held-out mean (one
    family, Holm-corrected over its pairs) and each domain's final score (another family,
    Holm-corrected over every pair x domain). Each entry: the 95% interval with n and method, the
    raw two-sided p, the Holm p, the Bonferroni interval, and ``excludes_0`` (after adjustment).
    ``primary`` (``"a - b"``, pre-registered): its final mean is tested alone at ``alpha``, outside
    the family, and reported with the smallest effect its n could detect."""
    out: dict[str, Any] = {}
    primary_entry = None
    means, means_d, secondary, secondary_d, areas, areas_d = [], [], [], [], [], []
    for a_arm, b_arm in pairs:
        n = min(len(runs[a_arm]), len(runs[b_arm]))
        a, b = runs[a_arm][:n], runs[b_arm][:n]  # seeds 0..n-1 of both, in order
        x, y = [s["final_mean"] for s in a], [s["final_mean"] for s in b]
        entry = {"final_mean": _tested(x, y), "final": {}}
        if f"{a_arm} - {b_arm}" == primary:
            primary_entry = entry["final_mean"]
            _alone(primary_entry, np.subtract(x, y), alpha)
        else:
            means.append(entry["final_mean"])
            means_d.append(np.subtract(x, y))
        if all("eval_mean" in s for s in a + b):  # runs kept before curves were stored have no area
            x, y = [eval_auc(s) for s in a], [eval_auc(s) for s in b]
            entry["auc"] = _tested(x, y)
            areas.append(entry["auc"])
            areas_d.append(np.subtract(x, y))
        for d in a[0]["final"]:
            x, y = [s["final"][d] for s in a], [s["final"][d] for s in b]
            entry["final"][d] = _tested(x, y)
            secondary.append(entry["final"][d])
            secondary_d.append(np.subtract(x, y))
        out[f"{a_arm} - {b_arm}"] = entry
    _adjust(means, means_d, alpha)
    _adjust(secondary, secondary_d, alpha)
    _adjust(areas, areas_d, alpha)
    return {
        "primary": None if primary_entry is None else {"comparison": primary, **primary_entry},
        "alpha": alpha,
        "method": "paired t-test per pair (seeds as the unit; the exact sign-flip test below 6 seeds or for "
        "discrete differences), Holm over the family; Bonferroni t intervals (none where every per-seed "
        "difference is equal); the "
        "final mean, each domain's final score and the area under the eval curve are three families",
        "family_size": len(means),
        "domain_family_size": len(secondary),
        "comparisons": out,
    }
