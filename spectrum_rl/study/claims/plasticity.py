"""The rule of claim C2 (docs/design.md; what counts as evidence is in ``claims/__init__.py``).

C2 (the unit is the arm: runs are clustered in arms). Between arms: Spearman rho over the arm
means of (final KL to base, plasticity AUC), arms except ``joint`` (a copy of rl_only), each
with >= MIN_SEEDS runs having both numbers, permutation p. Within arms: the mean of the per-arm
Spearman rhos (arms with >= MIN_SEEDS such runs), p by a stratified permutation test (AUC
permuted within each arm). Plasticity AUC is the held-out domain's mean gain over its start
during the probe (negative: it degraded), so "more plastic" is "degrades less". Supported:
between rho < 0 with p < ALPHA over >= C2_MIN_ARMS arms and the within mean rho <= 0. Not
supported: between rho > 0 with p < ALPHA, or |between rho| < C2_WEAK_RHO over >= C2_MANY_ARMS
arms, in both cases with the within mean rho not significantly negative. When between and
within have opposite signs (a Simpson's pattern) and either is significant: inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from spectrum_rl.analysis.stats import spearman, spearman_permutation_p
from spectrum_rl.study.claims.verdicts import ALPHA, INCONCLUSIVE, MIN_SEEDS, NOT_SUPPORTED, SUPPORTED, claim, number

C2_MIN_ARMS = 6  # C2: fewer arms give no verdict (at 6 arms a perfect rank order has p ~ 0.003)
# C2: a correlation below Cohen's "medium" size (|rho| < 0.3) over many arms (>= 10) is not the
# clear negative correlation the claim predicts.
C2_WEAK_RHO, C2_MANY_ARMS = 0.3, 10
N_PERM = 10000  # C2: permutations of the within-arm test


def _round(x: float, digits: int = 4) -> float | None:
    """JSON-safe: None for NaN/inf."""
    return round(x, digits) if math.isfinite(x) else None


def _rank_rhos(x: np.ndarray, ry_perms: np.ndarray) -> np.ndarray:
    """Pearson correlation of ranks ``x`` (already ranked) with each row of ``ry_perms``."""
    xc = x - x.mean()
    yc = ry_perms - ry_perms.mean(axis=1, keepdims=True)
    return (yc @ xc) / (np.sqrt((yc**2).sum(axis=1)) * np.sqrt((xc**2).sum()))


def _defined_groups(groups: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The groups' finite (x, y) pairs, only groups with a defined Spearman rho."""
    out = []
    for x, y in groups:
        xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if not math.isnan(spearman(xs[ok], ys[ok])):
            out.append((xs[ok], ys[ok]))
    return out


def mean_within_spearman(groups: Sequence[tuple[Sequence[float], Sequence[float]]]) -> float:
    """Mean over groups of each group's Spearman rho (groups where rho is undefined left out;
    NaN when none is left)."""
    rhos = [spearman(x, y) for x, y in _defined_groups(groups)]
    return float(np.mean(rhos)) if rhos else math.nan


def stratified_spearman_permutation_p(
    groups: Sequence[tuple[Sequence[float], Sequence[float]]], n_perm: int = N_PERM, seed: int = 0
) -> float:
    """Two-sided stratified permutation p-value of ``mean_within_spearman(groups)``: y is permuted
    among the members of each group independently (never across groups), so the null keeps every
    group's own values and asks only whether x and y go together inside groups. The observed
    pairing counts as one permutation: ``(1 + #{|mean rho_perm| >= |mean rho|}) / (1 + n_perm)``.
    NaN when no group has a defined rho."""
    kept = _defined_groups(groups)
    if not kept:
        return math.nan
    rng = np.random.default_rng(seed)
    observed = float(np.mean([spearman(x, y) for x, y in kept]))
    null = np.zeros(n_perm)
    for x, y in kept:
        rx, ry = rankdata(x), rankdata(y)
        null += _rank_rhos(rx, ry[np.argsort(rng.random((n_perm, ry.size)), axis=1)])
    null /= len(kept)
    hits = int(np.sum(np.abs(null) >= abs(observed) - 1e-12))
    return (1 + hits) / (1 + n_perm)


def _kl_auc(s: dict) -> tuple[float, float]:
    """(last KL to base, plasticity AUC) of a run; NaN where missing."""
    kl = s.get("kl_to_base") or {}
    return number(list(kl.values())[-1]) if kl else math.nan, number((s.get("plasticity") or {}).get("auc"))


def judge_c2(runs: dict[str, list[dict]]) -> dict[str, Any]:
    """C2 from each run's final KL to base and plasticity AUC, between and within arms."""
    rule = (
        f"the unit is the arm (runs are clustered in arms). Plasticity AUC is the held-out domain's mean gain over "
        f"its start during the probe, so a negative AUC means it degraded and 'more plastic' means 'degrades less'. "
        f"Between arms: Spearman rho over the arm means of (final KL to base, plasticity AUC), arms except joint "
        f"(a copy of rl_only) with >= {MIN_SEEDS} runs having both, two-sided permutation p. Within arms: the mean "
        f"of the per-arm Spearman rhos (arms with >= {MIN_SEEDS} such runs), two-sided stratified permutation p "
        f"(AUC permuted within each arm, {N_PERM} permutations). Supported when the between rho < 0 with "
        f"p < {ALPHA} over >= {C2_MIN_ARMS} arms and the within mean rho is not positive; not supported when the "
        f"between rho > 0 with p < {ALPHA}, or |between rho| < {C2_WEAK_RHO} over >= {C2_MANY_ARMS} arms, with the "
        f"within mean rho not significantly negative; when the two have opposite signs (a Simpson's pattern) and "
        f"either is significant, inconclusive; else inconclusive; no verdict below {C2_MIN_ARMS} arms"
    )
    per_arm: dict[str, tuple[list[float], list[float]]] = {}
    for arm, seeds in runs.items():
        if arm == "joint":
            continue
        pairs = [p for p in map(_kl_auc, seeds) if math.isfinite(p[0]) and math.isfinite(p[1])]
        if len(pairs) >= MIN_SEEDS:
            per_arm[arm] = ([p[0] for p in pairs], [p[1] for p in pairs])
    left_out = sorted(a for a in runs if a != "joint" and a not in per_arm)
    n_arms = len(per_arm)
    mx = [float(np.mean(kl)) for kl, _ in per_arm.values()]
    my = [float(np.mean(auc)) for _, auc in per_arm.values()]
    between = spearman(mx, my) if n_arms >= 3 else math.nan
    enough = n_arms >= C2_MIN_ARMS
    p_between = spearman_permutation_p(mx, my) if enough and math.isfinite(between) else math.nan
    groups = list(per_arm.values())
    within = mean_within_spearman(groups)
    p_within = stratified_spearman_permutation_p(groups) if enough and math.isfinite(within) else math.nan
    numbers = {
        "between_arm_rho": _round(between, 3),
        "between_arm_p": _round(p_between),
        "arms": n_arms,
        "within_arm_mean_rho": _round(within, 3),
        "within_arm_p": _round(p_within),
        "within_arms": len(_defined_groups(groups)),
        "runs": sum(len(kl) for kl, _ in groups),
        "arms_left_out": left_out,
    }
    if not enough:
        reason = (
            f"only {n_arms} arm{'' if n_arms == 1 else 's'} with >= {MIN_SEEDS} runs having KL and plasticity; "
            f"at least {C2_MIN_ARMS} are needed"
        )
        if left_out:
            reason += f" (left out: {', '.join(left_out)}; at least {MIN_SEEDS} seeds per arm are needed)"
        return claim(INCONCLUSIVE, rule, reason, **numbers)
    if all(auc == 0 for _, aucs in groups for auc in aucs):  # validity gate: the probe must move something
        reason = (
            "not measurable here: the plasticity probe moved the held-out domain in no run (AUC 0 in all "
            f"{numbers['runs']}); it needs a probe domain or budget that learns"
        )
        return claim(INCONCLUSIVE, rule, reason, **numbers)
    if math.isnan(between):
        return claim(INCONCLUSIVE, rule, f"between-arm rho is undefined over {n_arms} arms (constant)", **numbers)

    sig_b, sig_w = p_between < ALPHA, p_within < ALPHA  # False for NaN
    said = f"between arms rho = {between:+.3f} (p = {p_between:.4f}, {n_arms} arms)"
    said += (
        f", within arms mean rho = {within:+.3f} (p = {p_within:.4f}, {numbers['within_arms']} arms)"
        if math.isfinite(within)
        else ", within-arm rho undefined"
    )
    simpson = math.isfinite(within) and between * within < 0
    if simpson:
        said += "; Simpson's pattern: the between-arm association differs in sign from the within-arm one"
        if sig_b or sig_w:
            return claim(INCONCLUSIVE, rule, f"{said}, and one of them is significant", **numbers)
    within_neg_sig = math.isfinite(within) and within < 0 and sig_w
    if between < 0 and sig_b and math.isfinite(within) and within <= 0:
        return claim(SUPPORTED, rule, f"{said}: arms that drift less stay more plastic", **numbers)
    if between > 0 and sig_b and not within_neg_sig:
        return claim(NOT_SUPPORTED, rule, f"{said}: arms that drift more stay more plastic", **numbers)
    if abs(between) < C2_WEAK_RHO and n_arms >= C2_MANY_ARMS and not within_neg_sig:
        reason = f"{said}: |rho| < {C2_WEAK_RHO} over >= {C2_MANY_ARMS} arms"
        return claim(NOT_SUPPORTED, rule, reason, **numbers)
    if between < 0 and sig_b:
        return claim(INCONCLUSIVE, rule, f"{said}: the within-arm association is undefined", **numbers)
    return claim(INCONCLUSIVE, rule, f"{said}: no decisive branch at {ALPHA}", **numbers)
