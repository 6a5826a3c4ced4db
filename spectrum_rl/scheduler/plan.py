"""The Planner: each step, a mixture from the policy and mu from the blend, as one StepPlan.

The Planner combines a mixture policy (which domains, how much; scheduler/policies.py) with the
mu schedules (how much SFT per domain; scheduler/blend.py) and keeps the signals they read
(scheduler/signals.py). It sees only numbers — held-out scores and the trainer's StepSignals —
never tensors; the trainer executes the plan and reports back (scheduler/step.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.blend import Credit, SFTConfig, allocate_rows, mu_rule
from spectrum_rl.scheduler.difficulty import Frontier
from spectrum_rl.scheduler.policies import POLICIES, SchedulerConfig, View
from spectrum_rl.scheduler.prompts import PassRateTracker
from spectrum_rl.scheduler.signals import EntropyMonitor, GradientAlignment, Learnability, OnlineTransfer
from spectrum_rl.scheduler.step import StepPlan, StepSignals

STATE_VERSION = 6
"""Layout of ``Planner.state_dict``. 1 (saved without a version): from before per-domain mu rules,
blindness routing and plateaued prerequisites; 2: from before the allocation credit (each step's
rows were rounded on their own); 3: from before per-prompt pass rates; 4: from before difficulty
frontiers; 5: learnability was a normalised |advantage|. ``Planner.upgrade`` turns any of them
into this one."""


class Planner:
    """``scheduler.policy`` + a mu rule per domain + the signals both read.

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
    ) -> None:
        """``pools``: domain -> training pool size, for the domains with ``sampling: pass_rate``;
        ``ladders``: domain -> (easiest, hardest) level, for the domains with a difficulty range;
        ``steps``: the run's budget; ``eval_n``: domain -> held-out prompts per eval (for the
        guards' noise floors)."""
        names = list(kinds)
        sc = scheduler
        self.names, self.sft, self.prompts_per_step = names, sft, prompts_per_step
        policy = POLICIES.get(sc.policy, field="scheduler.policy")
        self.policy = policy(sc, names)
        self.view = View(
            names,
            dict(kinds),
            {n: list(after.get(n, ())) for n in names},
            EntropyMonitor(dict(kinds), collapse_fraction=sc.entropy_collapse, window=sc.window),
            Learnability(sc.window, sc.success_threshold, sc.discount),
            GradientAlignment(),
            ladders=dict(ladders or {}),
            eval_n=dict(eval_n or {}),
            total_steps=steps,
        )
        self.view.transfer, self.view.transfer_stderr = transfer, transfer_stderr
        self.online = OnlineTransfer(names)
        self._transfer_online = False  # True once the online fit has replaced a missing/old estimate
        self.mu_rules = {n: mu_rule(sft.schedule_of(n)) for n in names}
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
        mu = {n: max(rule.mu(step), mu_raise.get(n, 0.0)) for n, rule in self.mu_rules.items()}
        gate = {n: self.sft.schedule_of(n).gamma for n, rule in self.mu_rules.items() if rule.per_prompt}
        by_need = [n for n, rule in self.mu_rules.items() if rule.by_need]
        prompts, demos = allocate_rows(
            mixture, mu, gate, self.prompts_per_step, self.sft.expert_ratio, by_need, self.credit
        )
        weights = {d: t.weights() for d, t in self.pass_rates.items() if prompts.get(d)}
        levels = {d: chosen.get(d) or f.distribution() for d, f in self.frontiers.items() if prompts.get(d)}
        stats = {f"sampling/{k}/{d}": v for d, t in self.pass_rates.items() for k, v in t.stats().items()}
        stats |= {f"difficulty/frontier/{d}": float(f.frontier) for d, f in self.frontiers.items()}
        stats |= self.view.learnability.metrics()
        return StepPlan(dict(mixture), mu, reason, prompts, demos, gate, weights, levels, stats)

    def wants_alignment(self, step: int) -> bool:
        return bool(self.alignment_every) and step % self.alignment_every == 0

    def observe_step(self, signals: StepSignals) -> None:
        """What the step just taken measured (entropy, |A|, samples, blindness, alignment)."""
        self.view.entropy.update({n: s.entropy for n, s in signals.domains.items() if s.entropy is not None})
        for n, rule in self.mu_rules.items():
            domain = signals.domains.get(n)
            rule.observe_step(None if domain is None else domain.blind)
        self.view.learnability.observe([(d, level, rewards) for d, _, level, rewards in signals.prompt_outcomes])
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
        for n, s in scores.items():
            v.start.setdefault(n, s)
            v.best[n] = max(v.best.get(n, s), s)
            if n in self.mu_rules:
                self.mu_rules[n].observe(s)
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
            "version": STATE_VERSION,
            "policy": self.policy.state_dict(),
            "mu": {n: r.state_dict() for n, r in self.mu_rules.items()},
            "credit": {"prompts": self.credit[0].state_dict(), "demos": self.credit[1].state_dict()},
            "pass_rates": {d: t.state_dict() for d, t in self.pass_rates.items()},
            "frontiers": {d: f.state_dict() for d, f in self.frontiers.items()},
            "entropy": v.entropy.state_dict(),
            "learnability": v.learnability.state_dict(),
            "alignment": v.alignment.state_dict(),
            "online": self.online.state_dict(),
            "scores": v.scores,
            "start": v.start,
            "best": v.best,
            "transfer": None if v.transfer is None else v.transfer.tolist(),
            "transfer_online": self._transfer_online,
            "transfer_stderr": None if v.transfer_stderr is None else v.transfer_stderr.tolist(),
        }

    def upgrade(self, state: dict) -> dict:
        """A state saved by an earlier layout, in this one (the one place that knows old layouts)."""
        if state.get("version", 1) == 1:
            state = {"transfer_stderr": None, **state, "version": 2, "mu": dict(state.get("mu", {}))}  # no mu: fresh
            for name, old in state["mu"].items():
                if "need" not in old:  # before blindness routing its one mu was the disruption term
                    initial = self.mu_rules[name].spec.initial
                    current = initial if old["current"] is None else old["current"]
                    state["mu"][name] = {
                        "baseline": old["baseline"],
                        "under": 0.0,
                        "need": initial,
                        "disruption": current,
                    }
            if "q" in state["policy"]:  # the bandits; adaptive's plateau records start empty
                state["policy"] = {"peak": {}, "stale": {}, "done": {}, "creative": [], **state["policy"]}
        if state["version"] == 2:  # rows were rounded per step: nothing owed, every credit starts at 0
            state = {**state, "version": 3, "credit": {"prompts": {}, "demos": {}}}
        if state["version"] == 3:  # no prompt was tracked: every pool starts unseen
            state = {**state, "version": 4, "pass_rates": {}}
        if state["version"] == 4:  # no level was tracked: every ladder starts at its easiest level
            state = {**state, "version": 5, "frontiers": {}}
        if state["version"] == 5:  # |A| learnability means something else: measured afresh from success rates
            policy = {k: v for k, v in state["policy"].items() if k not in ("q", "seen")}
            if "q" in state["policy"]:
                policy |= {"q": {}, "seen": {}}
            state = {**state, "version": 6, "learnability": {"values": {}, "counts": {}}, "policy": policy}
        return state

    def load_state_dict(self, state: dict) -> None:
        state = self.upgrade(state)
        for d, tracker in self.pass_rates.items():
            tracker.load_state_dict(state["pass_rates"].get(d, {"rate": {}, "visits": {}}))
        for d, frontier in self.frontiers.items():
            frontier.load_state_dict(state["frontiers"].get(d, {"rate": {}}))
        v = self.view
        self.policy.load_state_dict(state["policy"])
        for n, s in state["mu"].items():
            self.mu_rules[n].load_state_dict(s)
        for credit, kind in zip(self.credit, ("prompts", "demos")):
            credit.load_state_dict(state["credit"][kind])
        v.entropy.load_state_dict(state["entropy"])
        v.learnability.load_state_dict(state["learnability"])
        v.alignment.load_state_dict(state["alignment"])
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
