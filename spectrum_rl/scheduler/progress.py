"""Is a domain getting better, or worse? Two signals the adaptive policy reads. Pure Python.

**Learning progress** (absolute learning progress: Graves et al. 2017, arXiv:1704.03003;
Matiisen et al.'s teacher-student curricula, arXiv:1707.00183): per domain, the slope of its
training reward over the last ``window`` steps it was trained (least squares), times the window,
less two standard errors of that slope (the noise its own reward makes), floored at 0:

    LP_d = max(0, |slope_d| - 2 se(slope_d)) * window

so a domain whose reward varies from group to group but does not rise (or sits at its ceiling)
has LP = 0, and one that is improving has LP near its gain per window. None until the window is
full.

**Falling** (forgetting with the power to fire): the held-out evaluation alone is weak evidence
(64 prompts: a drop of 0.10 is about 1.2 standard errors), so the detector pools. Per domain and
difficulty level (or the domain alone), the pass rate of the domain's own training rollouts over
the last ``window`` steps it was trained, against its best earlier ``window``-step stretch; and the
held-out score over the last ``evals`` evaluations against the best earlier stretch of as many.
Each gives ``z = (best - now) / se``, se the binomial standard error of the difference of two
pooled pass rates; a domain is falling when either z exceeds ``z`` (the training z at a level
with at least ``min_rollouts`` rollouts on each side). The rollouts are sampled at the training
temperature and the level is held fixed, so a drop there is the policy getting worse at what it
could do, not a change of what it was asked. The false-alarm rate and the detection delay are
measured on planted curves (``tests/test_scheduler.py``, docs/scheduler.md).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from spectrum_rl.scheduler.signals import arm


class LearningProgress:
    """Per domain the noise-adjusted absolute slope of its training reward (module docstring)."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.rewards: dict[str, deque[float]] = {}

    def observe(self, rewards: Mapping[str, float]) -> None:
        """One step's mean training reward of each domain trained in it."""
        for d, r in rewards.items():
            self.rewards.setdefault(d, deque(maxlen=self.window)).append(float(r))

    def value(self, domain: str) -> float | None:
        y = self.rewards.get(domain)
        if y is None or len(y) < self.window:
            return None
        n = len(y)
        mx, my = (n - 1) / 2, sum(y) / n
        sxx = sum((i - mx) ** 2 for i in range(n))
        slope = sum((i - mx) * (v - my) for i, v in enumerate(y)) / sxx
        residual = sum((v - my - slope * (i - mx)) ** 2 for i, v in enumerate(y)) / (n - 2)
        se = math.sqrt(residual / sxx)
        return max(0.0, abs(slope) - 2 * se) * self.window

    def state_dict(self) -> dict:
        return {"rewards": {d: list(v) for d, v in self.rewards.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.rewards = {d: deque(map(float, v), maxlen=self.window) for d, v in state["rewards"].items()}


class Falling:
    """Which domains are getting worse beyond the noise (module docstring)."""

    def __init__(
        self, window: int = 10, evals: int = 3, z: float = 4.0, min_rollouts: int = 30, threshold: float = 1.0
    ) -> None:
        self.window, self.evals, self.z, self.min_rollouts, self.threshold = window, evals, z, min_rollouts, threshold
        self.steps: dict[str, list[tuple[int, int]]] = {}  # arm -> per trained step (passes, rollouts)
        self.scores: dict[str, list[float]] = {}  # domain -> held-out scores
        self.eval_n: dict[str, int] = {}

    def observe_groups(self, groups: Iterable[tuple[str, int | None, Sequence[float]]]) -> None:
        """One step's groups: (domain, level or None, rollout rewards)."""
        tally: dict[str, list[int]] = {}
        for domain, level, rewards in groups:
            t = tally.setdefault(arm(domain, level), [0, 0])
            t[0] += sum(r >= self.threshold for r in rewards)
            t[1] += len(rewards)
        for a, (passes, n) in tally.items():
            self.steps.setdefault(a, []).append((passes, n))

    def observe_eval(self, scores: Mapping[str, float], eval_n: Mapping[str, int]) -> None:
        for d, s in scores.items():
            self.scores.setdefault(d, []).append(float(s))
        self.eval_n.update(eval_n)

    def falling(self, domain: str) -> str | None:
        """Why ``domain`` counts as falling (the strongest evidence), or None."""
        found = []
        for a, steps in self.steps.items():
            if a == domain or a.startswith(domain + "@"):
                z, best, now = _drop([(p, n) for p, n in steps], self.window, self.min_rollouts)
                if z > self.z:
                    found.append((z, f"{a} training pass rate {now:.2f} < best {best:.2f} (z {z:.1f})"))
        n = self.eval_n.get(domain, 0)
        scores = self.scores.get(domain, [])
        if n:
            z, best, now = _drop([(round(s * n), n) for s in scores], self.evals, 1)
            if z > self.z:
                found.append((z, f"{domain} held-out {now:.2f} < best {best:.2f} over {self.evals} evals (z {z:.1f})"))
        return max(found)[1] if found else None

    def state_dict(self) -> dict:
        return {"steps": self.steps, "scores": self.scores, "eval_n": self.eval_n}

    def load_state_dict(self, state: dict) -> None:
        self.steps = {a: [tuple(s) for s in v] for a, v in state["steps"].items()}
        self.scores = {d: list(v) for d, v in state["scores"].items()}
        self.eval_n = dict(state["eval_n"])


def _drop(counts: list[tuple[int, int]], w: int, min_n: int) -> tuple[float, float, float]:
    """(z, best, now): the last ``w`` entries' pooled pass rate against the best earlier stretch of
    ``w`` (not overlapping it), z = (best - now) / se of the difference (0 without enough data)."""
    if len(counts) < 2 * w:
        return 0.0, 0.0, 0.0
    last = counts[-w:]
    now_p, now_n = sum(p for p, _ in last), sum(n for _, n in last)
    best = (0.0, 0, 0)  # (rate, passes, rollouts)
    for i in range(len(counts) - 2 * w + 1):
        stretch = counts[i : i + w]
        p, n = sum(x for x, _ in stretch), sum(y for _, y in stretch)
        if n and p / n > best[0]:
            best = (p / n, p, n)
    rate, _, best_n = best
    if now_n < min_n or best_n < min_n:
        return 0.0, rate, now_p / now_n if now_n else 0.0
    now = now_p / now_n
    pooled = (best[1] + now_p) / (best_n + now_n)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / best_n + 1 / now_n))
    return (rate - now) / se, rate, now
