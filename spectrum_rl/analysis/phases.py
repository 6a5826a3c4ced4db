"""Phase detector for held-out score curves (claim C1; CHORD, arXiv:2508.11408).

CHORD reports that SFT-then-RL, when the expert data differs from what the model does, goes
through three phases: disruption, readaptation, overfitting. On a held-out series (steps
``s_0 < s_1 < ...``, scores ``y_0, y_1, ...``) smoothed by a centred moving average over
``smooth`` eval points (``ŷ``; the window shrinks at both ends), with baseline ``start = ŷ_0``
(the score before training; with ``smooth > 1`` it averages the first ``smooth - (smooth-1)//2``
points, which damps a noisy first eval but partly absorbs a dip at the very first step) and
threshold ``low = start - margin``.

``margin`` is the larger of the fixed ``margin`` argument and twice the standard error of one
eval of the curve, so that no phase is named for a change the eval set's size allows by chance.
For a score ``p`` measured on ``n`` eval prompts, ``se = sqrt(p (1 - p) / n)`` (binomial; for a
score in [0, 1] that is not 0/1, ``p (1 - p)`` bounds its variance, so this is conservative); for
the unweighted mean over ``D`` domains of sizes ``n_d``, ``se = sqrt(sum_d p_d (1 - p_d) / n_d) / D``.
``se`` is evaluated at the start score(s) ``p = start`` (``p_d`` = each domain's ``start``),
clipped into [0, 1]: one number per curve, taken where the comparisons are anchored. It is the
standard error of a single eval, not shrunk for ``smooth`` (conservative), and not the ``√2``
larger error of a difference of two evals (2 se ≈ 1.4 standard errors of ``ŷ_i - start``).
Without an eval size the margin is the fixed one. Every ``margin`` below is this effective one:

- disruption: the first maximal run of points ``i >= 1`` with ``ŷ_i < low`` that begins before
  ``ŷ`` has ever exceeded ``start + margin`` (a fall after real gains is a late decline, not a
  disruption). Phase ``[s_first, s_t]`` with ``t = argmin ŷ`` over the run (the trough);
  confidence ``min(1, (start - ŷ_t) / (3 margin)) * min(1, n_points / min_points)``.
- readaptation: the rise after the trough. Phase ``[s_t, s_r]`` where ``r`` is the first point
  with ``ŷ_r >= low`` (recovery); if ``ŷ`` never regains ``low`` but climbs more than ``margin``
  above the trough, ``r`` is the highest point after the trough (partial recovery). Confidence =
  fraction of the drop recovered, ``clip((max_{i>t} ŷ_i - ŷ_t) / (start - ŷ_t), 0, 1)``.
- overfitting: ``p = argmax ŷ`` from ``r`` on (from ``t`` if the score never recovered, from the
  start if there was no disruption) and ``m = argmin ŷ`` after ``p``. Reported when
  ``ŷ_p - ŷ_m > margin`` while the training loss logged at steps in ``[s_p, s_m]`` (at least two
  points) has a negative least-squares slope. Phase ``[s_p, s_m]``; confidence
  ``min(1, (ŷ_p - ŷ_m) / (3 margin)) * (-r_loss)`` with ``r_loss`` the Pearson correlation of
  loss with step (1 = every loss point on one falling line). Without a loss series overfitting
  is never reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

LossSeries = tuple[Sequence[int], Sequence[float]]
# each phase's shade where a plot marks it (`analyze`'s held-out plot, the study report's curves)
PHASE_COLORS = {"disruption": "#f4a6a6", "readaptation": "#a6d8f4", "overfitting": "#f4dca6"}


@dataclass(frozen=True)
class Phase:
    """One detected phase: first and last step (inclusive), confidence in [0, 1], a summary."""

    start: int
    end: int
    confidence: float
    detail: str


@dataclass(frozen=True)
class Phases:
    """The three CHORD phases of one held-out curve; ``None`` where a phase was not found."""

    disruption: Phase | None = None
    readaptation: Phase | None = None
    overfitting: Phase | None = None

    def to_dict(self) -> dict[str, dict | None]:
        return {f.name: None if (p := getattr(self, f.name)) is None else asdict(p) for f in fields(self)}


def _moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` points; the window shrinks at both ends."""
    lo = (window - 1) // 2
    idx = np.arange(len(y))
    a, b = np.maximum(idx - lo, 0), np.minimum(idx + window - lo, len(y))
    csum = np.concatenate([[0.0], np.cumsum(y)])
    return (csum[b] - csum[a]) / (b - a)


def binomial_se(p: float, n: int) -> float:
    """Standard error ``sqrt(p (1 - p) / n)`` of a score ``p`` (clipped into [0, 1]) measured on ``n`` prompts."""
    if n < 1:
        raise ValueError(f"eval size must be >= 1, got {n}")
    q = min(1.0, max(0.0, float(p)))
    return math.sqrt(q * (1 - q) / n)


def mean_binomial_se(scores: Mapping[str, float], sizes: Mapping[str, int]) -> float:
    """Standard error of the unweighted mean over domains of independent binomial scores:
    ``sqrt(sum_d p_d (1 - p_d) / n_d) / D`` with ``p_d = scores[d]``, ``n_d = sizes[d]``."""
    if not scores or set(scores) - set(sizes):
        raise ValueError(f"need an eval size for every domain, got scores {sorted(scores)} and sizes {sorted(sizes)}")
    return math.sqrt(sum(binomial_se(p, sizes[d]) ** 2 for d, p in scores.items())) / len(scores)


def _loss_trend(loss_steps: np.ndarray, losses: np.ndarray, first: int, last: int) -> tuple[float, float] | None:
    """(least-squares slope, Pearson r) of loss vs step over ``first <= step <= last``, or None
    when fewer than two distinct steps are logged there."""
    keep = (loss_steps >= first) & (loss_steps <= last) & np.isfinite(losses)
    x, loss = loss_steps[keep].astype(float), losses[keep]
    if np.unique(x).size < 2:
        return None
    dx, dl = x - x.mean(), loss - loss.mean()
    slope = float(dx @ dl / (dx @ dx))
    r = float(dx @ dl / np.sqrt((dx @ dx) * (dl @ dl))) if dl.any() else 0.0
    return slope, r


def detect_phases(
    steps: Sequence[int],
    scores: Sequence[float],
    loss_steps: Sequence[int] | None = None,
    losses: Sequence[float] | None = None,
    *,
    margin: float = 0.03,
    smooth: int = 1,
    min_points: int = 2,
    eval_size: int | None = None,
    noise_se: float | None = None,
) -> Phases:
    """Disruption, readaptation and overfitting of one held-out curve (definitions in the module
    docstring). ``loss_steps``/``losses`` is the training-loss series (e.g. SFT NLL per step).
    ``eval_size`` (prompts behind each score) sets the noise floor ``2 * binomial_se(start, eval_size)``
    on the margin; ``noise_se`` gives that standard error directly instead (e.g. ``mean_binomial_se``
    for a mean over domains). With neither, the margin is ``margin``."""
    s = np.asarray(steps)
    y = np.asarray(scores, dtype=float)
    if s.ndim != 1 or s.shape != y.shape or s.size == 0:
        raise ValueError(f"steps and scores must be 1-D, non-empty and of equal length, got {s.shape} and {y.shape}")
    if np.any(np.diff(s) <= 0):
        raise ValueError("steps must be strictly increasing")
    if margin <= 0 or smooth < 1 or min_points < 1:
        raise ValueError(f"need margin > 0, smooth >= 1, min_points >= 1; got {margin}, {smooth}, {min_points}")
    if eval_size is not None and noise_se is not None:
        raise ValueError("give eval_size or noise_se, not both")
    if noise_se is not None and not (math.isfinite(noise_se) and noise_se >= 0):
        raise ValueError(f"noise_se must be finite and >= 0, got {noise_se}")
    ls = np.asarray(loss_steps if loss_steps is not None else [])
    lv = np.asarray(losses if losses is not None else [], dtype=float)
    if ls.shape != lv.shape:
        raise ValueError(f"loss_steps and losses must have equal length, got {ls.shape} and {lv.shape}")

    yh = _moving_average(y, smooth)
    n, start = len(y), float(yh[0])
    se = binomial_se(start, eval_size) if eval_size is not None else noise_se
    floor = f"; margin {2 * se:.3g} = 2 x eval s.e." if se is not None and 2 * se > margin else ""
    margin = max(margin, 2 * se) if se is not None else margin
    low = start - margin
    disruption = readaptation = None
    search_from = 0

    gained = np.flatnonzero(yh[1:] > start + margin) + 1
    below = np.flatnonzero(yh[1 : gained[0] if gained.size else n] < low) + 1
    if below.size:
        first = last = int(below[0])
        while last + 1 < n and yh[last + 1] < low:
            last += 1
        t = first + int(np.argmin(yh[first : last + 1]))
        depth, n_points = start - yh[t], last - first + 1
        disruption = Phase(
            int(s[first]),
            int(s[t]),
            min(1.0, depth / (3 * margin)) * min(1.0, n_points / min_points),
            f"score {start:.4g} -> trough {yh[t]:.4g} at step {s[t]} ({n_points} eval points below {low:.4g}{floor})",
        )
        search_from = t
        rest = yh[t + 1 :]
        if rest.size:
            recovered = min(1.0, max(0.0, (rest.max() - yh[t]) / depth))
            if last + 1 < n:
                r = last + 1
                detail = f"regained {yh[r]:.4g} >= {low:.4g} at step {s[r]}"
            elif rest.max() - yh[t] > margin:
                r = t + 1 + int(np.argmax(rest))
                detail = f"partial: rose to {yh[r]:.4g} at step {s[r]}, never regained {low:.4g}"
            else:
                r = None
            if r is not None:
                readaptation = Phase(
                    int(s[t]), int(s[r]), recovered, f"{detail}; {recovered:.0%} of the drop recovered"
                )
                search_from = r

    overfitting = None
    p = search_from + int(np.argmax(yh[search_from:]))
    if p + 1 < n and ls.size:
        m = p + 1 + int(np.argmin(yh[p + 1 :]))
        drop = yh[p] - yh[m]
        trend = _loss_trend(ls, lv, int(s[p]), int(s[m])) if drop > margin else None
        if trend is not None and trend[0] < 0:
            slope, r_loss = trend
            overfitting = Phase(
                int(s[p]),
                int(s[m]),
                min(1.0, drop / (3 * margin)) * -r_loss,
                f"held-out {yh[p]:.4g} at step {s[p]} -> {yh[m]:.4g} at step {s[m]} while "
                f"training loss falls (slope {slope:.3g}/step, r = {r_loss:.2f})",
            )
    return Phases(disruption, readaptation, overfitting)


def detect_all(
    series: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    loss: LossSeries | Mapping[str, LossSeries] | None = None,
    *,
    eval_sizes: Mapping[str, int] | None = None,
    mean_key: str = "mean",
    **kw,
) -> dict[str, Phases]:
    """``detect_phases`` per domain. ``loss`` is one training-loss series ``(steps, losses)``
    shared by all domains, or a mapping domain -> series (domains missing from it get none).
    ``eval_sizes`` (domain -> number of eval prompts) sets each domain's noise floor; the series
    named ``mean_key`` (the unweighted mean of the other series) gets ``mean_binomial_se`` of their
    start scores. A series without a size (the mean: when any other series lacks one) keeps the
    fixed margin. ``kw`` are the other keyword parameters of ``detect_phases``."""
    sizes = dict(eval_sizes or {})
    parts = {d: v for d, v in series.items() if d != mean_key}
    out = {}
    for domain, (steps, scores) in series.items():
        own = loss.get(domain) if isinstance(loss, Mapping) else loss
        noise: dict[str, float] = {}
        if domain in sizes:
            noise["eval_size"] = sizes[domain]
        elif domain == mean_key and parts and all(d in sizes and len(v[1]) for d, v in parts.items()):
            smooth = kw.get("smooth", 1)
            starts = {d: float(_moving_average(np.asarray(v[1], dtype=float), smooth)[0]) for d, v in parts.items()}
            noise["noise_se"] = mean_binomial_se(starts, sizes)
        out[domain] = detect_phases(steps, scores, *(own if own is not None else (None, None)), **noise, **kw)
    return out
