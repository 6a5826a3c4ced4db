"""Verdicts on the five claims of docs/design.md, each by a written rule over the study's numbers.

Each claim returns ``verdict`` ("supported", "not supported" or "inconclusive"), ``rule`` (the
rule in words), ``reason`` (which branch fired, on what numbers) and the numbers themselves.
Every rule can reach all three verdicts.

Evidence. Arms run with seeds 0..n-1 and ``runs[arm][k]`` is seed k. C1 and C4 compare two arms
through the study's family of comparisons (``study.compare_family``): a - b paired by seed over
the seeds both ran, a paired t-test per pair, Holm-adjusted over the family, with a Bonferroni
interval. "Above 0" means 0 is excluded after adjustment (``excludes_0``: Holm p < the family's
alpha) and the mean is positive; "below 0" likewise with a negative mean. A verdict that rests on
seeds needs at least ``MIN_SEEDS`` of them in every arm it uses; with fewer it is inconclusive
("only n=2 seeds; at least 3 are needed for evidence"). C2 leaves out arms with fewer than
MIN_SEEDS runs, C3's kappa needs MIN_SEEDS disjoint seed pairs, C5 MIN_SEEDS counted seeds. A
missing arm also gives inconclusive. Slopes are read at 6 decimals; a slope of 0 has no sign.

Multiple testing. Corrected: the arm comparisons C1 and C4 read are Holm-adjusted within the
study's family (every compared pair of arms). Not corrected: the five claims against each other,
and the tests C2, C3 and C5 run on their own (each at ALPHA). With five claims judged at ALPHA
each, the chance that some verdict rests on a chance result is larger than ALPHA.

The rules (constants below):

- C1 supported: the staged arm shows a disruption in more than half of its seeds AND
  chord_mu - staged (final held-out mean, from the family) is above 0 after adjustment. Not
  supported: it is below 0 after adjustment, or its adjusted interval lies inside
  +/-EQUIVALENCE_MARGIN (equal in practice; checked before "above 0"). Inconclusive otherwise,
  and always when no staged seed shows a disruption: the disruption detector finding none is not
  evidence of none, since its sensitivity on this world has not been shown.
- C2 (the unit is the arm: runs are clustered in arms). Between arms: Spearman rho over the arm
  means of (final KL to base, plasticity AUC), arms except ``joint`` (a copy of rl_only), each
  with >= MIN_SEEDS runs having both numbers, permutation p. Within arms: the mean of the per-arm
  Spearman rhos (arms with >= MIN_SEEDS such runs), p by a stratified permutation test (AUC
  permuted within each arm). Plasticity AUC is the held-out domain's mean gain over its start
  during the probe (negative: it degraded), so "more plastic" is "degrades less". Supported:
  between rho < 0 with p < ALPHA over >= C2_MIN_ARMS arms and the within mean rho <= 0. Not
  supported: between rho > 0 with p < ALPHA, or |between rho| < C2_WEAK_RHO over >= C2_MANY_ARMS
  arms, in both cases with the within mean rho not significantly negative. When between and
  within have opposite signs (a Simpson's pattern) and either is significant: inconclusive.
- C3 supported: the rl_only unchanged fraction (bf16, tol 1e-5) has its mean in SPARSITY_BAND and
  its interval overlapping it; rl_only - sft_only unchanged fraction (paired t-interval) is above
  0; the rl_only mean rank ratio is >= MIN_RANK_RATIO; the chance-corrected overlap kappa over the
  disjoint seed pairs (0,1), (2,3), ... has its t-interval's lower bound >= MIN_KAPPA over at
  least MIN_SEEDS pairs. Not supported: the rl_only interval lies entirely outside the band, or
  rl_only - sft_only is below 0.
- C4 slopes: per domain under rl_only, the t-interval over seeds of the per-seed entropy slope.
  A domain is counted when its rollout groups had RL signal (mean blind fraction < C4_MAX_BLIND)
  and its interval rests on >= MIN_SEEDS seeds and excludes 0. More than half of the counted
  domains with their kind's sign (structured < 0, creative > 0) supports, more than half with the
  other sign refutes. Ranking: structured_first - joint (family, after adjustment) above 0
  supports, below 0 refutes. Supported when both parts support, not supported when either refutes.
- C5 per staged seed, RL phase: execution-entropy slope over its first half, planning-entropy
  slope over its second half. A seed supports when both have the predicted sign (exec < 0,
  plan > 0) and contradicts when either has the reversed sign. Under independent random signs a
  seed supports with probability 1/4 and contradicts with 3/4, so the test is a one-sided
  binomial against those: supported when P(X >= supporting | n, 1/4) < ALPHA, not supported when
  P(X >= contradicting | n, 3/4) < ALPHA (reachable only from 11 counted seeds: 0.75^10 > 0.05).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, rankdata

from spectrum_rl.analysis.stats import Interval, paired_diff, spearman, spearman_permutation_p, t_interval
from spectrum_rl.scheduler.signals import slope

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

MIN_SEEDS = 3  # seeds per arm below which no verdict rests on seeds (a t-interval at n=2 has 1 df)
# C1: two arms whose difference is surely within 2 points of held-out mean score (scores in [0, 1])
# end equal in practice; one run's held-out mean is noisier than that (eval on ~50 items/domain).
EQUIVALENCE_MARGIN = 0.02
ALPHA = 0.05  # C2, C5: significance level of their tests
C2_MIN_ARMS = 6  # C2: fewer arms give no verdict (at 6 arms a perfect rank order has p ~ 0.003)
# C2: a correlation below Cohen's "medium" size (|rho| < 0.3) over many arms (>= 10) is not the
# clear negative correlation the claim predicts.
C2_WEAK_RHO, C2_MANY_ARMS = 0.3, 10
N_PERM = 10000  # C2: permutations of the within-arm test
SPARSITY_BAND = (0.70, 0.95)  # C3: unchanged fraction of RL updates reported by arXiv:2505.11711
MIN_RANK_RATIO = 0.9  # C3: "nearly full rank"
# C3: seed overlap beyond chance. kappa = (overlap - chance) / (1 - chance): 0 is what independent
# masks give (chance = changed fraction), 1 is identical masks. 0.1 asks that the overlap go at
# least a tenth of the way from chance to identical.
MIN_KAPPA = 0.1
# C4: a domain whose rollout groups were all-zero (blind: no RL signal) in >= 90% of cases was not
# shaped by RL; its entropy trend says nothing about what RL does to its kind.
C4_MAX_BLIND = 0.9
SLOPE_DECIMALS = 6  # slopes are read at this precision (a flat series fits a slope of ~1e-17)


def judge_claims(
    runs: dict[str, list[dict]],
    arms: dict[str, dict],
    overlap: dict[str, list[float]],
    kinds: dict[str, str],
    family: dict[str, Any],
) -> dict:
    """Verdicts on C1-C5. ``runs[arm]`` lists the run summaries in seed order, ``arms`` the
    per-arm aggregates (``study._aggregate``), ``overlap[arm]`` the changed-mask overlaps of the
    disjoint seed pairs (0,1), (2,3), ...; ``kinds`` each domain's kind ("structured" or
    "creative"); ``family`` the study's comparisons (``study.compare_family``)."""
    return {
        "C1": _c1(runs, arms, family),
        "C2": _c2(runs),
        "C3": _c3(runs, arms, overlap),
        "C4": _c4(runs, kinds, family),
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


def _num(v: Any) -> float:
    """A float; NaN for None or anything that is not a number."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _round(x: float, digits: int = 4) -> float | None:
    """JSON-safe: None for NaN/inf."""
    return round(x, digits) if math.isfinite(x) else None


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


def _family_entry(family: dict | None, name: str) -> dict | None:
    """The family's final-held-out-mean comparison ``name`` ("a - b"); None when absent."""
    entry = ((family or {}).get("comparisons") or {}).get(name) or {}
    return entry.get("final_mean")


def _adjusted_sign(e: dict) -> int:
    """+1 / -1 when 0 is excluded after adjustment (Holm) and the mean is above / below 0; else 0."""
    mean = e.get("mean")
    if not e.get("excludes_0") or mean is None:
        return 0
    return int(np.sign(mean))


def _fmt_adjusted(name: str, e: dict) -> str:
    """``a - b = +0.110, adjusted interval [+0.05, +0.17] (98.3%), Holm p = 0.012, n=3``."""
    adj = e.get("adjusted") or {}
    mean = "nan" if e.get("mean") is None else f"{e['mean']:+.3f}"
    lo, hi = adj.get("ci_low"), adj.get("ci_high")
    iv = "no adjusted interval" if lo is None or hi is None else f"adjusted interval [{lo:+.3f}, {hi:+.3f}]"
    if adj.get("confidence") is not None and lo is not None and hi is not None:
        iv += f" ({100 * adj['confidence']:.1f}%)"
    p = "none" if e.get("p_holm") is None else f"{e['p_holm']:.4g}"
    return f"{name} = {mean}, {iv}, Holm p = {p}, n={e.get('n')}"


def _adjusted_side(e: dict) -> str:
    s = _adjusted_sign(e)
    return (
        "above 0 after adjustment"
        if s > 0
        else "below 0 after adjustment"
        if s < 0
        else "0 not excluded after adjustment"
    )


# ---- C1 --------------------------------------------------------------------------------------


def _c1(runs, arms, family) -> dict[str, Any]:
    m = EQUIVALENCE_MARGIN
    rule = (
        f"supported when the staged arm shows a disruption (held-out mean below its start by the margin) in more "
        f"than half of its seeds AND chord_mu - staged final held-out mean (paired by seed, from the study's family "
        f"of comparisons) is above 0 after Holm adjustment (0 excluded, mean > 0); not supported when it is below 0 "
        f"after adjustment, or its adjusted (Bonferroni) interval lies within +/-{m} of 0 (equal in practice; "
        f"checked before above 0); inconclusive otherwise, and when no staged seed shows a disruption (the detector "
        f"finding none is not evidence of none: its sensitivity on this world is not shown); at least {MIN_SEEDS} "
        f"seeds per arm"
    )
    if reason := _missing(["staged", "chord_mu"], runs) or _missing(["staged"], arms):
        return _claim(INCONCLUSIVE, rule, reason)
    disrupted = [bool((p.get("mean") or {}).get("disruption")) for p in arms["staged"].get("phases", [])]
    d, n = sum(disrupted), len(disrupted)
    numbers: dict[str, Any] = {"staged_disruption_seeds": f"{d}/{n}"}
    if reason := _too_few({"staged": min(n, len(runs["staged"])), "chord_mu": len(runs["chord_mu"])}):
        return _claim(INCONCLUSIVE, rule, reason, **numbers, chord_mu_minus_staged=None)
    entry = _family_entry(family, "chord_mu - staged")
    numbers |= {"chord_mu_minus_staged": entry, "equivalence_margin": m}
    if entry is None:
        return _claim(INCONCLUSIVE, rule, "the family of comparisons has no chord_mu - staged", **numbers)

    said = _fmt_adjusted("chord_mu - staged", entry)
    sign = _adjusted_sign(entry)
    adj = entry.get("adjusted") or {}
    lo, hi = adj.get("ci_low"), adj.get("ci_high")
    if sign < 0:
        return _claim(NOT_SUPPORTED, rule, f"{said}: below 0 after adjustment, chord_mu ends lower", **numbers)
    if lo is not None and hi is not None and -m <= lo and hi <= m:
        return _claim(
            NOT_SUPPORTED,
            rule,
            f"{said}: the adjusted interval lies within +/-{m} of 0, the two end equal in practice",
            **numbers,
        )
    if d == 0:
        reason = (
            f"no staged seed (0/{n}) shows a disruption; the detector finding none is not evidence of none, as its "
            f"sensitivity on this world is not shown ({said}: {_adjusted_side(entry)})"
        )
        return _claim(INCONCLUSIVE, rule, reason, **numbers)
    if d > n / 2 and sign > 0:
        return _claim(
            SUPPORTED, rule, f"staged disrupted in {d}/{n} seeds; {said}: above 0 after adjustment", **numbers
        )
    why = [f"{said}: {_adjusted_side(entry)}"] if sign <= 0 else []
    why += [f"staged disrupted in only {d}/{n} seeds (more than half needed)"] if d <= n / 2 else []
    return _claim(INCONCLUSIVE, rule, "; ".join(why), **numbers)


# ---- C2 --------------------------------------------------------------------------------------


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
    return _num(list(kl.values())[-1]) if kl else math.nan, _num((s.get("plasticity") or {}).get("auc"))


def _c2(runs) -> dict[str, Any]:
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
        return _claim(INCONCLUSIVE, rule, reason, **numbers)
    if math.isnan(between):
        return _claim(INCONCLUSIVE, rule, f"between-arm rho is undefined over {n_arms} arms (constant)", **numbers)

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
            return _claim(INCONCLUSIVE, rule, f"{said}, and one of them is significant", **numbers)
    within_neg_sig = math.isfinite(within) and within < 0 and sig_w
    if between < 0 and sig_b and math.isfinite(within) and within <= 0:
        return _claim(SUPPORTED, rule, f"{said}: arms that drift less stay more plastic", **numbers)
    if between > 0 and sig_b and not within_neg_sig:
        return _claim(NOT_SUPPORTED, rule, f"{said}: arms that drift more stay more plastic", **numbers)
    if abs(between) < C2_WEAK_RHO and n_arms >= C2_MANY_ARMS and not within_neg_sig:
        reason = f"{said}: |rho| < {C2_WEAK_RHO} over >= {C2_MANY_ARMS} arms"
        return _claim(NOT_SUPPORTED, rule, reason, **numbers)
    if between < 0 and sig_b:
        return _claim(INCONCLUSIVE, rule, f"{said}: the within-arm association is undefined", **numbers)
    return _claim(INCONCLUSIVE, rule, f"{said}: no decisive branch at {ALPHA}", **numbers)


# ---- C3 --------------------------------------------------------------------------------------


def _unchanged(s: dict) -> float | None:
    return (s.get("sparsity") or {}).get("unchanged_fraction")


def _pair_kappas(seeds: list[dict], overlaps: list) -> tuple[list[float | None], list[float | None]]:
    """Per disjoint seed pair j (seeds 2j, 2j+1): chance = 1 - mean unchanged fraction of the two,
    kappa = (overlap_j - chance) / (1 - chance); None where a number is missing."""
    chances, kappas = [], []
    for j, ov in enumerate(overlaps):
        u = [_num(_unchanged(s)) for s in seeds[2 * j : 2 * j + 2]]
        ov = _num(ov)
        if len(u) < 2 or not all(math.isfinite(v) for v in [*u, ov]) or np.mean(u) <= 0:
            chances.append(None)
            kappas.append(None)
            continue
        chance = 1 - float(np.mean(u))
        chances.append(round(chance, 4))
        kappas.append(round((ov - chance) / (1 - chance), 4))
    return chances, kappas


def _c3(runs, arms, overlap) -> dict[str, Any]:
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
    if reason := _missing(["rl_only", "sft_only"], runs, arms):
        return _claim(INCONCLUSIVE, rule, reason)
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
    if reason := _too_few({"rl_only": len(runs["rl_only"]), "sft_only": len(runs["sft_only"])}):
        return _claim(INCONCLUSIVE, rule, reason, **numbers, rl_minus_sft_unchanged=None)

    diff = paired_diff(*_common(runs, "rl_only", "sft_only", _unchanged))
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
        return _claim(SUPPORTED, rule, "all met: " + "; ".join(parts), **numbers)
    return _claim(INCONCLUSIVE, rule, "not met: " + "; ".join(p for p, ok in parts.items() if not ok), **numbers)


def _common(runs: dict, a: str, b: str, value) -> tuple[list[float], list[float]]:
    """``value`` of arms a and b over the seeds both ran (NaN where missing)."""
    k = min(len(runs[a]), len(runs[b]))
    return [_num(value(s)) for s in runs[a][:k]], [_num(value(s)) for s in runs[b][:k]]


# ---- C4 --------------------------------------------------------------------------------------


def _domain_slopes(seeds: list[dict], d: str) -> list[float]:
    """Per seed with >= 2 entropy points for ``d``: its entropy slope, read at SLOPE_DECIMALS."""
    out = []
    for s in seeds:
        series = (s.get("entropy") or {}).get(d)
        values = [_num(v) for v in series[1]] if series else []
        values = [v for v in values if math.isfinite(v)]
        if len(values) >= 2:
            out.append(round(slope(values), SLOPE_DECIMALS))
    return out


def _blind_fraction(seeds: list[dict], d: str) -> float | None:
    """Mean over steps and seeds of the fraction of ``d``'s rollout groups that were all 0."""
    values = [_num(v) for s in seeds for v in ((s.get("blind") or {}).get(d) or ([], []))[1]]
    values = [v for v in values if math.isfinite(v)]
    return round(float(np.mean(values)), 4) if values else None


def _c4(runs, kinds, family) -> dict[str, Any]:
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
    if reason := _missing(["rl_only", "structured_first", "joint"], runs):
        return _claim(INCONCLUSIVE, rule, reason)
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
    if reason := _too_few(counts):
        return _claim(INCONCLUSIVE, rule, reason, **numbers, structured_first_minus_joint=None)

    entry = _family_entry(family, "structured_first - joint")
    numbers["structured_first_minus_joint"] = entry
    slope_part = SUPPORTED if matches > counted / 2 else NOT_SUPPORTED if mismatches > counted / 2 else INCONCLUSIVE
    if entry is None:
        diff_part, diff_said = INCONCLUSIVE, "the family of comparisons has no structured_first - joint"
    else:
        sign = _adjusted_sign(entry)
        diff_part = SUPPORTED if sign > 0 else NOT_SUPPORTED if sign < 0 else INCONCLUSIVE
        diff_said = f"{_fmt_adjusted('structured_first - joint', entry)}: {_adjusted_side(entry)}"
    reason = (
        f"entropy slopes: {matches} of {counted} counted domains match their kind, {mismatches} do not "
        f"({slope_part}); {diff_said} ({diff_part})"
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
        "classes and >= 4 RL-phase points each. With independent random signs a seed supports with probability "
        "1/4 and contradicts with 3/4, so: supported when the one-sided binomial P(X >= supporting | n, 1/4) < "
        f"{ALPHA}, not supported when P(X >= contradicting | n, 3/4) < {ALPHA} (possible only from 11 counted "
        f"seeds), else inconclusive; at least {MIN_SEEDS} counted seeds"
    )
    if not runs.get("staged"):
        return _claim(INCONCLUSIVE, rule, "arm staged was not run", seeds_with_token_classes=0)
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
        return _claim(INCONCLUSIVE, rule, reason, **numbers, p_support=None, p_contradict=None)
    p_support = binomtest(support, n, 0.25, alternative="greater").pvalue
    p_contradict = binomtest(contradict, n, 0.75, alternative="greater").pvalue
    numbers |= {"p_support": round(float(p_support), 4), "p_contradict": round(float(p_contradict), 4)}
    said = (
        f"{support} of {n} counted seeds support (P(X >= {support} | {n}, 1/4) = {p_support:.4f}), {contradict} "
        f"contradict (P(X >= {contradict} | {n}, 3/4) = {p_contradict:.4f})"
    )
    verdict = SUPPORTED if p_support < ALPHA else NOT_SUPPORTED if p_contradict < ALPHA else INCONCLUSIVE
    return _claim(verdict, rule, said if verdict != INCONCLUSIVE else f"{said}: neither below {ALPHA}", **numbers)
