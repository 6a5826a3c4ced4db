"""The scheduler as a library object, for a training loop that is not ours.

    scheduler = Scheduler([Task("math"), Task("poems", kind="creative")], prompts_per_step=8, policy="adaptive")
    plan = scheduler.plan()                          # domain -> prompts to draw, levels, mu
    ...roll out plan.prompts[d] prompts of each domain d, score them...
    scheduler.observe({"math": [[1, 0, 1, 1], ...], "poems": [[0.2, 0.7, 0.4, 0.1], ...]})

``Scheduler`` wraps the same Planner our trainer uses (plan.py), so a policy behaves the same
inside and outside it. It reads only numbers: each group's rewards (its success rate gives
learnability, the difficulty frontier and the per-prompt pass rates), optionally each domain's
mean token entropy (the collapse guard) and held-out scores (forgetting, plateaus, the mu rules).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spectrum_rl.scheduler.blend import SFTConfig
from spectrum_rl.scheduler.plan import Planner
from spectrum_rl.scheduler.policies import SchedulerConfig
from spectrum_rl.scheduler.step import DomainSignals, StepPlan, StepSignals


@dataclass(frozen=True)
class Task:
    """One domain as the scheduler sees it.

    name: the domain's name (the key of every mapping in plans and signals).
    kind: ``structured`` (one verifiable answer) or ``creative`` (many valid answers).
    after: prerequisite domains (the task graph's edges; a prerequisite locks the domain for a while).
    pool: rows in the domain's training pool, to weigh each prompt by its pass rate
        (``sampling: pass_rate``): the plan then gives one weight per row; None: uniform draws.
    levels: (easiest, hardest) difficulty level, for a domain drawn at levels: the plan then gives
        each level's share of the domain's prompts; None: no difficulty curriculum.
    eval_size: held-out prompts per evaluation (the noise floor of the eval guards); None: unknown.
    """

    name: str
    kind: Literal["structured", "creative"] = "structured"
    after: tuple[str, ...] = ()
    pool: int | None = None
    levels: tuple[int, int] | None = None
    eval_size: int | None = None


@dataclass(frozen=True)
class Outcome:
    """One scored rollout group: its domain, the total reward of each completion, and, where the
    scheduler chose them, the prompt's row in the domain's pool and its difficulty level."""

    domain: str
    rewards: tuple[float, ...]
    index: int | None = None
    level: int | None = None


class Scheduler:
    """Plans each step's domain mixture, difficulty levels, prompt weights and mu; learns from
    the outcomes it is told. ``plan()`` once per step, ``observe(...)`` with what that step scored.

    tasks: the domains (``Task`` or a mapping of its fields), in order.
    prompts_per_step: rollout prompts a step draws, over all domains (a plan's counts sum to it).
    steps: the run's budget in steps (prerequisite locks open at ``unlock_share`` of it); None: unknown.
    policy: a registered mixture policy (``joint``, ``adaptive``, ``sec``, ``thompson``, ...); it
        overrides ``scheduler``'s.
    scheduler: the `scheduler:` section of a run config (a mapping or ``SchedulerConfig``).
    sft: the `training.sft:` section (mu schedules; default: RL only, mu = 0).
    """

    def __init__(
        self,
        tasks: Sequence[Task | Mapping[str, Any]],
        *,
        prompts_per_step: int,
        steps: int | None = None,
        policy: str | None = None,
        scheduler: SchedulerConfig | Mapping[str, Any] | None = None,
        sft: SFTConfig | Mapping[str, Any] | None = None,
    ) -> None:
        tasks = [t if isinstance(t, Task) else Task(**{**t, "after": tuple(t.get("after", ()))}) for t in tasks]
        names = [t.name for t in tasks]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks need distinct names, at least one; got {names}")
        sc = scheduler if isinstance(scheduler, SchedulerConfig) else SchedulerConfig.model_validate(scheduler or {})
        if policy is not None:  # a name or a mapping, validated as in a config (an unknown name lists the valid ones)
            sc = SchedulerConfig.model_validate({**sc.model_dump(), "policy": policy})
        sft = sft if isinstance(sft, SFTConfig) else SFTConfig.model_validate(sft or {})
        planner = Planner(
            {t.name: t.kind for t in tasks},
            {t.name: t.after for t in tasks},
            sc,
            sft,
            prompts_per_step,
            pools={t.name: t.pool for t in tasks if t.pool is not None},
            ladders={t.name: t.levels for t in tasks if t.levels is not None},
            steps=steps,
            eval_n={t.name: t.eval_size for t in tasks if t.eval_size is not None},
        )
        self._setup(planner)

    @classmethod
    def from_planner(cls, planner: Planner) -> Scheduler:
        """A Scheduler around a Planner already built (``spectrum_rl.Scheduler.from_config``)."""
        scheduler = cls.__new__(cls)
        scheduler._setup(planner)
        return scheduler

    def _setup(self, planner: Planner) -> None:
        self._planner, self.step = planner, 0

    @property
    def domains(self) -> list[str]:
        return list(self._planner.names)

    @property
    def prompts_per_step(self) -> int:
        return self._planner.prompts_per_step

    @property
    def pools(self) -> dict[str, int]:
        """Domain -> pool size, for the tasks whose prompts are weighed by pass rate."""
        return {d: t.size for d, t in self._planner.pass_rates.items()}

    @property
    def ladders(self) -> dict[str, tuple[int, int]]:
        """Domain -> (easiest, hardest) level, for the tasks with a difficulty range."""
        return {d: (f.lo, f.hi) for d, f in self._planner.frontiers.items()}

    @property
    def uses_demonstrations(self) -> bool:
        """Whether some domain's mu schedule can train on demonstrations (mu > 0)."""
        return any(schedule.max_mu() > 0 for schedule in self._planner.mu_schedules.values())

    def plan(self) -> StepPlan:
        """The next step's plan, and the step counter moves on. ``plan.prompts``: domain -> prompts to
        draw; ``plan.levels``: domain -> {level: share}; ``plan.prompt_weights``: domain -> a weight
        per pool row; ``plan.mu``: domain -> SFT weight; ``plan.mixture``, ``plan.reason``."""
        plan = self._planner.plan(self.step)
        self.step += 1
        return plan

    def observe(
        self,
        outcomes: Mapping[str, Sequence[Sequence[float]]] | Sequence[Outcome],
        entropy: Mapping[str, float] | None = None,
    ) -> None:
        """What a planned step scored: per domain its groups' rewards (``{"math": [[1, 0, 1, 1], ...]}``),
        or ``Outcome``s (with the prompt's pool row and level where the plan chose them); and,
        optionally, each domain's mean token entropy of its rollouts."""
        if isinstance(outcomes, Mapping):
            outcomes = [Outcome(d, tuple(g)) for d, groups in outcomes.items() for g in groups]
        entropy = dict(entropy or {})
        for d in [o.domain for o in outcomes] + list(entropy):
            if d not in self._planner.names:
                raise ValueError(f"signals of unknown domain '{d}'; domains: {', '.join(self.domains)}")
        outcomes = [Outcome(o.domain, tuple(float(r) for r in o.rewards), o.index, o.level) for o in outcomes]
        for o in outcomes:
            if not all(math.isfinite(r) for r in o.rewards):
                raise ValueError(f"domain '{o.domain}': rewards must be finite numbers, got {list(o.rewards)}")
        signals = {}
        for d in self._planner.names:
            groups = [o.rewards for o in outcomes if o.domain == d]
            flat = [r for g in groups for r in g]
            blind = [bool(g) and max(g) <= 0 and min(g) == max(g) for g in groups]  # no RL signal at reward 0
            signals[d] = DomainSignals(
                reward=float(np.mean(flat)) if flat else None,
                entropy=float(entropy[d]) if d in entropy else None,
                samples=len(flat),
                blind=float(np.mean(blind)) if blind else None,
            )
        prompt_outcomes = tuple((o.domain, o.index, o.level, o.rewards) for o in outcomes)
        self._planner.observe_step(StepSignals(signals, prompt_outcomes=prompt_outcomes))

    def observe_eval(self, scores: Mapping[str, float]) -> None:
        """Held-out scores (domain -> mean score) after the steps planned so far; the first call
        counts as before training."""
        unknown = set(scores) - set(self._planner.names)
        if unknown:
            raise ValueError(f"scores of unknown domains {sorted(unknown)}; domains: {', '.join(self.domains)}")
        self._planner.observe_eval(self.step, {d: float(s) for d, s in scores.items()})

    def state_dict(self) -> dict[str, Any]:
        """Everything the scheduler learned (JSON-compatible), with the step counter."""
        return {"step": self.step, "planner": self._planner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._planner.load_state_dict(dict(state["planner"]))
        self.step = int(state["step"])

    def save(self, path: str | Path) -> None:
        """``state_dict()`` as JSON at ``path``."""
        Path(path).write_text(json.dumps(self.state_dict()))

    def load(self, path: str | Path) -> None:
        """Continue from a state ``save`` wrote (a scheduler built with the same tasks and settings)."""
        self.load_state_dict(json.loads(Path(path).read_text()))
