"""Continual-learning metrics over training phases and the normalised score change used in T.

GEM (Lopez-Paz & Ranzato 2017, arXiv:1706.08840), 0-based: ``R[i, j]`` = score on domain j after
phase i (phases in training order, i = 0..T-1), ``b[j]`` = score of domain j before training.

    ACC = 1/T sum_j R[T-1, j]
    BWT = 1/(T-1) sum_{i < T-1} (R[T-1, i] - R[i, i])     (negative = forgetting)
    FWT = 1/(T-1) sum_{i >= 1}  (R[i-1, i] - b[i])        (zero-shot gain from earlier phases)

Without phases (one mixed run), ``held_out_course`` gives each domain's start, best and end held-out
score and the run's forgetting ``BWT = mean_d (end_d - best_d)`` (the same "final minus best" of
continual-learning practice, over evaluations instead of phases).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_SCORE_FLOOR = 0.05


def continual_metrics(R: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """``{"ACC", "BWT", "FWT"}`` of GEM (arXiv:1706.08840, see module docstring); with a single
    phase BWT and FWT are 0.0."""
    R = np.asarray(R, dtype=float)
    b = np.asarray(b, dtype=float)
    T = len(R)
    if R.shape != (T, T) or b.shape != (T,) or T == 0:
        raise ValueError(f"expected R [T, T] and b [T] with T >= 1, got {R.shape} and {b.shape}")
    acc = float(R[-1].mean())
    if T == 1:
        return {"ACC": acc, "BWT": 0.0, "FWT": 0.0}
    diag = np.diag(R)
    bwt = float((R[-1, :-1] - diag[:-1]).mean())
    fwt = float((np.diag(R, 1) - b[1:]).mean())  # R[i-1, i] for i = 1..T-1
    return {"ACC": acc, "BWT": bwt, "FWT": fwt}


def transfer_scale(before: float) -> float:
    """``max(|before|, 0.05)``: what a score change of a domain scored ``before`` is divided by in
    T. The floor keeps near-zero starting scores from turning small absolute changes into huge
    ratios."""
    return max(abs(before), _SCORE_FLOOR)


def normalised_transfer(
    before: dict[str, float], after: dict[str, float], scale: float | None = None
) -> dict[str, float]:
    """Relative score change per domain, ``(after - before) / max(|before|, 0.05)``
    (`transfer_scale`): the entries of one row of the transfer matrix T (docs/design.md,
    "Transfer matrix and order"). A ``scale`` replaces ``|before|`` for every domain (same
    floor). Domains missing from ``after`` are skipped."""
    return {d: (after[d] - s) / transfer_scale(s if scale is None else scale) for d, s in before.items() if d in after}


@dataclass(frozen=True)
class Course:
    """One domain's held-out score over a run: at its first evaluation, its best, at its last;
    ``se``: the standard error of a difference of two evaluations, ``sqrt(2 p (1 - p) / n)`` at the
    mean of the two scores (binomial; for scores in [0, 1] that are not pass/fail it bounds the
    variance from above). ``fell``: end below start by more than 2 ``se``; ``forgot``: end below best
    by more than 2 ``se``."""

    start: float
    best: float
    end: float
    n: int

    def se(self, a: float, b: float) -> float:
        p = (a + b) / 2
        return math.sqrt(2 * p * (1 - p) / self.n) if self.n else 0.0

    @property
    def fell(self) -> bool:
        return self.start - self.end > 2 * self.se(self.start, self.end)

    @property
    def forgot(self) -> bool:
        return self.best - self.end > 2 * self.se(self.best, self.end)


def held_out_course(
    evals: Sequence[Mapping[str, float]], names: Sequence[str], n: Mapping[str, int]
) -> tuple[dict[str, Course], float, float]:
    """Per domain its ``Course`` over ``evals`` (eval.jsonl records in step order, ``eval/<d>``
    keys), the run's BWT = mean over domains of (end - best) (<= 0; 0: nothing lost) and its
    standard error (sqrt of the mean of the per-domain variances over the number of domains)."""
    course = {}
    for d in names:
        series = [e[f"eval/{d}"] for e in evals if f"eval/{d}" in e]
        if series:
            course[d] = Course(series[0], max(series), series[-1], n.get(d, 0))
    if not course:
        return {}, 0.0, 0.0
    bwt = sum(c.end - c.best for c in course.values()) / len(course)
    se = math.sqrt(sum(c.se(c.best, c.end) ** 2 for c in course.values())) / len(course)
    return course, bwt, se
