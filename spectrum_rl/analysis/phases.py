"""Phase detector for held-out score curves (claim C1; CHORD, arXiv:2508.11408).

CHORD reports that SFT-then-RL, when the expert data differs from what the model does, goes
through three phases: disruption, readaptation, overfitting. On a held-out series (steps
``s_0 < s_1 < ...``, scores ``y_0, y_1, ...``) smoothed by a centred moving average over
``smooth`` eval points (``ŷ``; the window shrinks at both ends), with baseline ``start = ŷ_0``
(the score before training; with ``smooth > 1`` it averages the first ``smooth - (smooth-1)//2``
points, which damps a noisy first eval but partly absorbs a dip at the very first step) and
threshold ``low = start - margin``:

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

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

LossSeries = tuple[Sequence[int], Sequence[float]]


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
) -> Phases:
    """Disruption, readaptation and overfitting of one held-out curve (definitions in the module
    docstring). ``loss_steps``/``losses`` is the training-loss series (e.g. SFT NLL per step)."""
    s = np.asarray(steps)
    y = np.asarray(scores, dtype=float)
    if s.ndim != 1 or s.shape != y.shape or s.size == 0:
        raise ValueError(f"steps and scores must be 1-D, non-empty and of equal length, got {s.shape} and {y.shape}")
    if np.any(np.diff(s) <= 0):
        raise ValueError("steps must be strictly increasing")
    if margin <= 0 or smooth < 1 or min_points < 1:
        raise ValueError(f"need margin > 0, smooth >= 1, min_points >= 1; got {margin}, {smooth}, {min_points}")
    ls = np.asarray(loss_steps if loss_steps is not None else [])
    lv = np.asarray(losses if losses is not None else [], dtype=float)
    if ls.shape != lv.shape:
        raise ValueError(f"loss_steps and losses must have equal length, got {ls.shape} and {lv.shape}")

    yh = _moving_average(y, smooth)
    n, start = len(y), float(yh[0])
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
            f"score {start:.4g} -> trough {yh[t]:.4g} at step {s[t]} ({n_points} eval points below {low:.4g})",
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
    **kw,
) -> dict[str, Phases]:
    """``detect_phases`` per domain. ``loss`` is one training-loss series ``(steps, losses)``
    shared by all domains, or a mapping domain -> series (domains missing from it get none);
    ``kw`` are the keyword parameters of ``detect_phases``."""
    out = {}
    for domain, (steps, scores) in series.items():
        own = loss.get(domain) if isinstance(loss, Mapping) else loss
        out[domain] = detect_phases(steps, scores, *(own if own is not None else (None, None)), **kw)
    return out
