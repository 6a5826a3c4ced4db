"""Verdicts on the five claims of docs/design.md, each by a written rule over the study's numbers.

Each claim returns ``verdict`` ("supported", "not supported" or "inconclusive"), ``rule`` (the
rule in words), ``reason`` (which branch fired, on what numbers) and the numbers themselves.
Every rule can reach all three verdicts.

Evidence. Arms run with seeds 0..n-1 and ``runs[arm][k]`` is seed k. Two arms are compared
*paired by seed*, over the seeds both ran (the first min(n_a, n_b)): the 95% Student-t interval
of the per-seed differences (``analysis/stats.py``), reported with its n. "Above 0" means the
whole interval lies above 0. A verdict that rests on seeds needs at least ``MIN_SEEDS`` of them in
every arm it uses; with fewer it is inconclusive ("only n=2 seeds; at least 3 are needed for
evidence"). A missing arm also gives inconclusive. Nothing is corrected for testing five claims.
Slopes are read at 6 decimals (as the arms summary stores them); a slope of 0 has no sign.

The rules (constants below):

- C1 supported: the staged arm shows a disruption in more than half of its seeds AND
  chord_mu - staged (final held-out mean) is above 0. Not supported: that interval is below 0, or
  lies inside +/-EQUIVALENCE_MARGIN (equal in practice; checked before "above 0", so a gain that is
  surely smaller than the margin is not the gain claimed), or no staged seed shows a disruption.
- C2 supported: Spearman rho(final KL to base, plasticity AUC) over all runs (``joint`` left out:
  it is ``rl_only``) is < 0 with permutation p < ALPHA and at least C2_MIN_RUNS runs. Not
  supported: rho > 0 with p < ALPHA, or |rho| < C2_WEAK_RHO over at least C2_MANY_RUNS runs
  (significance is checked first).
- C3 supported: the rl_only unchanged fraction (bf16, tol 1e-5) has its mean in SPARSITY_BAND and
  its interval overlapping it; rl_only - sft_only unchanged fraction is above 0; the rl_only mean
  rank ratio is >= MIN_RANK_RATIO; the chance-corrected seed overlap kappa is >= MIN_KAPPA. Not
  supported: the rl_only interval lies entirely outside the band, or rl_only - sft_only is below 0.
- C4 supported: under rl_only, more than half of the counted domains have the entropy slope of
  their kind (structured < 0, creative > 0; slopes of 0 or missing are not counted) AND
  structured_first - joint (final held-out mean) is above 0. Not supported: that interval is
  below 0, or more than half of the counted domains have the opposite sign.
- C5 per staged seed, RL phase: execution-entropy slope over its first half, planning-entropy
  slope over its second half. A seed supports when both have the predicted sign (exec < 0,
  plan > 0) and contradicts when either has the reversed sign (exec > 0 or plan < 0): the same
  strict test for the claim and for its negation (the claim predicts both signs, so one reversed
  sign already speaks against it; counting only seeds with both reversed would leave a claim that
  is half wrong in every seed inconclusive). Supported: more than half of the counted seeds
  support; not supported: more than half contradict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from spectrum_rl.analysis.stats import Interval, paired_diff, spearman, spearman_permutation_p
from spectrum_rl.scheduler.signals import slope

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

MIN_SEEDS = 3  # seeds per arm below which no verdict rests on seeds (a t-interval at n=2 has 1 df)
# C1: two arms whose difference is surely within 2 points of held-out mean score (scores in [0, 1])
# end equal in practice; one run's held-out mean is noisier than that (eval on ~50 items/domain).
EQUIVALENCE_MARGIN = 0.02
ALPHA = 0.05  # C2: significance level of the permutation test
C2_MIN_RUNS = 6  # C2: fewer runs give no verdict (at 6 runs a perfect rank order has p ~ 0.003)
# C2: a correlation below Cohen's "medium" size (|rho| < 0.3) over many runs (>= 20) is not the
# clear negative correlation the claim predicts.
C2_WEAK_RHO, C2_MANY_RUNS = 0.3, 20
SPARSITY_BAND = (0.70, 0.95)  # C3: unchanged fraction of RL updates reported by arXiv:2505.11711
MIN_RANK_RATIO = 0.9  # C3: "nearly full rank"
# C3: seed overlap beyond chance. kappa = (overlap - chance) / (1 - chance): 0 is what independent
# masks give (chance = changed fraction of the other seed), 1 is identical masks. 0.1 asks that
# the overlap go at least a tenth of the way from chance to identical.
MIN_KAPPA = 0.1
SLOPE_DECIMALS = 6  # slopes are read at this precision (a flat series fits a slope of ~1e-17)


def judge_claims(runs: dict[str, list[dict]], arms: dict[str, dict], overlap: dict[str, float], config) -> dict:
    """Verdicts on C1-C5. ``runs[arm]`` lists the run summaries in seed order, ``arms`` the
    per-arm aggregates (``study._aggregate``), ``overlap`` the seed-0/seed-1 changed-mask overlap
    per arm; ``config.tasks`` gives each domain's kind."""
    kinds = {t.name: t.kind for t in config.tasks}
    return {
        "C1": _c1(runs, arms),
        "C2": _c2(runs),
        "C3": _c3(runs, arms, overlap),
        "C4": _c4(runs, arms, kinds),
        "C5": _c5(runs),
    }


# ---- shared helpers --------------------------------------------------------------------------


def _claim(verdict: str, rule: str, reason: str, **numbers: Any) -> dict[str, Any]:
    return {"verdict": verdict, "rule": rule, "reason": reason, **numbers}


def _missing(needed: list[str], *sources: dict) -> str | None:
    """The reason when an arm a verdict needs is absent from (or empty in) one of ``sources``
    (``runs`` and/or ``arms``); None when all are there."""
    absent = [a for a in needed if not all(src.get(a) for src in sources)]
    return f"arm {', '.join(absent)} was not run" if absent else None


def _too_few(counts: dict[str, int]) -> str | None:
    """The reason when some arm has fewer than MIN_SEEDS seeds (None when all have enough)."""
    n = min(counts.values())
    if n >= MIN_SEEDS:
        return None
    detail = ", ".join(f"{arm} has {c}" for arm, c in counts.items())
    return f"only n={n} seed{'' if n == 1 else 's'}; at least {MIN_SEEDS} are needed for evidence ({detail})"


def _paired(runs: dict, a: str, b: str, value: Callable[[dict], Any] = lambda s: s["final_mean"]) -> Interval:
    """``value`` of arm a minus arm b, paired by seed over the seeds both ran."""
    k = min(len(runs[a]), len(runs[b]))
    as_float = lambda v: math.nan if v is None else float(v)  # noqa: E731
    return paired_diff([as_float(value(s)) for s in runs[a][:k]], [as_float(value(s)) for s in runs[b][:k]])


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


def _side(iv: Interval) -> str:
    """Where the interval lies relative to 0, in words."""
    if not iv.defined:
        return "has no interval"
    return "lies above 0" if iv.above(0) else "lies below 0" if iv.below(0) else "contains 0"


def _sign(x: float | None) -> int:
    """Sign of a slope read at SLOPE_DECIMALS; 0 for a flat, missing or NaN slope."""
    if x is None or not math.isfinite(x):
        return 0
    return int(np.sign(round(x, SLOPE_DECIMALS)))


def _combine(parts: list[str]) -> str:
    """A conjunction of parts: not supported if any part is, supported if all are."""
    if NOT_SUPPORTED in parts:
        return NOT_SUPPORTED
    return SUPPORTED if all(p == SUPPORTED for p in parts) else INCONCLUSIVE


# ---- C1 --------------------------------------------------------------------------------------


def _c1(runs, arms) -> dict[str, Any]:
    rule = (
        f"supported when the staged arm shows a disruption (held-out mean below its start by the margin) in more "
        f"than half of its seeds AND chord_mu - staged final held-out mean, paired by seed, has its 95% t-interval "
        f"above 0; not supported when that interval is below 0, or lies within +/-{EQUIVALENCE_MARGIN} of 0 "
        f"(equal in practice; checked first), or no staged seed shows a disruption; else inconclusive; "
        f"at least {MIN_SEEDS} seeds per arm"
    )
    if reason := _missing(["staged", "chord_mu"], runs) or _missing(["staged"], arms):
        return _claim(INCONCLUSIVE, rule, reason)
    disrupted = [bool((p.get("mean") or {}).get("disruption")) for p in arms["staged"].get("phases", [])]
    d, n = sum(disrupted), len(disrupted)
    numbers: dict[str, Any] = {"staged_disruption_seeds": f"{d}/{n}"}
    if reason := _too_few({"staged": min(n, len(runs["staged"])), "chord_mu": len(runs["chord_mu"])}):
        return _claim(INCONCLUSIVE, rule, reason, **numbers, chord_mu_minus_staged=None)

    diff = _paired(runs, "chord_mu", "staged")
    numbers |= {"chord_mu_minus_staged": diff.to_dict(), "equivalence_margin": EQUIVALENCE_MARGIN}
    said = f"chord_mu - staged = {_fmt(diff)}"
    m = EQUIVALENCE_MARGIN
    if diff.below(0):
        return _claim(NOT_SUPPORTED, rule, f"{said} lies below 0: chord_mu ends lower", **numbers)
    if diff.defined and -m <= diff.lo and diff.hi <= m:
        return _claim(NOT_SUPPORTED, rule, f"{said} lies within +/-{m} of 0: the two end equal in practice", **numbers)
    if d == 0:
        return _claim(NOT_SUPPORTED, rule, f"no staged seed (0/{n}) shows a disruption", **numbers)
    if d > n / 2 and diff.above(0):
        return _claim(SUPPORTED, rule, f"staged disrupted in {d}/{n} seeds and {said} lies above 0", **numbers)
    why = [f"{said} {_side(diff)}"] if not diff.above(0) else []
    why += [f"staged disrupted in only {d}/{n} seeds (more than half needed)"] if d <= n / 2 else []
    return _claim(INCONCLUSIVE, rule, "; ".join(why), **numbers)


# ---- C2 --------------------------------------------------------------------------------------


def _c2(runs) -> dict[str, Any]:
    rule = (
        f"Spearman rho between each run's final KL to the base model and its plasticity (AUC of the held-out "
        f"domain's learning curve), over all runs except joint (a copy of rl_only), with a two-sided permutation "
        f"p-value: supported when rho < 0 and p < {ALPHA} with at least {C2_MIN_RUNS} runs; not supported when "
        f"rho > 0 and p < {ALPHA}, or |rho| < {C2_WEAK_RHO} with at least {C2_MANY_RUNS} runs; else inconclusive; "
        f"at least {MIN_SEEDS} seeds per arm"
    )
    kl, auc = [], []
    for arm, seeds in runs.items():
        if arm == "joint":
            continue
        for s in seeds:
            if s.get("kl_to_base"):
                kl.append(list(s["kl_to_base"].values())[-1])
                auc.append((s.get("plasticity") or {}).get("auc"))
    x, y = np.asarray(kl, dtype=float), np.asarray(auc, dtype=float)
    n = int(np.sum(np.isfinite(x) & np.isfinite(y)))
    rho = spearman(x, y) if n >= 3 else math.nan
    p = spearman_permutation_p(x, y) if not math.isnan(rho) else math.nan
    numbers = {
        "spearman_kl_vs_plasticity": None if math.isnan(rho) else round(rho, 3),
        "p_value": None if math.isnan(p) else round(p, 4),
        "runs": n,
    }
    said = f"rho = {rho:+.3f}, p = {p:.4f} over {n} runs"
    few = _too_few({arm: len(seeds) for arm, seeds in runs.items() if arm != "joint"}) if runs else None
    if few:
        return _claim(INCONCLUSIVE, rule, few, **numbers)
    if n < C2_MIN_RUNS:
        reason = f"only {n} runs with KL and plasticity; at least {C2_MIN_RUNS} are needed"
        return _claim(INCONCLUSIVE, rule, reason, **numbers)
    if math.isnan(rho):
        return _claim(INCONCLUSIVE, rule, f"rho is undefined over {n} runs (one of the two is constant)", **numbers)
    if rho < 0 and p < ALPHA:
        return _claim(SUPPORTED, rule, f"{said}: less drift, more plasticity", **numbers)
    if rho > 0 and p < ALPHA:
        return _claim(NOT_SUPPORTED, rule, f"{said}: more drift, more plasticity", **numbers)
    if abs(rho) < C2_WEAK_RHO and n >= C2_MANY_RUNS:
        return _claim(NOT_SUPPORTED, rule, f"{said}: |rho| < {C2_WEAK_RHO} over >= {C2_MANY_RUNS} runs", **numbers)
    return _claim(INCONCLUSIVE, rule, f"{said}: not significant at {ALPHA}", **numbers)


# ---- C3 --------------------------------------------------------------------------------------


def _unchanged(s: dict) -> float | None:
    return (s.get("sparsity") or {}).get("unchanged_fraction")


def _c3(runs, arms, overlap) -> dict[str, Any]:
    lo_band, hi_band = SPARSITY_BAND
    rule = (
        f"bf16 update sparsity (tol 1e-5): supported when the rl_only unchanged fraction has its mean in "
        f"[{lo_band}, {hi_band}] and its 95% t-interval overlapping that band, rl_only - sft_only unchanged "
        f"fraction (paired by seed) has its interval above 0, the rl_only mean rank ratio is >= {MIN_RANK_RATIO}, "
        f"and the seed-0/seed-1 overlap of changed entries beats chance by kappa = (overlap - chance) / "
        f"(1 - chance) >= {MIN_KAPPA} (chance = changed fraction = 1 - mean unchanged); not supported when the "
        f"rl_only interval lies entirely outside the band or rl_only - sft_only is below 0 (rl_only denser); "
        f"else inconclusive; at least {MIN_SEEDS} seeds per arm"
    )
    if reason := _missing(["rl_only", "sft_only"], runs, arms):
        return _claim(INCONCLUSIVE, rule, reason)
    rl_u, sft_u = arms["rl_only"]["sparsity_unchanged"], arms["sft_only"]["sparsity_unchanged"]
    rank = arms["rl_only"].get("rank_ratio") or {}
    ov = overlap.get("rl_only")
    mean = rl_u.get("mean")
    chance = None if mean is None else 1 - mean
    kappa = None if ov is None or chance is None or chance >= 1 else (ov - chance) / (1 - chance)
    numbers: dict[str, Any] = {
        "rl_unchanged": rl_u,
        "sft_unchanged": sft_u,
        "band": list(SPARSITY_BAND),
        "rl_rank_ratio": rank,
        "rl_seed_overlap": ov,
        "sft_seed_overlap": overlap.get("sft_only"),
        "overlap_chance": None if chance is None else round(chance, 4),
        "overlap_kappa": None if kappa is None else round(kappa, 4),
    }
    if reason := _too_few({"rl_only": len(runs["rl_only"]), "sft_only": len(runs["sft_only"])}):
        return _claim(INCONCLUSIVE, rule, reason, **numbers, rl_minus_sft_unchanged=None)

    diff = _paired(runs, "rl_only", "sft_only", _unchanged)
    numbers["rl_minus_sft_unchanged"] = diff.to_dict()
    lo, hi = rl_u.get("ci_low"), rl_u.get("ci_high")
    rl_said, diff_said = (
        f"rl_only unchanged = {_fmt(rl_u, signed=False)}",
        f"rl_only - sft_only unchanged = {_fmt(diff)}",
    )
    if lo is not None and hi is not None and (hi < lo_band or lo > hi_band):
        return _claim(NOT_SUPPORTED, rule, f"{rl_said} lies entirely outside [{lo_band}, {hi_band}]", **numbers)
    if diff.below(0):
        return _claim(NOT_SUPPORTED, rule, f"{diff_said} lies below 0: rl_only is denser than sft_only", **numbers)
    overlaps_band = lo is not None and hi is not None and lo <= hi_band and hi >= lo_band
    in_band = overlaps_band and mean is not None and lo_band <= mean <= hi_band
    rank_mean = rank.get("mean")
    kappa_said = f"overlap {ov} vs chance {numbers['overlap_chance']}: kappa {numbers['overlap_kappa']}"
    parts = {  # each part: what was measured (what it needs) -> met?
        f"{rl_said} (needs its mean in [{lo_band}, {hi_band}])": in_band,
        f"{diff_said} (needs above 0)": diff.above(0),
        f"rank ratio {rank_mean} (needs >= {MIN_RANK_RATIO})": rank_mean is not None and rank_mean >= MIN_RANK_RATIO,
        f"{kappa_said} (needs >= {MIN_KAPPA})": kappa is not None and kappa >= MIN_KAPPA,
    }
    if all(parts.values()):
        return _claim(SUPPORTED, rule, "all met: " + "; ".join(parts), **numbers)
    return _claim(INCONCLUSIVE, rule, "not met: " + "; ".join(p for p, ok in parts.items() if not ok), **numbers)


# ---- C4 --------------------------------------------------------------------------------------


def _c4(runs, arms, kinds) -> dict[str, Any]:
    rule = (
        "under rl_only, each domain's mean entropy slope should have its kind's sign (structured < 0, creative > 0); "
        "domains with a slope of 0 or none are not counted. Supported when more than half of the counted domains "
        "match AND structured_first - joint final held-out mean, paired by seed, has its 95% t-interval above 0; "
        "not supported when that interval is below 0 or more than half of the counted domains have the opposite "
        f"sign; else inconclusive (a tie or no counted domain decides nothing); at least {MIN_SEEDS} seeds per arm"
    )
    if reason := _missing(["rl_only", "structured_first", "joint"], runs) or _missing(["rl_only"], arms):
        return _claim(INCONCLUSIVE, rule, reason)
    slopes = arms["rl_only"].get("entropy_slope", {})
    signs = {d: _sign(s) for d, s in slopes.items() if d in kinds}
    counted = {d: sg for d, sg in signs.items() if sg != 0}
    matches = sum((sg < 0) == (kinds[d] == "structured") for d, sg in counted.items())
    mismatches = len(counted) - matches
    numbers: dict[str, Any] = {
        "entropy_slope_rl_only": {d: s if s is not None and math.isfinite(s) else None for d, s in slopes.items()},
        "slopes_matching_kind": f"{matches}/{len(counted)}",
        "domains_not_counted": sorted(set(signs) - set(counted)),
    }
    counts = {a: len(runs[a]) for a in ("rl_only", "structured_first", "joint")}
    if reason := _too_few(counts):
        return _claim(INCONCLUSIVE, rule, reason, **numbers, structured_first_minus_joint=None)

    diff = _paired(runs, "structured_first", "joint")
    numbers["structured_first_minus_joint"] = diff.to_dict()
    slope_part = (
        SUPPORTED if matches > len(counted) / 2 else NOT_SUPPORTED if mismatches > len(counted) / 2 else INCONCLUSIVE
    )
    diff_part = SUPPORTED if diff.above(0) else NOT_SUPPORTED if diff.below(0) else INCONCLUSIVE
    reason = (
        f"entropy slopes: {matches} of {len(counted)} counted domains match their kind, {mismatches} do not "
        f"({slope_part}); structured_first - joint = {_fmt(diff)} {_side(diff)} ({diff_part})"
    )
    return _claim(_combine([slope_part, diff_part]), rule, reason, **numbers)


# ---- C5 --------------------------------------------------------------------------------------


def _c5_slopes(s: dict) -> tuple[float, float] | None:
    """(execution slope over the first half, planning slope over the second half) of the RL phase
    (from the first step with mu = 0); None without both token classes or with < 4 points each."""
    classes = s.get("entropy_class") or {}
    if "planning" not in classes or "execution" not in classes:
        return None
    mu_steps, mu = s["mu"]
    rl_start = next((st for st, m in zip(mu_steps, mu) if m == 0.0), None)
    if rl_start is None:
        return None
    ex = [v for st, v in zip(*classes["execution"]) if st >= rl_start]
    pl = [v for st, v in zip(*classes["planning"]) if st >= rl_start]
    if len(ex) < 4 or len(pl) < 4:
        return None
    return slope(ex[: len(ex) // 2]), slope(pl[len(pl) // 2 :])


def _c5(runs) -> dict[str, Any]:
    rule = (
        "in the RL phase of each staged seed (from the first step with mu = 0), the slope of execution-token "
        "entropy over its first half and of planning-token entropy over its second half. A seed supports when "
        "both have the predicted sign (execution < 0, planning > 0) and contradicts when either has the reversed "
        "sign (execution > 0 or planning < 0); a slope of 0 is neither. Counted seeds: those with both token "
        "classes and >= 4 RL-phase points each. Supported when more than half of the counted seeds support, not "
        f"supported when more than half contradict, else inconclusive; at least {MIN_SEEDS} counted seeds"
    )
    if not runs.get("staged"):
        return _claim(INCONCLUSIVE, rule, "arm staged was not run", seeds_with_token_classes=0)
    results = [r for r in map(_c5_slopes, runs["staged"]) if r is not None]
    support = sum(_sign(e) < 0 and _sign(p) > 0 for e, p in results)
    contradict = sum(_sign(e) > 0 or _sign(p) < 0 for e, p in results)
    n = len(results)
    numbers = {
        "seeds_with_token_classes": n,
        "seeds_supporting": support,
        "seeds_contradicting": contradict,
        "execution_slope_first_half": [round(e, SLOPE_DECIMALS) for e, _ in results],
        "planning_slope_second_half": [round(p, SLOPE_DECIMALS) for _, p in results],
    }
    if n < MIN_SEEDS:
        reason = (
            f"only n={n} seed{'' if n == 1 else 's'} with planning and execution tokens (of "
            f"{len(runs['staged'])} staged seeds); at least {MIN_SEEDS} are needed for evidence"
        )
        return _claim(INCONCLUSIVE, rule, reason, **numbers)
    said = f"{support} of {n} counted seeds support, {contradict} contradict"
    verdict = SUPPORTED if support > n / 2 else NOT_SUPPORTED if contradict > n / 2 else INCONCLUSIVE
    return _claim(verdict, rule, said, **numbers)
