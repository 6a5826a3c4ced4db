"""Difficulty curriculum over a generator knob given as a range (``difficulty: {length: [2, 8]}``).

Per level l of the range, a pass-rate estimate p_l (an exponential moving average of the fraction
of a group's rollouts whose total reward reaches ``scheduler.success_threshold``). The frontier is the
easiest level not yet mastered, f = min{l : p_l < promote} (the hardest level once all are);
an unseen level counts as not mastered, so the frontier starts at the easiest level and moves up
as levels are mastered, and down again if one is forgotten. Each step's prompts take level f
with the remaining weight, f - 1 with ``replay`` (against forgetting) and f + 1 with ``probe``
(so the next level is measured before it becomes the frontier). This is the moving difficulty
frontier of online difficulty filtering (arXiv:2504.03380) and of SEC's bandit over difficulty
levels (arXiv:2505.14970), in its simplest deterministic form. Pure Python.
"""

from __future__ import annotations

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

    def observe(self, level: int, rewards: Sequence[float]) -> None:
        if rewards:
            s = sum(r >= self.threshold for r in rewards) / len(rewards)
            p = self.rate.get(level)
            self.rate[level] = s if p is None else (1 - self.cfg.ema) * p + self.cfg.ema * s

    @property
    def frontier(self) -> int:
        for level in range(self.lo, self.hi + 1):
            if self.rate.get(level, 0.0) < self.cfg.promote:
                return level
        return self.hi

    def distribution(self) -> dict[int, float]:
        """Level -> share of the step's prompts (sums to 1), by ``mode``."""
        if self.cfg.mode == "uniform":
            return {level: 1 / (self.hi - self.lo + 1) for level in range(self.lo, self.hi + 1)}
        if self.cfg.mode == "fixed":
            return {self.lo + int(self.cfg.fixed_level * (self.hi - self.lo)): 1.0}
        f, c = self.frontier, self.cfg
        shares = {f - 1: c.replay, f + 1: c.probe}
        out = {level: w for level, w in shares.items() if self.lo <= level <= self.hi and w > 0}
        out[f] = max(0.0, 1.0 - sum(out.values()))
        total = sum(out.values())
        return {level: w / total for level, w in sorted(out.items())} if total else {f: 1.0}

    def state_dict(self) -> dict:
        return {"rate": {str(level): p for level, p in self.rate.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.rate = {int(level): float(p) for level, p in state["rate"].items()}
