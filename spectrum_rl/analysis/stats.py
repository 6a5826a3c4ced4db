"""Small statistics for comparing recipes over seeds: Student-t intervals, paired differences,
Spearman's rho with a permutation p-value.

Every study number is a mean over seeds (n of them, usually 3-5). A t-interval is the honest
interval at that n: ``mean ± t_{(1+c)/2, n-1} · s / sqrt(n)`` with ``s`` the sample standard
deviation (Student 1908; any statistics text). A percentile bootstrap over 3 values is about
[min, max] and under-covers, so it is not used. Two recipes run with the same seeds are compared
*paired by seed*: the interval is the t-interval of the per-seed differences ``a_k - b_k``, which
removes the seed-to-seed variation the two runs share. With ``n < 2`` there is no interval
(``lo = hi = nan``).

A study compares many pairs of arms; each pair's two-sided p-value is the paired t-test's of the
per-seed differences, except where n is small (fewer than 6 pairs) or the differences are
discrete (fewer than 3 distinct values): there it is the exact sign-flip test (Fisher's
randomisation test, paired: under "no difference" each difference is as likely positive as
negative, so p = the fraction of the 2^n sign assignments whose |mean| reaches the observed one),
which needs no normality and is defined where every difference is equal, where a t statistic is
not: three equal differences give p = 2/8 = 0.25, not p < 1e-6. With n seeds no sign-flip p is
below 2 / 2^n (n = 3: 0.25, n = 5: 0.0625), so such a comparison cannot reject at 0.05. A t
interval needs a spread: when every difference is equal there is no interval. The p-values are corrected for the
whole family by Holm's step-down method (Holm 1979,
"A simple sequentially rejective multiple test procedure"): sort the m p-values, multiply the
i-th smallest by (m - i + 1), take the running maximum, cap at 1. Holm controls the family-wise
error rate at alpha like Bonferroni, and rejects at least as much. The interval reported beside it
is the Bonferroni interval, at confidence 1 - alpha / m (Holm has no matching interval; this one is
the conservative bound of its first step).

Spearman's rho is the Pearson correlation of the (average-tie) ranks; its two-sided permutation
p-value is the fraction of random pairings of ``y`` with ``x`` whose |rho| is at least the
observed |rho| (Good 2005, *Permutation, Parametric and Bootstrap Tests of Hypotheses*).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata
from scipy.stats import t as student_t

METHOD = "Student t over seeds"
PAIRED_INTERVAL = "Student t over per-seed differences (paired by seed)"
PAIRED_T, SIGN_FLIP = "paired t-test", "exact sign-flip test"
SMALL_N = 6  # below this many pairs, or with fewer than 3 distinct differences, the test is exact


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided interval, the number of values it rests on and how it was made.
    ``lo``/``hi`` are NaN when ``n < 2`` (no interval can be formed)."""

    mean: float
    lo: float
    hi: float
    n: int
    method: str = METHOD
    confidence: float = 0.95

    @property
    def defined(self) -> bool:
        """True when the interval exists (n >= 2)."""
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def above(self, x: float) -> bool:
        """The whole interval lies above ``x`` (False when undefined)."""
        return self.defined and self.lo > x

    def below(self, x: float) -> bool:
        """The whole interval lies below ``x`` (False when undefined)."""
        return self.defined and self.hi < x

    def to_dict(self, digits: int = 4) -> dict[str, float | int | str | None]:
        """JSON form: ``mean``, ``ci_low``, ``ci_high`` (None when undefined), ``n``, ``method``."""
        d = asdict(self)
        r = lambda v: None if math.isnan(v) else round(v, digits)  # noqa: E731
        return {
            "mean": r(d["mean"]),
            "ci_low": r(d["lo"]),
            "ci_high": r(d["hi"]),
            "n": self.n,
            "method": self.method,
        }


def _as_sample(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError(f"{what} is empty")
    return x


def t_interval(values: Sequence[float], confidence: float = 0.95, method: str = METHOD) -> Interval:
    """Mean of ``values`` with its Student-t interval (undefined for a single value, or for values
    that are all equal: a zero-width interval would claim a certainty the seeds do not give)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = _as_sample(values, "values")
    mean, n = float(x.mean()), int(x.size)
    if n < 2 or np.all(x == x[0]):
        return Interval(mean, math.nan, math.nan, n, method, confidence)
    half = float(student_t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, method, confidence)


def paired_diff(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Interval:
    """``mean(a_k - b_k)`` with the t-interval of the per-seed differences; ``a[k]`` and ``b[k]``
    must come from the same seed k, so the two samples must have the same length."""
    xa, xb = _as_sample(a, "a"), _as_sample(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples need the same seeds, got {xa.size} and {xb.size} values")
    return t_interval(xa - xb, confidence, PAIRED_INTERVAL)


def paired_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, str]:
    """Two-sided p-value of ``a_k - b_k`` against 0 and the test that gave it: the paired t-test,
    or the exact sign-flip test where the t-test's normal approximation has nothing to stand on
    (fewer than SMALL_N pairs, or differences that take fewer than 3 distinct values: discrete or
    degenerate). NaN below 2 pairs."""
    d = _as_sample(a, "a") - _as_sample(b, "b")
    if d.size < 2 or not np.all(np.isfinite(d)):
        return math.nan, PAIRED_T
    if d.size < SMALL_N or np.unique(np.round(d, 12)).size < 3:
        return sign_flip_p(d), SIGN_FLIP
    t = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    return float(2 * student_t.sf(abs(t), d.size - 1)), PAIRED_T


def paired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """The p-value of ``paired_test``."""
    return paired_test(a, b)[0]


def sign_flip_p(d: Sequence[float], exact_up_to: int = 16, draws: int = 200_000) -> float:
    """Two-sided p of the paired sign-flip test: the fraction of sign assignments s (every one of
    the 2^n when n <= ``exact_up_to``, else ``draws`` seeded random ones plus the observed) with
    |mean(s * d)| >= |mean(d)| (up to rounding)."""
    x = _as_sample(d, "d")
    n, observed = x.size, abs(x.mean())
    if n <= exact_up_to:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # every assignment, [2^n, n]
        means = np.abs(signs @ x) / n
        return float(np.mean(means >= observed - 1e-12 * max(observed, 1.0)))
    signs = np.random.default_rng(0).choice((-1.0, 1.0), size=(draws, n))
    hits = np.sum(np.abs(signs @ x) / n >= observed - 1e-12 * max(observed, 1.0))
    return float((hits + 1) / (draws + 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (NaN stays NaN and is not counted in m)."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(p.shape, math.nan)
    m = ok.size
    running = 0.0
    for i, j in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out.tolist()


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation over the pairs where both values are finite; NaN when fewer
    than 3 such pairs remain or either side has no variance."""
    xs, ys = _finite_pairs(x, y)
    if xs.size < 3:
        return math.nan
    rx, ry = rankdata(xs), rankdata(ys)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_permutation_p(x: Sequence[float], y: Sequence[float], n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided permutation p-value of Spearman's rho (NaN where rho is NaN). The observed
    pairing counts as one permutation, so p is never 0: ``(1 + #{|rho_perm| >= |rho|}) / (1 + n_perm)``."""
    xs, ys = _finite_pairs(x, y)
    rho = spearman(xs, ys)
    if math.isnan(rho):
        return math.nan
    rx, ry = rankdata(xs), rankdata(ys)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, ry.size)), axis=1)
    ryp = ry[perms]
    rxc, rypc = rx - rx.mean(), ryp - ryp.mean(axis=1, keepdims=True)
    rhos = (rypc @ rxc) / (np.sqrt((rypc**2).sum(axis=1)) * np.sqrt((rxc**2).sum()))
    hits = int(np.sum(np.abs(rhos) >= abs(rho) - 1e-12))
    return (1 + hits) / (1 + n_perm)


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same shape, got {xs.shape} and {ys.shape}")
    ok = np.isfinite(xs) & np.isfinite(ys)
    return xs[ok], ys[ok]
