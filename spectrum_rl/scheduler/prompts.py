"""Prompt-level curriculum for finite pools (``domains[i].sampling: pass_rate``).

Per prompt of a domain's training pool, a pass-rate tracker: after each step that drew it,
    p <- (1 - a) p + a s,     s = fraction of its rollouts whose total reward >= scheduler.success_threshold
(an exponential moving average, a = ``ema``; an unseen prompt starts at ``prior``). The prompt's
sampling weight is its learnability p (1 - p), the variance of a Bernoulli(p) reward and so the
expected share of groups with a learning signal (the pass-rate curricula of online difficulty
filtering, arXiv:2504.03380, and SEC/DUMP's |A|-based bandits, arXiv:2505.14970,
arXiv:2504.09710, measured per prompt). A prompt seen at least ``min_visits`` times whose p is
>= ``solved`` or <= ``hopeless`` is retired: it keeps ``revisit`` of the unseen prompts' weight, so
it is drawn again now and then and can come back when the policy has changed. Pure Python: the
trainer draws the prompts with these weights and reports each group's rewards back.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from spectrum_rl.schema import StrictModel


class PromptSamplingConfig(StrictModel):
    """`scheduler.prompt_sampling:` — the pass-rate sampler of domains with `sampling: pass_rate`."""

    ema: float = Field(0.5, gt=0, le=1, description="Weight of a step's observed pass rate in the prompt's estimate.")
    prior: float = Field(0.5, ge=0, le=1, description="Pass rate assumed for a prompt not yet drawn.")
    solved: float = Field(0.95, ge=0, le=1, description="Retire a prompt whose pass rate is at least this.")
    hopeless: float = Field(0.05, ge=0, le=1, description="Retire a prompt whose pass rate is at most this.")
    min_visits: int = Field(2, ge=1, description="Draws of a prompt before it may be retired.")
    revisit: float = Field(
        0.05, ge=0, le=1, description="A retired prompt's weight, as a fraction of an unseen prompt's weight."
    )


class PassRateTracker:
    """Pass-rate estimates and sampling weights over one domain's pool of ``size`` prompts."""

    def __init__(self, size: int, cfg: PromptSamplingConfig, threshold: float = 1.0) -> None:
        self.size, self.cfg, self.threshold = size, cfg, threshold
        self.rate: dict[int, float] = {}  # prompt index -> pass-rate estimate (drawn prompts only)
        self.visits: dict[int, int] = {}
        self._unseen = max(cfg.prior * (1 - cfg.prior), 1e-3)
        self._weights = [self._unseen] * size  # kept up to date prompt by prompt: a step costs O(drawn)
        self._retired: set[int] = set()

    def observe(self, index: int, rewards: Sequence[float]) -> None:
        """One group of ``index``'s rollouts (total rewards)."""
        if not rewards:
            return
        s = sum(r >= self.threshold for r in rewards) / len(rewards)
        p = self.rate.get(index, self.cfg.prior)
        self.rate[index] = (1 - self.cfg.ema) * p + self.cfg.ema * s
        self.visits[index] = self.visits.get(index, 0) + 1
        self._weights[index] = self._weight(index)
        (self._retired.add if self.retired(index) else self._retired.discard)(index)

    def retired(self, index: int) -> bool:
        c = self.cfg
        p = self.rate.get(index)
        return p is not None and self.visits[index] >= c.min_visits and (p >= c.solved or p <= c.hopeless)

    def _weight(self, index: int) -> float:
        if index not in self.rate:
            return self._unseen
        if self.retired(index):
            return self.cfg.revisit * self._unseen
        p = self.rate[index]
        return max(p * (1 - p), 1e-3 * self._unseen)  # an estimate of 0 or 1 not yet retired

    def weights(self) -> list[float]:
        """Sampling weight of every prompt of the pool: learnability p (1 - p), the prior's for an
        unseen prompt, ``revisit`` of that for a retired one (a copy: the plan keeps it). Never
        all zero (``revisit: 0`` with every prompt retired draws uniformly)."""
        w = list(self._weights)
        return w if any(w) else [1.0] * self.size

    def stats(self) -> dict[str, float]:
        """What is logged: retired prompts, prompts seen, their mean pass rate."""
        seen = len(self.rate)
        return {
            "retired": float(len(self._retired)),
            "seen": float(seen),
            "pass_rate": sum(self.rate.values()) / seen if seen else self.cfg.prior,
        }

    def state_dict(self) -> dict:
        return {
            "rate": {str(i): p for i, p in self.rate.items()},
            "visits": {str(i): v for i, v in self.visits.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.rate = {int(i): float(p) for i, p in state["rate"].items()}
        self.visits = {int(i): int(v) for i, v in state["visits"].items()}
        self._weights = [self._weight(i) for i in range(self.size)]
        self._retired = {i for i in self.rate if self.retired(i)}
