"""Signals the scheduler reads — numbers only, fed by the trainer after each step and eval.

- EntropyMonitor: per-domain mean token entropy of rollouts, EMA-smoothed; baseline = mean of
  the first observations; trend = least-squares slope over a window; collapse when the smoothed
  value falls below ``collapse_fraction * baseline`` (R ~ -a exp(H) + b, arXiv:2505.22617: a
  collapsed entropy caps reward). A structured domain is expected to lower entropy under RL and a
  creative one to raise it (Omni-Thinker, arXiv:2507.14783); a trend against that is flagged.
- Learnability: per arm (a domain, or one difficulty level of it), from success rates, not from
  normalised advantages: a group of rollouts whose pass fraction is s scores ``4 s (1 - s)``
  (the variance of its pass/fail rewards, scaled to 1 at s = 1/2; SEC's absolute advantage,
  arXiv:2505.14970, on pass/fail rewards, which is 2 s (1 - s)), averaged over the arm's groups
  of each step and over a window of steps. A std-normalised |A| is ~0.7-0.9 for any group that is
  not all-equal, so it only says "some signal / none"; this says how much. Beside it, discounted
  pass/fail counts per arm (a Beta posterior of its pass rate, for Thompson sampling, BOTS
  arXiv:2510.26374) and the fraction of informative groups (0 < s < 1).
- OnlineTransfer: between two evals, regress each domain's score change on the mixture used in
  that window, ``delta_j = sum_i T[i, j] * w_i`` (least squares, no intercept), so T stays
  current without extra runs. Mixtures sum to 1, so an intercept ``c_j`` would be confounded
  with a shift of column j (``T[i, j] + c_j`` fits the same data) while the order depends on
  those shifts; without it T[i, j] is what the probes measure: the change of j over one window of
  training on i alone, drift included. The fit is returned only when the mixtures seen determine
  every row (rank D), with the standard errors of that fit.
- GradientAlignment: EMA of the cosine matrix between per-domain gradient sketches (TAC,
  arXiv:2606.25178) computed by the trainer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def slope(values) -> float:
    """Least-squares slope per point of a series (0 for fewer than 2 points)."""
    return float(np.polyfit(np.arange(len(values)), values, 1)[0]) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class EntropyState:
    value: float
    baseline: float | None
    trend: float
    collapsed: bool
    contradicts_kind: bool


class EntropyMonitor:
    def __init__(
        self,
        kinds: dict[str, str],
        smoothing: float = 0.2,
        baseline_steps: int = 5,
        collapse_fraction: float = 0.5,
        window: int = 20,
        trend_tolerance: float = 1e-3,
    ) -> None:
        self.kinds = kinds
        self.smoothing, self.baseline_steps = smoothing, baseline_steps
        self.collapse_fraction, self.window, self.trend_tolerance = collapse_fraction, window, trend_tolerance
        self.smoothed: dict[str, float] = {}
        self.first: dict[str, list[float]] = {}
        self.history: dict[str, deque] = {}

    def update(self, entropies: dict[str, float]) -> None:
        for d, h in entropies.items():
            self.smoothed[d] = (
                h if d not in self.smoothed else (1 - self.smoothing) * self.smoothed[d] + self.smoothing * h
            )
            first = self.first.setdefault(d, [])
            if len(first) < self.baseline_steps:
                first.append(h)
            self.history.setdefault(d, deque(maxlen=self.window)).append(self.smoothed[d])

    def state(self, domain: str) -> EntropyState | None:
        if domain not in self.smoothed:
            return None
        first = self.first[domain]
        baseline = float(np.mean(first)) if len(first) >= self.baseline_steps else None
        hist = np.asarray(self.history[domain])
        trend = slope(hist) if len(hist) >= 3 else 0.0
        value = self.smoothed[domain]
        collapsed = baseline is not None and value < self.collapse_fraction * baseline
        expected = -1 if self.kinds.get(domain) == "structured" else 1
        contradicts = len(hist) >= self.window // 2 and trend * expected < -self.trend_tolerance
        return EntropyState(value, baseline, trend, collapsed, contradicts)

    def state_dict(self) -> dict:
        return {
            "smoothed": dict(self.smoothed),
            "first": {k: list(v) for k, v in self.first.items()},
            "history": {k: list(v) for k, v in self.history.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.smoothed, self.first = dict(state["smoothed"]), {k: list(v) for k, v in state["first"].items()}
        self.history = {k: deque(v, maxlen=self.window) for k, v in state["history"].items()}


def arm(domain: str, level: int | None) -> str:
    """The name of a bandit arm: the domain, or ``domain@level`` for one level of its range."""
    return domain if level is None else f"{domain}@{level}"


class Learnability:
    """Success-rate learnability and Beta pass counts per arm (module docstring). An arm is a
    domain and, for a domain drawn at difficulty levels, also each ``domain@level``."""

    def __init__(self, window: int = 20, threshold: float = 1.0, discount: float = 0.95) -> None:
        self.window, self.threshold, self.discount = window, threshold, discount
        self.values: dict[str, deque] = {}  # arm -> per-step mean 4 s (1 - s)
        self.counts: dict[str, int] = {}  # arm -> groups observed
        self.beta: dict[str, list[float]] = {}  # arm -> [discounted passes, discounted fails]
        self.informative: dict[str, float] = {}  # domain -> last step's share of groups with 0 < s < 1

    def observe(self, groups: Sequence[tuple[str, int | None, Sequence[float]]]) -> None:
        """One step's groups: (domain, level or None, rollout rewards)."""
        by_arm: dict[str, list[float]] = {}
        passes: dict[str, list[int]] = {}
        for domain, level, rewards in groups:
            if not rewards:
                continue
            k = sum(r >= self.threshold for r in rewards)
            s = k / len(rewards)
            for a in {domain, arm(domain, level)}:
                by_arm.setdefault(a, []).append(4 * s * (1 - s))
                passes.setdefault(a, [0, 0])
                passes[a][0] += k
                passes[a][1] += len(rewards) - k
        for a, values in by_arm.items():
            self.values.setdefault(a, deque(maxlen=self.window)).append(float(np.mean(values)))
            self.counts[a] = self.counts.get(a, 0) + len(values)
            old = self.beta.get(a, [0.0, 0.0])
            self.beta[a] = [self.discount * old[0] + passes[a][0], self.discount * old[1] + passes[a][1]]
            if "@" not in a:
                self.informative[a] = float(np.mean([v > 0 for v in values]))

    def value(self, arm: str) -> float | None:
        v = self.values.get(arm)
        return float(np.mean(v)) if v else None

    def count(self, arm: str) -> int:
        return self.counts.get(arm, 0)

    def posterior(self, arm: str) -> tuple[float, float]:
        """Beta(1 + passes, 1 + fails) parameters of the arm's pass rate (discounted counts)."""
        passes, fails = self.beta.get(arm, (0.0, 0.0))
        return 1.0 + passes, 1.0 + fails

    def metrics(self) -> dict[str, float]:
        """``learnability/<domain>`` (window mean) and ``informative/<domain>`` (last step)."""
        out = {f"learnability/{a}": round(self.value(a) or 0.0, 4) for a in self.values if "@" not in a}
        return out | {f"informative/{d}": round(v, 4) for d, v in self.informative.items()}

    def state_dict(self) -> dict:
        return {
            "values": {k: list(v) for k, v in self.values.items()},
            "counts": dict(self.counts),
            "beta": dict(self.beta),
            "informative": dict(self.informative),
        }

    def load_state_dict(self, state: dict) -> None:
        self.values = {k: deque(v, maxlen=self.window) for k, v in state["values"].items()}
        self.counts = dict(state["counts"])
        self.beta = {k: list(v) for k, v in state.get("beta", {}).items()}
        self.informative = dict(state.get("informative", {}))


class OnlineTransfer:
    """Least-squares estimate of T from (window mixture, score change) pairs between evals."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.mixtures: list[list[float]] = []
        self.deltas: list[list[float]] = []
        self._window: list[dict[str, float]] = []
        self._last_scores: dict[str, float] | None = None

    def observe_mixture(self, mixture: dict[str, float]) -> None:
        self._window.append(mixture)

    def observe_eval(self, scores: dict[str, float]) -> None:
        if self._last_scores is not None and self._window:
            mean = [float(np.mean([m.get(n, 0.0) for m in self._window])) for n in self.names]
            self.mixtures.append(mean)
            self.deltas.append([scores.get(n, 0.0) - self._last_scores.get(n, 0.0) for n in self.names])
        self._last_scores, self._window = dict(scores), []

    def estimate(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(T [D, D], standard errors [D, D]) of ``delta = W @ T``; None until the windows' mixtures
        have rank D and outnumber the unknowns per column (at least D + 1 windows)."""
        X, Y = np.asarray(self.mixtures), np.asarray(self.deltas)
        D = len(self.names)
        if len(X) <= D or np.linalg.matrix_rank(X) < D:
            return None
        T, *_ = np.linalg.lstsq(X, Y, rcond=None)  # [D_i, D_j]
        resid = Y - X @ T
        sigma2 = (resid**2).sum(0) / (len(X) - D)  # [D_j]
        cov = np.linalg.inv(X.T @ X)  # [D_i, D_i]
        return T, np.sqrt(np.outer(np.diag(cov), sigma2))

    def state_dict(self) -> dict:
        return {"mixtures": self.mixtures, "deltas": self.deltas, "window": self._window, "last": self._last_scores}

    def load_state_dict(self, state: dict) -> None:
        self.mixtures, self.deltas = state["mixtures"], state["deltas"]
        self._window, self._last_scores = state["window"], state["last"]


class GradientAlignment:
    def __init__(self, smoothing: float = 0.3) -> None:
        self.smoothing = smoothing
        self.cos: dict[str, dict[str, float]] = {}

    def update(self, cos: dict[str, dict[str, float]]) -> None:
        for a, row in cos.items():
            for b, c in row.items():
                old = self.cos.setdefault(a, {}).get(b)
                self.cos[a][b] = c if old is None else (1 - self.smoothing) * old + self.smoothing * c

    def mean_alignment(self, domain: str) -> float | None:
        row = {b: c for b, c in self.cos.get(domain, {}).items() if b != domain}
        return float(np.mean(list(row.values()))) if row else None

    def state_dict(self) -> dict:
        return {"cos": self.cos}

    def load_state_dict(self, state: dict) -> None:
        self.cos = state["cos"]
