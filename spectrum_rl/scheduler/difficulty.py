"""Difficulty curriculum over a generator knob given as a range (``difficulty: {length: [2, 8]}``).

Per level l of the range, a pass-rate estimate p_l (an exponential moving average of the fraction
of a group's rollouts whose total reward reaches ``scheduler.success_threshold``). The frontier is the
easiest level not yet passed, f = min{l : l not passed} (the hardest level once all are). A level
is passed while p_l >= promote (mastered), or once it has plateaued while p_l >= ``plateau_floor``:
its last ``2 k`` groups (k = ``plateau_groups``) show a rise of less than ``plateau_gain`` from the
first k to the last k, and their pooled pass rate is above the floor by two standard errors (and
stays at or above it). The pass rate is measured on rollouts
sampled at the training temperature, which can sit below ``promote`` for good while greedy decoding
is right; without the plateau rule the frontier would stay there for the rest of the run. Below the
floor a plateau does not pass a level: its groups still carry signal (4 s (1 - s) is largest at
s = 1/2) and the next level is harder. A passed level whose pass rate falls below its threshold is
not passed again (forgetting brings the frontier back). An unseen level counts as not passed, so
the frontier starts at the easiest level. Each step's prompts take level f
with the remaining weight, f - 1 with ``replay`` (against forgetting) and f + 1 with ``probe``
(so the next level is measured before it becomes the frontier); with ``uniform_share`` u, that
distribution gets weight 1 - u and the uniform one over the range u (every level keeps at least
u / L of the prompts: a frontier that climbs slowly does not starve levels that already give
signal). This is the moving difficulty
frontier of online difficulty filtering (arXiv:2504.03380) and of SEC's bandit over difficulty
levels (arXiv:2505.14970), in its simplest deterministic form. Pure Python.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from spectrum_rl.schema import StrictModel


class DifficultyConfig(StrictModel):
    """`scheduler.difficulty:` — the frontier of domains whose generator knob is a range."""

    promote: float = Field(0.8, ge=0, le=1, description="A level counts as mastered at this pass rate.")
    ema: float = Field(0.5, gt=0, le=1, description="Weight of a group's pass rate in its level's estimate.")
    replay: float = Field(0.15, ge=0, le=1, description="Share of prompts one level below the frontier.")
    probe: float = Field(0.15, ge=0, le=1, description="Share of prompts one level above the frontier.")
    plateau_groups: int = Field(
        8,
        ge=1,
        description="A level counts as passed when its pass rate rose by less than `plateau_gain` from its "
        "previous this-many groups to its last this-many (a large number turns the rule off).",
    )
    plateau_gain: float = Field(0.05, ge=0, le=1, description="Rise in pass rate that still counts as progress.")
    plateau_floor: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A plateau passes a level only at or above this pass rate, and only while its pass rate stays "
        "there (below it the level still has signal to learn from).",
    )
    uniform_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="`mode: frontier`: share of the prompts drawn uniformly over the whole range, the rest around the "
        "frontier, so that no level goes untrained while the frontier climbs (on a ladder whose upper levels already "
        "give signal, training them early pays).",
    )
    mode: Literal["frontier", "uniform", "fixed"] = Field(
        "frontier",
        description="How levels are drawn when the policy does not choose them: the moving frontier, uniformly over "
        "the range, or always at one level (`fixed_level`).",
    )
    fixed_level: float = Field(
        0.5, ge=0, le=1, description="`mode: fixed`: position in the range (0 easiest, 1 hardest), rounded down."
    )


class Frontier:
    """Pass rates per level of ``[lo, hi]`` and the level distribution they give."""

    def __init__(self, lo: int, hi: int, cfg: DifficultyConfig, threshold: float = 1.0) -> None:
        self.lo, self.hi, self.cfg, self.threshold = lo, hi, cfg, threshold
        self.rate: dict[int, float] = {}
        self.recent: dict[int, deque[tuple[int, int]]] = {}  # level -> its last 2 k groups' (passes, rollouts)
        self.plateaued: set[int] = set()

    def observe(self, level: int, rewards: Sequence[float]) -> None:
        if rewards:
            passes = sum(r >= self.threshold for r in rewards)
            s = passes / len(rewards)
            p = self.rate.get(level)
            self.rate[level] = s if p is None else (1 - self.cfg.ema) * p + self.cfg.ema * s
            k = self.cfg.plateau_groups
            recent = self.recent.setdefault(level, deque(maxlen=2 * k))
            recent.append((passes, len(rewards)))
            if len(recent) == 2 * k and self._plateau(list(recent), k):
                self.plateaued.add(level)

    def _plateau(self, groups: list[tuple[int, int]], k: int) -> bool:
        """The rise from the first k groups to the last k is under ``plateau_gain`` and the whole
        window's pass rate is above the floor by two standard errors (not noise around it)."""
        before, last = _rate(groups[:k]), _rate(groups[k:])
        m, n = _rate(groups), sum(g[1] for g in groups)
        return last - before < self.cfg.plateau_gain and m - 2 * (m * (1 - m) / n) ** 0.5 >= self.cfg.plateau_floor

    def passed(self, level: int) -> bool:
        if self.rate.get(level, 0.0) >= self.cfg.promote:
            return True
        return level in self.plateaued and _rate(self.recent[level]) >= self.cfg.plateau_floor

    @property
    def frontier(self) -> int:
        for level in range(self.lo, self.hi + 1):
            if not self.passed(level):
                return level
        return self.hi

    def distribution(self) -> dict[int, float]:
        """Level -> share of the step's prompts (sums to 1), by ``mode``."""
        uniform = {level: 1 / (self.hi - self.lo + 1) for level in range(self.lo, self.hi + 1)}
        if self.cfg.mode == "uniform":
            return uniform
        if self.cfg.mode == "fixed":
            return {self.lo + int(self.cfg.fixed_level * (self.hi - self.lo)): 1.0}
        f, c = self.frontier, self.cfg
        shares = {f - 1: c.replay, f + 1: c.probe}
        out = {level: w for level, w in shares.items() if self.lo <= level <= self.hi and w > 0}
        out[f] = max(0.0, 1.0 - sum(out.values()))
        total = sum(out.values())
        around = {level: w / total for level, w in out.items()} if total else {f: 1.0}
        u = c.uniform_share
        mixed = {level: (1 - u) * around.get(level, 0.0) + u * share for level, share in uniform.items()}
        return {level: w for level, w in mixed.items() if w > 0}

    def state_dict(self) -> dict:
        return {
            "rate": {str(level): p for level, p in self.rate.items()},
            "recent": {str(level): [list(g) for g in r] for level, r in self.recent.items()},
            "plateaued": sorted(self.plateaued),
        }

    def load_state_dict(self, state: dict) -> None:
        self.rate = {int(level): float(p) for level, p in state["rate"].items()}
        k2 = 2 * self.cfg.plateau_groups
        self.recent = {int(level): deque(map(tuple, r), maxlen=k2) for level, r in state["recent"].items()}
        self.plateaued = set(map(int, state["plateaued"]))


def _rate(groups) -> float:
    """Pooled pass rate of (passes, rollouts) groups."""
    n = sum(g[1] for g in groups)
    return sum(g[0] for g in groups) / n if n else 0.0
