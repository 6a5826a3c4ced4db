"""The rule of claim C1 (docs/design.md; what counts as evidence is in ``claims/__init__.py``).

C1 supported: the staged arm shows a disruption in more than half of its seeds AND
chord_mu - staged (final held-out mean, from the family) is above 0 after adjustment. Not
supported: it is below 0 after adjustment, or its adjusted interval lies inside
+/-EQUIVALENCE_MARGIN (equal in practice; checked before "above 0"). Inconclusive otherwise,
and always when no staged seed shows a disruption: the disruption detector finding none is not
evidence of none, since its sensitivity on this world has not been shown.
"""

from __future__ import annotations

from typing import Any

from spectrum_rl.study.claims.verdicts import (
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
    too_few_seeds,
)

# C1: two arms whose difference is surely within 2 points of held-out mean score (scores in [0, 1])
# end equal in practice; one run's held-out mean is noisier than that (eval on ~50 items/domain).
EQUIVALENCE_MARGIN = 0.02


def judge_c1(runs: dict[str, list[dict]], arms: dict[str, dict], family: dict[str, Any]) -> dict[str, Any]:
    """C1 from the staged arm's phases and the family's chord_mu - staged."""
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
    if reason := missing_arms(["staged", "chord_mu"], runs) or missing_arms(["staged"], arms):
        return claim(INCONCLUSIVE, rule, reason)
    disrupted = [bool((p.get("mean") or {}).get("disruption")) for p in arms["staged"].get("phases", [])]
    d, n = sum(disrupted), len(disrupted)
    numbers: dict[str, Any] = {"staged_disruption_seeds": f"{d}/{n}"}
    if reason := too_few_seeds({"staged": min(n, len(runs["staged"])), "chord_mu": len(runs["chord_mu"])}):
        return claim(INCONCLUSIVE, rule, reason, **numbers, chord_mu_minus_staged=None)
    entry = family_entry(family, "chord_mu - staged")
    numbers |= {"chord_mu_minus_staged": entry, "equivalence_margin": m}
    if entry is None:
        return claim(INCONCLUSIVE, rule, "the family of comparisons has no chord_mu - staged", **numbers)

    said = fmt_adjusted("chord_mu - staged", entry)
    sign = adjusted_sign(entry)
    adj = entry.get("adjusted") or {}
    lo, hi = adj.get("ci_low"), adj.get("ci_high")
    if sign < 0:
        return claim(NOT_SUPPORTED, rule, f"{said}: below 0 after adjustment, chord_mu ends lower", **numbers)
    if lo is not None and hi is not None and -m <= lo and hi <= m:
        return claim(
            NOT_SUPPORTED,
            rule,
            f"{said}: the adjusted interval lies within +/-{m} of 0, the two end equal in practice",
            **numbers,
        )
    if d == 0:
        reason = (
            f"no staged seed (0/{n}) shows a disruption; the detector finding none is not evidence of none, as its "
            f"sensitivity on this world is not shown ({said}: {adjusted_side(entry)})"
        )
        return claim(INCONCLUSIVE, rule, reason, **numbers)
    if d > n / 2 and sign > 0:
        return claim(SUPPORTED, rule, f"staged disrupted in {d}/{n} seeds; {said}: above 0 after adjustment", **numbers)
    why = [f"{said}: {adjusted_side(entry)}"] if sign <= 0 else []
    why += [f"staged disrupted in only {d}/{n} seeds (more than half needed)"] if d <= n / 2 else []
    return claim(INCONCLUSIVE, rule, "; ".join(why), **numbers)
