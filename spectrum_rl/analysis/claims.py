"""Verdicts on the five claims of docs/design.md, each by a stated rule over the study's numbers.

A verdict is "supported", "not supported" or "inconclusive" (also when an arm it needs was not
run). Every claim reports the numbers it was decided on and the rule in words.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spectrum_rl.analysis.stats import bootstrap_diff_ci, spearman
from spectrum_rl.scheduler.signals import slope

INCONCLUSIVE = "inconclusive"


def _finals(runs: dict, arm: str) -> list[float]:
    return [s["final_mean"] for s in runs.get(arm, [])]


def _diff(runs: dict, a: str, b: str) -> dict[str, float] | None:
    if not runs.get(a) or not runs.get(b):
        return None
    mean, lo, hi = bootstrap_diff_ci(_finals(runs, a), _finals(runs, b))
    return {"diff": round(mean, 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4)}


def judge_claims(runs: dict[str, list[dict]], arms: dict[str, dict], overlap: dict[str, float], config) -> dict:
    kinds = {t.name: t.kind for t in config.tasks}
    return {
        "C1": _c1(runs, arms),
        "C2": _c2(runs),
        "C3": _c3(arms, overlap),
        "C4": _c4(runs, arms, kinds),
        "C5": _c5(runs),
    }


def _c1(runs, arms) -> dict[str, Any]:
    rule = (
        "supported when the staged arm shows a disruption (held-out mean below its start by the margin) in "
        "most seeds AND chord_mu ends higher than staged (95% bootstrap CI of the difference above 0); "
        "not supported when that CI is below 0 or no seed shows disruption; else inconclusive"
    )
    staged = arms.get("staged")
    disrupted = [bool(p["mean"]["disruption"]) for p in staged["phases"]] if staged else []
    diff = _diff(runs, "chord_mu", "staged")
    if not disrupted or diff is None:
        verdict = INCONCLUSIVE
    elif not any(disrupted) or diff["ci_high"] < 0:
        verdict = "not supported"
    elif sum(disrupted) > len(disrupted) / 2 and diff["ci_low"] > 0:
        verdict = "supported"
    else:
        verdict = INCONCLUSIVE
    return {
        "verdict": verdict,
        "rule": rule,
        "staged_disruption_seeds": f"{sum(disrupted)}/{len(disrupted)}",
        "chord_mu_minus_staged": diff,
    }


def _c2(runs) -> dict[str, Any]:
    rule = (
        "over all runs, Spearman correlation between final KL to the base model and plasticity (AUC of the "
        "held-out domain's learning curve): supported when <= -0.3 with at least 6 runs, not supported when "
        ">= +0.3, else inconclusive"
    )
    pairs = [
        (list(s["kl_to_base"].values())[-1], s["plasticity"]["auc"])
        for arm, seeds in runs.items()
        if arm != "joint"
        for s in seeds
        if s["kl_to_base"]
    ]
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) >= 3 else float("nan")
    if len(pairs) < 6 or np.isnan(rho):
        verdict = INCONCLUSIVE
    else:
        verdict = "supported" if rho <= -0.3 else "not supported" if rho >= 0.3 else INCONCLUSIVE
    return {
        "verdict": verdict,
        "rule": rule,
        "spearman_kl_vs_plasticity": None if np.isnan(rho) else round(rho, 3),
        "runs": len(pairs),
    }


def _c3(arms, overlap) -> dict[str, Any]:
    rule = (
        "bf16 update sparsity (tol 1e-5): supported when rl_only leaves more parameters unchanged than "
        "sft_only (CIs disjoint), its updates are nearly full rank (mean rank ratio >= 0.9) and the changed "
        "sets of two seeds overlap more than chance (overlap > changed fraction); not supported when rl_only "
        "is not sparser than sft_only; else inconclusive"
    )
    rl, sft = arms.get("rl_only"), arms.get("sft_only")
    if rl is None or sft is None:
        return {"verdict": INCONCLUSIVE, "rule": rule}
    rl_u, sft_u = rl["sparsity_unchanged"], sft["sparsity_unchanged"]
    changed = 1 - rl_u["mean"]
    ov = overlap.get("rl_only")
    sparser = rl_u["ci_low"] > sft_u["ci_high"]
    if not rl_u["mean"] > sft_u["mean"]:
        verdict = "not supported"
    elif sparser and rl["rank_ratio"]["mean"] >= 0.9 and ov is not None and ov > changed:
        verdict = "supported"
    else:
        verdict = INCONCLUSIVE
    return {
        "verdict": verdict,
        "rule": rule,
        "rl_unchanged": rl_u,
        "sft_unchanged": sft_u,
        "rl_rank_ratio": rl["rank_ratio"],
        "rl_seed_overlap": ov,
        "sft_seed_overlap": overlap.get("sft_only"),
    }


def _c4(runs, arms, kinds) -> dict[str, Any]:
    rule = (
        "under rl_only, the entropy slope of each domain matches its kind (structured < 0, creative > 0) for "
        "most domains, AND structured_first ends higher than joint (95% CI of the difference above 0): "
        "supported; not supported when that CI is below 0 or most slopes contradict the kinds; else inconclusive"
    )
    rl = arms.get("rl_only")
    if rl is None:
        return {"verdict": INCONCLUSIVE, "rule": rule}
    slopes = rl["entropy_slope"]
    matches = [(s < 0) == (kinds[d] == "structured") for d, s in slopes.items() if d in kinds]
    diff = _diff(runs, "structured_first", "joint")
    most = sum(matches) > len(matches) / 2
    if diff is None:
        verdict = INCONCLUSIVE
    elif diff["ci_high"] < 0 or not most:
        verdict = "not supported"
    elif diff["ci_low"] > 0:
        verdict = "supported"
    else:
        verdict = INCONCLUSIVE
    return {
        "verdict": verdict,
        "rule": rule,
        "entropy_slope_rl_only": slopes,
        "slopes_matching_kind": f"{sum(matches)}/{len(matches)}",
        "structured_first_minus_joint": diff,
    }


def _c5(runs) -> dict[str, Any]:
    rule = (
        "in the RL phase of the staged arm (after SFT taught the plan:/step: format), execution-token entropy "
        "falls over the first half AND planning-token entropy rises over the second half, in most seeds: "
        "supported; both opposite: not supported; no planning/execution tokens or mixed: inconclusive"
    )
    seeds = runs.get("staged", [])
    results = []
    for s in seeds:
        classes = s["entropy_class"]
        if "planning" not in classes or "execution" not in classes:
            continue
        mu_steps, mu = s["mu"]
        rl_start = next((st for st, m in zip(mu_steps, mu) if m == 0.0), None)
        if rl_start is None:
            continue
        ex = [v for st, v in zip(*classes["execution"]) if st >= rl_start]
        pl = [v for st, v in zip(*classes["planning"]) if st >= rl_start]
        if len(ex) < 4 or len(pl) < 4:
            continue
        results.append((slope(ex[: len(ex) // 2]), slope(pl[len(pl) // 2 :])))
    if not results:
        return {"verdict": INCONCLUSIVE, "rule": rule, "seeds_with_token_classes": 0}
    ok = sum(e < 0 and p > 0 for e, p in results)
    opposite = sum(e > 0 and p < 0 for e, p in results)
    verdict = "supported" if ok > len(results) / 2 else "not supported" if opposite > len(results) / 2 else INCONCLUSIVE
    return {
        "verdict": verdict,
        "rule": rule,
        "seeds_with_token_classes": len(results),
        "execution_slope_first_half": [round(e, 5) for e, _ in results],
        "planning_slope_second_half": [round(p, 5) for _, p in results],
    }
