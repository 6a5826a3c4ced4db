"""Small statistics for comparing recipes: percentile-bootstrap confidence intervals and
Spearman rank correlation.

Percentile bootstrap (Efron & Tibshirani 1993, ch. 13): resample the values with replacement
``n_boot`` times, take the mean of each resample; the CI at level c is the ``(1-c)/2`` and
``(1+c)/2`` quantiles of those means. For a difference of means, ``a`` and ``b`` are resampled
independently. Spearman's rho is the Pearson correlation of the (average-tie) ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

_CHUNK = 1 << 22  # resample indices drawn per batch, bounding memory for large samples


def _as_sample(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError(f"{what} is empty")
    return x


def _boot_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples of ``x`` with replacement."""
    rows = max(1, _CHUNK // x.size)
    means = np.empty(n_boot)
    for i in range(0, n_boot, rows):
        k = min(rows, n_boot - i)
        means[i : i + k] = x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1)
    return means


def _interval(estimate: float, boot: np.ndarray, confidence: float) -> tuple[float, float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return estimate, float(lo), float(hi)


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and its percentile-bootstrap CI (a single value v gives
    ``(v, v, v)``)."""
    x = _as_sample(values, "values")
    rng = np.random.default_rng(seed)
    return _interval(float(x.mean()), _boot_means(x, n_boot, rng), confidence)


def bootstrap_diff_ci(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), lo, hi)`` with a percentile-bootstrap CI, ``a`` and ``b``
    resampled independently (unpaired samples, e.g. seeds of two recipes)."""
    xa, xb = _as_sample(a, "a"), _as_sample(b, "b")
    rng = np.random.default_rng(seed)
    boot = _boot_means(xa, n_boot, rng) - _boot_means(xb, n_boot, rng)
    return _interval(float(xa.mean() - xb.mean()), boot, confidence)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation over the pairs where both values are finite; NaN when fewer
    than 3 such pairs remain or either side has no variance."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same shape, got {xs.shape} and {ys.shape}")
    ok = np.isfinite(xs) & np.isfinite(ys)
    if ok.sum() < 3:
        return math.nan
    rx, ry = rankdata(xs[ok]), rankdata(ys[ok])
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])
