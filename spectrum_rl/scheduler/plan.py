"""The Planner: each step, a mixture from the policy and mu from the mu schedules, as one StepPlan.

The Planner combines a mixture policy (which domains, how much; scheduler/policies/) with the
mu schedules (how much SFT per domain; scheduler/mu.py), allocates whole rows
(scheduler/blend.py ``allocate_rows``) and keeps the signals they read
(scheduler/signals.py). It sees only numbers — held-out scores and the trainer's StepSignals —
never tensors; the trainer executes the plan and reports back (scheduler/step.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.blend import SFTConfig, allocate_rows
from spectrum_rl.scheduler.difficulty import Frontier
from spectrum_rl.scheduler.mu import mu_schedule
from spectrum_rl.scheduler.policies import POLICIES, SchedulerConfig, View
from spectrum_rl.scheduler.progress import Falling, LearningProgress
from spectrum_rl.scheduler.prompts import PassRateTracker
from spectrum_rl.scheduler.shares import Credit
from spectrum_rl.scheduler.signals import EntropyMonitor, GradientAlignment, Learnability, OnlineTransfer
from spectrum_rl.scheduler.step import DomainPlan, StepPlan, StepSignals

STATE_LAYOUT = 9
"""The layout of ``Planner.state_dict``; a state of another layout is refused (``load_state_dict``)."""


class Planner:
    """``scheduler.policy`` + a mu schedule per domain + the signals both read.

    kinds: domain -> structured | creative, in config order; after: domain -> prerequisites;
    transfer: a transfer matrix in ``kinds`` order (``load_transfer``), or None; transfer_stderr:
    its standard errors, or None.
    """

    def __init__(
        self,
        kinds: Mapping[str, str],
        after: Mapping[str, Sequence[str]],
        scheduler: SchedulerConfig,
        sft: SFTConfig,
        prompts_per_step: int,
        transfer: np.ndarray | None = None,
        pools: Mapping[str, int] | None = None,
        ladders: Mapping[str, tuple[int, int]] | None = None,
        transfer_stderr: np.ndarray | None = None,
        steps: int | None = None,
        eval_n: Mapping[str, int] | None = None,
        seed: int = 0,
        max_rollouts: int | None = None,
    ) -> None:
        """``pools``: domain -> training pool size, for the domains with ``sampling: pass_rate``;
        ``ladders``: domain -> (easiest, hardest) level, for the domains with a difficulty range;
        ``steps``, ``max_rollouts``: the run's budget; ``eval_n``: domain -> held-out prompts per eval (for the
        guards' noise floors); ``seed``: the run's seed, from which a policy's draws derive."""
        names = list(kinds)
        sc = scheduler
        self.names, self.sft, self.prompts_per_step = names, sft, prompts_per_step
        policy = POLICIES.get(sc.policy.type, field="scheduler.policy.type")
        self.policy = policy(sc.policy, names)
        self.view = View(
            names,
            dict(kinds),
            {n: list(after.get(n, ())) for n in names},
            EntropyMonitor(dict(kinds), collapse_fraction=sc.entropy_collapse, window=sc.window),
            Learnability(sc.window, sc.success_threshold, sc.discount),
            GradientAlignment(),
            LearningProgress(sc.window // 2),
            Falling(threshold=sc.success_threshold),
            ladders=dict(ladders or {}),
            eval_n=dict(eval_n or {}),
            total_steps=steps,
            max_rollouts=max_rollouts,
            seed=seed,
        )
        self.view.transfer, self.view.transfer_stderr = transfer, transfer_stderr
        self.online = OnlineTransfer(names)
        self._transfer_online = False  # True once the online fit has replaced a missing/old estimate
        self.mu_schedules = {n: mu_schedule(sft.schedule_of(n)) for n in names}
        self.credit = (Credit(), Credit())  # (rollout prompts, demonstrations): shares owed across steps
        threshold = sc.success_threshold
        self.pass_rates = {d: PassRateTracker(n, sc.prompt_sampling, threshold) for d, n in (pools or {}).items()}
        self.frontiers = {d: Frontier(lo, hi, sc.difficulty, threshold) for d, (lo, hi) in (ladders or {}).items()}
        self.alignment_every = sc.alignment_every if policy.uses_alignment else 0

    def plan(self, step: int, mixture: Mapping[str, float] | None = None) -> StepPlan:
        """The plan of ``step``; ``mixture`` replaces the policy's (a transfer probe trains one domain).

        Call it once per step: the rows it allocates carry the mixture's fractional shares to the
        next call (``Credit``), so each call is the next step's allocation."""
        chosen: dict[str, dict[int, float]] = {}  # levels the policy chose (else the frontiers' mode)
        if mixture is None:
            decision = self.policy.decide(step, self.view)
            mixture, reason, mu_raise, chosen = decision.mixture, decision.reason, decision.mu_raise, decision.levels
            self.online.observe_mixture(mixture)
        else:
            mixture, reason, mu_raise = dict(mixture), "fixed mixture", {}
        mu = {n: max(schedule.mu(step), mu_raise.get(n, 0.0)) for n, schedule in self.mu_schedules.items()}
        gated = [n for n, schedule in self.mu_schedules.items() if schedule.per_prompt]
        by_need = [n for n, schedule in self.mu_schedules.items() if schedule.by_need]
        prompts, demos = allocate_rows(
            mixture, mu, gated, self.prompts_per_step, self.sft.expert_ratio, by_need, self.credit
        )
        domains = {}
        for n in self.names:
            tracker, frontier = self.pass_rates.get(n), self.frontiers.get(n)
            drawn = prompts.get(n, 0) > 0
            domains[n] = DomainPlan(
                share=float(mixture.get(n, 0.0)),
                mu=mu[n],
                prompts=prompts.get(n, 0),
                demos=demos.get(n, 0),
                gated=n in gated,
                prompt_weights=tracker.weights() if tracker is not None and drawn else None,
                levels=(chosen.get(n) or frontier.distribution()) if frontier is not None and drawn else None,
            )
        stats = {f"sampling/{k}/{d}": v for d, t in self.pass_rates.items() for k, v in t.stats().items()}
        stats |= {f"difficulty/frontier/{d}": float(f.frontier) for d, f in self.frontiers.items()}
        stats |= self.view.learnability.metrics()
        return StepPlan(domains, reason, stats)

    def observe_rollouts(self, total: int) -> None:
        """The completions generated so far (the budget's unit when ``max_rollouts`` is set)."""
        self.view.rollouts = total

    def wants_alignment(self, step: int) -> bool:
        return bool(self.alignment_every) and step % self.alignment_every == 0

    def observe_step(self, signals: StepSignals) -> None:
        """What the step just taken measured (entropy, |A|, samples, blindness, alignment)."""
        self.view.entropy.update({n: s.entropy for n, s in signals.domains.items() if s.entropy is not None})
        for n, schedule in self.mu_schedules.items():
            domain = signals.domains.get(n)
            schedule.observe_step(None if domain is None else domain.blind)
        groups = [(d, level, rewards) for d, _, level, rewards in signals.prompt_outcomes]
        self.view.learnability.observe(groups)
        self.view.falling.observe_groups(groups)
        self.view.progress.observe({d: s.reward for d, s in signals.domains.items() if s.reward is not None})
        if signals.alignment is not None:
            self.view.alignment.update(signals.alignment)
        for domain, index, level, rewards in signals.prompt_outcomes:
            if index is not None and domain in self.pass_rates:
                self.pass_rates[domain].observe(index, rewards)
            if level is not None and domain in self.frontiers:
                self.frontiers[domain].observe(level, rewards)

    def observe_eval(self, step: int, scores: dict[str, float]) -> None:
        """Held-out scores after ``step``: feeds the policy, the mu rules and the online transfer fit."""
        v = self.view
        v.scores = dict(scores)
        v.falling.observe_eval(scores, {n: k for n, k in v.eval_n.items() if n in scores})
        for n, s in scores.items():
            v.start.setdefault(n, s)
            v.best[n] = max(v.best.get(n, s), s)
            if n in self.mu_schedules:
                self.mu_schedules[n].observe(s)
        self.online.observe_eval(scores)
        if self.view.transfer is None or self._transfer_online:
            estimate = self.online.estimate()
            if estimate is not None:
                self.view.transfer, self.view.transfer_stderr = estimate
                self._transfer_online = True
        self.policy.observe_eval(step, v)

    def state_dict(self) -> dict:
        v = self.view
        return {
            "layout": STATE_LAYOUT,
            "policy": self.policy.state_dict(),
            "mu": {n: r.state_dict() for n, r in self.mu_schedules.items()},
            "credit": {"prompts": self.credit[0].state_dict(), "demos": self.credit[1].state_dict()},
            "pass_rates": {d: t.state_dict() for d, t in self.pass_rates.items()},
            "frontiers": {d: f.state_dict() for d, f in self.frontiers.items()},
            "entropy": v.entropy.state_dict(),
            "learnability": v.learnability.state_dict(),
            "alignment": v.alignment.state_dict(),
            "progress": v.progress.state_dict(),
            "falling": v.falling.state_dict(),
            "online": self.online.state_dict(),
            "scores": v.scores,
            "start": v.start,
            "best": v.best,
            "transfer": None if v.transfer is None else v.transfer.tolist(),
            "transfer_online": self._transfer_online,
            "transfer_stderr": None if v.transfer_stderr is None else v.transfer_stderr.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        """The state ``state_dict`` gave; ConfigError for a state of another layout."""
        if state.get("layout") != STATE_LAYOUT:
            raise ConfigError(
                f"the scheduler state has layout {state.get('layout', state.get('version'))!r}, and this version of "
                f"spectrum-rl reads layout {STATE_LAYOUT}: resume with the version that wrote it, or start afresh "
                "with `train --overwrite`",
                field="--resume",
            )
        for d, tracker in self.pass_rates.items():
            tracker.load_state_dict(state["pass_rates"][d])
        for d, frontier in self.frontiers.items():
            frontier.load_state_dict(state["frontiers"][d])
        v = self.view
        self.policy.load_state_dict(state["policy"])
        for n, s in state["mu"].items():
            self.mu_schedules[n].load_state_dict(s)
        for credit, kind in zip(self.credit, ("prompts", "demos")):
            credit.load_state_dict(state["credit"][kind])
        v.entropy.load_state_dict(state["entropy"])
        v.learnability.load_state_dict(state["learnability"])
        v.alignment.load_state_dict(state["alignment"])
        v.progress.load_state_dict(state["progress"])
        v.falling.load_state_dict(state["falling"])
        self.online.load_state_dict(state["online"])
        v.scores, v.start, v.best = state["scores"], state["start"], state["best"]
        v.transfer = None if state["transfer"] is None else np.asarray(state["transfer"])
        self._transfer_online = state["transfer_online"]
        stderr = state["transfer_stderr"]
        v.transfer_stderr = None if stderr is None else np.asarray(stderr)


def load_transfer(path: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(T, its standard errors) from a transfer.json written by `spectrum-rl order` (rows/cols
    reordered to ``names``); the standard errors are None in a file from before they were recorded."""
    try:
        data = json.loads(Path(path).read_text())

        def matrix(key: str) -> np.ndarray:
            return np.array([[float(data[key][a][b]) for b in names] for a in names])

        return matrix("transfer"), matrix("stderr") if "stderr" in data else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read a transfer matrix for these domains from {path} ({type(exc).__name__}: {exc})",
            field="scheduler.transfer_file",
        ) from None
