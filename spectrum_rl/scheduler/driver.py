"""The scheduler as a library object, for a training loop that is not ours.

    scheduler = Scheduler([Domain("math"), Domain("poems", kind="creative")], prompts_per_step=8, policy="adaptive")
    plan = scheduler.plan()                          # domain -> prompts to draw, levels, mu
    ...roll out plan.prompts[d] prompts of each domain d, score them...
    scheduler.observe({"math": [[1, 0, 1, 1], ...], "poems": [[0.2, 0.7, 0.4, 0.1], ...]})

``SchedulerBase`` (public as ``spectrum_rl.Scheduler``, which adds ``from_config``) wraps the
same Planner our trainer uses (plan.py), so a policy behaves the same
inside and outside it. It reads only numbers: each group's rewards (its success rate gives
learnability, the difficulty frontier and the per-prompt pass rates), optionally each domain's
mean token entropy (the collapse guard) and held-out scores (forgetting, plateaus, the mu rules).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spectrum_rl.scheduler.blend import SFTConfig
from spectrum_rl.scheduler.plan import Planner
from spectrum_rl.scheduler.policies import SchedulerConfig
from spectrum_rl.scheduler.step import DomainSignals, StepPlan, StepSignals


@dataclass(frozen=True)
class Domain:
    """One domain: a named set of prompts with its reward. What the scheduler reads of it (``name``,
    ``kind``, ``after``, ``pool``, ``levels``, ``eval_size``), and what `spectrum_rl.train` trains on
    (``data``, ``reward`` and how rows become prompts).

    name: the domain's name (the key of every mapping in plans and signals).
    data: its rows, for `train`: a ``datasets.Dataset``, a pandas DataFrame, a dict of columns or a
        list of mappings, each with the prompt
        (column ``prompt`` or ``question``) and whatever the reward reads (e.g. ``answer``).
    reward: for `train`: a TRL-style function ``fn(prompts, completions, **columns) -> list[float]``
        (every row column arrives as a keyword, one value per completion), or a list of such
        functions (TRL's ``reward_funcs``: summed, each logged under its name) and reward
        components as in YAML (``[{"type": "exact_match"}, ...]``); one component alone needs no
        list (``"exact_match"``).
    reward_weights: for `train`: one weight per entry of ``reward`` (TRL's ``reward_weights``);
        None: each entry's own (a YAML component's ``weight``, else 1).
    kind: ``structured`` (one verifiable answer) or ``creative`` (many valid answers).
    after: prerequisite domains (the domain graph's edges; a prerequisite locks the domain for a while).
    prompt: the prompt template over a row's fields; None: ``{prompt}`` when the rows have a
        ``prompt`` column, else ``{question}\n``.
    system_prompt: for `train`: a system message before each prompt (a template over the row's
        fields; needs the model's chat template); None: the row's own, if its prompt has one.
    answer_field / expert_field: the row fields holding the reference answer and an expert
        demonstration (``auto``: ``expert`` when the rows have one).
    eval_size: rows held out for evaluation (`train`: default a fifth of the distinct prompts, at
        most 100; a held-out prompt is never trained on); for the scheduler, held-out prompts per
        evaluation (the noise floor of its guards).
    pool: rows in the domain's training pool, to weigh each prompt by its pass rate
        (``sampling: pass_rate``): the plan then gives one weight per row; None: uniform draws.
    levels: (easiest, hardest) difficulty level, for a domain drawn at levels: the plan then gives
        each level's share of the domain's prompts; None: no difficulty curriculum.
    difficulty_field: for `train`: the row column holding each row's integer difficulty level (as
        YAML's ``difficulty_field``): the rows become a ladder from their easiest level to their
        hardest and the scheduler picks each prompt's level; `train` derives ``levels`` from it.
    """

    name: str
    data: Any = field(default=None, repr=False)
    reward: Any = field(default=None, repr=False)
    reward_weights: tuple[float, ...] | None = None
    kind: Literal["structured", "creative"] = "structured"
    after: tuple[str, ...] = ()
    prompt: str | None = None
    system_prompt: str | None = None
    answer_field: str | None = "answer"
    expert_field: str | None = "auto"
    eval_size: int | None = None
    pool: int | None = None
    levels: tuple[int, int] | None = None
    difficulty_field: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "after", tuple(self.after))  # a list is accepted; the domain stays hashable


@dataclass(frozen=True)
class Outcome:
    """One scored rollout group: its domain, the total reward of each completion, and, where the
    scheduler chose them, the prompt's row in the domain's pool and its difficulty level."""

    domain: str
    rewards: tuple[float, ...]
    index: int | None = None
    level: int | None = None


class SchedulerBase:
    """Plans each step's domain mixture, difficulty levels, prompt weights and mu; learns from
    the outcomes it is told. ``plan()`` once per step, ``observe(...)`` with what that step scored.

    domains: the domains (``Domain`` or a mapping of its fields), in order.
    prompts_per_step: rollout prompts a step draws, over all domains (a plan's counts sum to it).
    steps: the run's budget in steps (prerequisite locks open at ``unlock_share`` of it); None: unknown.
    policy: a registered mixture policy (``joint``, ``adaptive``, ``sec``, ``thompson``, ...); it
        overrides ``scheduler``'s.
    scheduler: the `scheduler:` section of a run config (a mapping or ``SchedulerConfig``).
    sft: the `training.sft:` section (mu schedules; default: RL only, mu = 0).
    seed: the run's seed; a policy that draws (``thompson``) derives its draws from it and the step.
    """

    def __init__(
        self,
        domains: Sequence[Domain | Mapping[str, Any]],
        *,
        prompts_per_step: int,
        steps: int | None = None,
        policy: str | None = None,
        scheduler: SchedulerConfig | Mapping[str, Any] | None = None,
        sft: SFTConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        domains = [d if isinstance(d, Domain) else Domain(**d) for d in domains]
        names = [d.name for d in domains]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"domains need distinct names, at least one; got {names}")
        sc = scheduler if isinstance(scheduler, SchedulerConfig) else SchedulerConfig.model_validate(scheduler or {})
        if policy is not None:  # a name or a mapping, validated as in a config (an unknown name lists the valid ones)
            sc = SchedulerConfig.model_validate({**sc.model_dump(), "policy": policy})
        sft = sft if isinstance(sft, SFTConfig) else SFTConfig.model_validate(sft or {})
        planner = Planner(
            {d.name: d.kind for d in domains},
            {d.name: d.after for d in domains},
            sc,
            sft,
            prompts_per_step,
            pools={d.name: d.pool for d in domains if d.pool is not None},
            ladders={d.name: d.levels for d in domains if d.levels is not None},
            steps=steps,
            eval_n={d.name: d.eval_size for d in domains if d.eval_size is not None},
            seed=seed,
        )
        self._setup(planner)

    @classmethod
    def from_planner(cls, planner: Planner) -> SchedulerBase:
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
        """Domain -> pool size, for the domains whose prompts are weighed by pass rate."""
        return {d: t.size for d, t in self._planner.pass_rates.items()}

    @property
    def ladders(self) -> dict[str, tuple[int, int]]:
        """Domain -> (easiest, hardest) level, for the domains with a difficulty range."""
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
        optionally, each domain's mean token entropy of its rollouts. Pass every group rolled out,
        those a filter such as dynamic sampling dropped included: pass rates read from the kept
        groups alone are biased towards 1/2."""
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
        """Continue from a state ``save`` wrote (a scheduler built with the same domains and settings)."""
        self.load_state_dict(json.loads(Path(path).read_text()))
