"""Verdicts on the five claims of docs/design.md, each by a written rule over the study's numbers.

Each claim returns ``verdict`` ("supported", "not supported" or "inconclusive"), ``rule`` (the
rule in words), ``reason`` (which branch fired, on what numbers) and the numbers themselves.
Every rule can reach all three verdicts.

Evidence. Arms run with seeds 0..n-1 and ``runs[arm][k]`` is seed k. C1 and C4 compare two arms
through the study's family of comparisons (``study/comparisons.py``): a - b paired by seed over
the seeds both ran, a paired test per pair (t; exact sign-flip below 6 seeds or for discrete
differences), Holm-adjusted over the family, with a Bonferroni
interval. "Above 0" means 0 is excluded after adjustment (``excludes_0``: Holm p < the family's
alpha) and the mean is positive; "below 0" likewise with a negative mean. A verdict that rests on
seeds needs at least ``MIN_SEEDS`` of them in every arm it uses; with fewer it is inconclusive
("only n=2 seeds; at least 3 are needed for evidence"). C2 leaves out arms with fewer than
MIN_SEEDS runs, C3's kappa needs MIN_SEEDS disjoint seed pairs, C5 MIN_SEEDS counted seeds. A
missing arm also gives inconclusive.

Multiple testing. Corrected: the arm comparisons C1 and C4 read are Holm-adjusted within the
study's family (every compared pair of arms). Not corrected: the five claims against each other,
and the tests C2, C3 and C5 run on their own (each at ALPHA). With five claims judged at ALPHA
each, the chance that some verdict rests on a chance result is larger than ALPHA.

The rules, one module per claim family, each stating its rule and thresholds: C1 in
``disruption.py``, C2 in ``plasticity.py``, C3 in ``sparsity.py``, C4 and C5 in ``entropy.py``;
``verdicts.py`` holds what they share.
"""

from __future__ import annotations

from typing import Any

from spectrum_rl.study.claims.disruption import judge_c1
from spectrum_rl.study.claims.entropy import judge_c4, judge_c5
from spectrum_rl.study.claims.plasticity import judge_c2
from spectrum_rl.study.claims.sparsity import judge_c3


def judge_claims(
    runs: dict[str, list[dict]],
    arms: dict[str, dict],
    overlap: dict[str, list[float]],
    kinds: dict[str, str],
    family: dict[str, Any],
) -> dict:
    """Verdicts on C1-C5. ``runs[arm]`` lists the run summaries in seed order, ``arms`` the
    per-arm aggregates (``study/summary.py``), ``overlap[arm]`` the changed-mask overlaps of the
    disjoint seed pairs (0,1), (2,3), ...; ``kinds`` each domain's kind ("structured" or
    "creative"); ``family`` the study's comparisons (``study/comparisons.py``)."""
    return {
        "C1": judge_c1(runs, arms, family),
        "C2": judge_c2(runs),
        "C3": judge_c3(runs, arms, overlap),
        "C4": judge_c4(runs, kinds, family),
        "C5": judge_c5(runs),
    }
