"""What every claim rule shares: the three verdicts, the seeds a verdict needs, the significance
level, and how a rule reads the study's family of comparisons (a - b after Holm adjustment).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

MIN_SEEDS = 3  # seeds per arm below which no verdict rests on seeds (a t-interval at n=2 has 1 df)
ALPHA = 0.05  # C2, C5: significance level of their tests


def claim(verdict: str, rule: str, reason: str, **numbers: Any) -> dict[str, Any]:
    """A claim's result: its verdict, the rule in words, the branch that fired and the numbers."""
    return {"verdict": verdict, "rule": rule, "reason": reason, **numbers}


def missing_arms(needed: list[str], *sources: dict) -> str | None:
    """The reason when an arm a verdict needs is absent from (or empty in) one of ``sources``
    (``runs`` and/or ``arms``); None when all are there."""
    absent = [a for a in needed if not all(src.get(a) for src in sources)]
    return f"arm {', '.join(absent)} was not run" if absent else None


def too_few_seeds(counts: dict[str, int]) -> str | None:
    """The reason when some arm has fewer than MIN_SEEDS seeds (None when all have enough)."""
    n = min(counts.values())
    if n >= MIN_SEEDS:
        return None
    detail = ", ".join(f"{arm} has {c}" for arm, c in counts.items())
    return f"only n={n} seed{'' if n == 1 else 's'}; at least {MIN_SEEDS} are needed for evidence ({detail})"


def number(v: Any) -> float:
    """A float; NaN for None or anything that is not a number."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def family_entry(family: dict | None, name: str) -> dict | None:
    """The family's final-held-out-mean comparison ``name`` ("a - b"); None when absent."""
    entry = ((family or {}).get("comparisons") or {}).get(name) or {}
    return entry.get("final_mean")


def adjusted_sign(e: dict) -> int:
    """+1 / -1 when 0 is excluded after adjustment (Holm) and the mean is above / below 0; else 0."""
    mean = e.get("mean")
    if not e.get("excludes_0") or mean is None:
        return 0
    return int(np.sign(mean))


def fmt_adjusted(name: str, e: dict) -> str:
    """``a - b = +0.110, adjusted interval [+0.05, +0.17] (98.3%), Holm p = 0.012, n=3``."""
    adj = e.get("adjusted") or {}
    mean = "nan" if e.get("mean") is None else f"{e['mean']:+.3f}"
    lo, hi = adj.get("ci_low"), adj.get("ci_high")
    iv = "no adjusted interval" if lo is None or hi is None else f"adjusted interval [{lo:+.3f}, {hi:+.3f}]"
    if adj.get("confidence") is not None and lo is not None and hi is not None:
        iv += f" ({100 * adj['confidence']:.1f}%)"
    p = "none" if e.get("p_holm") is None else f"{e['p_holm']:.4g}"
    return f"{name} = {mean}, {iv}, Holm p = {p}, n={e.get('n')}"


def adjusted_side(e: dict) -> str:
    """``adjusted_sign`` in words, for a reason."""
    s = adjusted_sign(e)
    return (
        "above 0 after adjustment"
        if s > 0
        else "below 0 after adjustment"
        if s < 0
        else "0 not excluded after adjustment"
    )
