"""The rules of claims C4 and C5 (docs/design.md; what counts as evidence is in ``claims/__init__.py``).

Both read entropy slopes, at SLOPE_DECIMALS; a slope of 0 has no sign.

C4 slopes: per domain under rl_only, the t-interval over seeds of the per-seed entropy slope.
A domain is counted when its rollout groups had RL signal (mean blind fraction < C4_MAX_BLIND)
and its interval rests on >= MIN_SEEDS seeds and excludes 0. More than half of the counted
domains with their kind's sign (structured < 0, creative > 0) supports, more than half with the
other sign refutes. Ranking: structured_first - joint (family, after adjustment) above 0
supports, below 0 refutes. Supported when both parts support, not supported when either refutes.

C5 per staged seed, RL phase: execution-entropy slope over its first half, planning-entropy
slope over its second half. A seed supports when both have the predicted sign (exec < 0,
plan > 0) and contradicts when either has the reversed sign. Under independent random signs a
seed supports with probability 1/4 and contradicts with 3/4, so the test is a one-sided
binomial against those: supported when P(X >= supporting | n, 1/4) < ALPHA, not supported when
P(X >= contradicting | n, 3/4) < ALPHA (reachable only from 11 counted seeds: 0.75^10 > 0.05).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import binomtest

from spectrum_rl.analysis.stats import t_interval
from spectrum_rl.scheduler.signals import slope
from spectrum_rl.study.claims.verdicts import (
    ALPHA,
    INCONCLUSIVE,
    MIN_SEEDS,
    NOT_SUPPORTED,
    SUPPORTED,
    adjusted_side,
    adjusted_sign,
    claim,
    family_entry,
    fmt_adjusted,
    missing_arms,
    number,
    too_few_seeds,
)

# C4: a domain whose rollout groups were all-zero (blind: no RL signal) in >= 90% of cases was not
# shaped by RL; its entropy trend says nothing about what RL does to its kind.
C4_MAX_BLIND = 0.9
SLOPE_DECIMALS = 6  # slopes are read at this precision (a flat series fits a slope of ~1e-17)


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


def _domain_slopes(seeds: list[dict], d: str) -> list[float]:
    """Per seed with >= 2 entropy points for ``d``: its entropy slope, read at SLOPE_DECIMALS."""
    out = []
    for s in seeds:
        series = (s.get("entropy") or {}).get(d)
        values = [number(v) for v in series[1]] if series else []
        values = [v for v in values if math.isfinite(v)]
        if len(values) >= 2:
            out.append(round(slope(values), SLOPE_DECIMALS))
    return out


def _blind_fraction(seeds: list[dict], d: str) -> float | None:
    """Mean over steps and seeds of the fraction of ``d``'s rollout groups that were all 0."""
    values = [number(v) for s in seeds for v in ((s.get("blind") or {}).get(d) or ([], []))[1]]
    values = [v for v in values if math.isfinite(v)]
    return round(float(np.mean(values)), 4) if values else None


def judge_c4(runs: dict[str, list[dict]], kinds: dict[str, str], family: dict[str, Any]) -> dict[str, Any]:
    """C4 from the rl_only entropy slopes per domain and the family's structured_first - joint."""
    rule = (
        f"slopes: under rl_only, per domain, the 95% t-interval over seeds of the per-seed entropy slope; a domain is "
        f"counted when its RL groups had signal (mean over steps and seeds of its blind fraction, the share of "
        f"rollout groups whose rewards were all 0, < {C4_MAX_BLIND}), its interval rests on >= {MIN_SEEDS} seeds "
        f"and excludes 0 (its sign is the interval's side). More than half of the counted domains with their kind's "
        f"sign (structured < 0, creative > 0) supports, more than half with the other sign refutes, else (a tie, "
        f"none counted) undecided. Ranking: structured_first - joint final held-out mean (paired by seed, from the "
        f"study's family) above 0 after Holm adjustment supports, below 0 refutes. Supported when both support, not "
        f"supported when either refutes, else inconclusive; at least {MIN_SEEDS} seeds per arm"
    )
    if reason := missing_arms(["rl_only", "structured_first", "joint"], runs):
        return claim(INCONCLUSIVE, rule, reason)
    slopes, blind, status = {}, {}, {}
    matches = mismatches = 0
    for d, kind in kinds.items():
        per_seed = _domain_slopes(runs["rl_only"], d)
        iv = t_interval(per_seed) if per_seed else None
        slopes[d] = None if iv is None else iv.to_dict(SLOPE_DECIMALS)
        blind[d] = b = _blind_fraction(runs["rl_only"], d)
        why = []
        if b is None:
            why.append("no record of blind groups")
        elif b >= C4_MAX_BLIND:
            why.append(f"blind {b} >= {C4_MAX_BLIND}: no RL signal")
        if iv is None:
            why.append("no entropy series")
        elif iv.n < MIN_SEEDS:
            why.append(f"slope over only {iv.n} seeds")
        elif not (iv.above(0) or iv.below(0)):
            why.append("slope interval contains 0")
        if why:
            status[d] = "not counted: " + "; ".join(why)
            continue
        side = 1 if iv.above(0) else -1
        match = (side < 0) == (kind == "structured")
        matches, mismatches = matches + match, mismatches + (not match)
        status[d] = f"counted ({kind}): slope {'above' if side > 0 else 'below'} 0, {'matches' if match else 'opposes'}"
    counted = matches + mismatches
    numbers: dict[str, Any] = {
        "entropy_slope_rl_only": slopes,
        "blind_fraction_rl_only": blind,
        "domains": status,
        "slopes_matching_kind": f"{matches}/{counted}",
    }
    counts = {a: len(runs[a]) for a in ("rl_only", "structured_first", "joint")}
    if reason := too_few_seeds(counts):
        return claim(INCONCLUSIVE, rule, reason, **numbers, structured_first_minus_joint=None)

    entry = family_entry(family, "structured_first - joint")
    numbers["structured_first_minus_joint"] = entry
    slope_part = SUPPORTED if matches > counted / 2 else NOT_SUPPORTED if mismatches > counted / 2 else INCONCLUSIVE
    if entry is None:
        diff_part, diff_said = INCONCLUSIVE, "the family of comparisons has no structured_first - joint"
    else:
        sign = adjusted_sign(entry)
        diff_part = SUPPORTED if sign > 0 else NOT_SUPPORTED if sign < 0 else INCONCLUSIVE
        diff_said = f"{fmt_adjusted('structured_first - joint', entry)}: {adjusted_side(entry)}"
    reason = (
        f"entropy slopes: {matches} of {counted} counted domains match their kind, {mismatches} do not "
        f"({slope_part}); {diff_said} ({diff_part})"
    )
    return claim(_combine([slope_part, diff_part]), rule, reason, **numbers)


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


def judge_c5(runs: dict[str, list[dict]]) -> dict[str, Any]:
    """C5 from the token-class entropy slopes in the RL phase of each staged seed."""
    rule = (
        "in the RL phase of each staged seed (from the first step with mu = 0), the slope of execution-token "
        "entropy over its first half and of planning-token entropy over its second half. A seed supports when "
        "both have the predicted sign (execution < 0, planning > 0) and contradicts when either has the reversed "
        "sign (execution > 0 or planning < 0); a slope of 0 is neither. Counted seeds: those with both token "
        "classes and >= 4 RL-phase points each. With independent random signs a seed supports with probability "
        "1/4 and contradicts with 3/4, so: supported when the one-sided binomial P(X >= supporting | n, 1/4) < "
        f"{ALPHA}, not supported when P(X >= contradicting | n, 3/4) < {ALPHA} (possible only from 11 counted "
        f"seeds), else inconclusive; at least {MIN_SEEDS} counted seeds"
    )
    if not runs.get("staged"):
        return claim(INCONCLUSIVE, rule, "arm staged was not run", seeds_with_token_classes=0)
    results = [r for r in map(_c5_slopes, runs["staged"]) if r is not None]
    support = sum(_sign(e) < 0 and _sign(p) > 0 for e, p in results)
    contradict = sum(_sign(e) > 0 or _sign(p) < 0 for e, p in results)
    n = len(results)
    numbers: dict[str, Any] = {
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
        return claim(INCONCLUSIVE, rule, reason, **numbers, p_support=None, p_contradict=None)
    p_support = binomtest(support, n, 0.25, alternative="greater").pvalue
    p_contradict = binomtest(contradict, n, 0.75, alternative="greater").pvalue
    numbers |= {"p_support": round(float(p_support), 4), "p_contradict": round(float(p_contradict), 4)}
    said = (
        f"{support} of {n} counted seeds support (P(X >= {support} | {n}, 1/4) = {p_support:.4f}), {contradict} "
        f"contradict (P(X >= {contradict} | {n}, 3/4) = {p_contradict:.4f})"
    )
    verdict = SUPPORTED if p_support < ALPHA else NOT_SUPPORTED if p_contradict < ALPHA else INCONCLUSIVE
    return claim(verdict, rule, said if verdict != INCONCLUSIVE else f"{said}: neither below {ALPHA}", **numbers)
