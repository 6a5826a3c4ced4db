"""bwt (Omni-Thinker style, arXiv:2507.14783): domains in phases, ordered from the transfer matrix
and the kinds (structured before creative unless T says otherwise; prerequisites hard); a phase
ends on a held-out plateau or its step budget, with replay of the earlier domains."""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from spectrum_rl.scheduler.order import best_order, significant_transfer
from spectrum_rl.scheduler.policies.base import POLICIES, Decision, Policy, View, phase_mixture
from spectrum_rl.scheduler.policies.fixed import SequentialParams


class BWTParams(SequentialParams):
    """Phases ordered from transfer, ended by a plateau or their budget."""

    order: list[str] | None = Field(None, description="An explicit domain order (null: computed from transfer).")
    plateau_patience: int = Field(2, ge=1, description="Evaluations without improvement before the next phase.")
    plateau_delta: float = Field(0.01, ge=0, description="Held-out improvement that resets the plateau count.")


@POLICIES.register("bwt")
class BWT(Policy):
    """Ordered phases from the transfer matrix; advance on plateau or budget."""

    Params = BWTParams

    def __init__(self, params: BWTParams, names: list[str]) -> None:
        super().__init__(params, names)
        self.order: list[str] | None = None
        self.phase, self.phase_start, self.stale, self.phase_best = 0, 0, 0, -math.inf
        self.why = ""
        self._planned_from: np.ndarray | None = None  # the transfer matrix the order was made from

    def _ensure_order(self, view: View, step: int) -> None:
        """The order of phases: explicit, else the best order for the current transfer matrix. When
        a new matrix arrives (the online estimate appears or is refitted after an eval), the
        domains not started yet are re-ordered; finished and current phases stay."""
        if self.params.order:
            if self.order is None:
                self.order, self.why = list(self.params.order), "explicit order"
            return
        if self.order is not None and view.transfer is self._planned_from:
            return
        T = view.transfer if view.transfer is not None else np.zeros((len(self.names), len(self.names)))
        if view.transfer_stderr is not None:  # order only on what the data determine
            T = significant_transfer(T, view.transfer_stderr)
        best = best_order(self.names, T, view.kinds, view.prerequisites).order
        self._planned_from = view.transfer
        if self.order is None:
            self.order = best
            self.why = "transfer matrix" if view.transfer is not None else "kinds (no transfer estimate yet)"
            return
        started = self.order[: self.phase + 1]
        replanned = started + [n for n in best if n not in started]
        if replanned != self.order:
            self.order, self.why = replanned, f"transfer matrix (re-planned at step {step}: new estimate)"

    def decide(self, step: int, view: View) -> Decision:
        self._ensure_order(view, step)
        assert self.order is not None
        if step - self.phase_start >= self.params.phase_steps and self.phase < len(self.order) - 1:
            self._advance(step)
        current = self.order[self.phase]
        reason = f"bwt: phase {self.phase + 1}/{len(self.order)} ({current}); order by {self.why}"
        mixture = {**{n: 0.0 for n in self.names}, **phase_mixture(self.order, self.phase, self.params.replay)}
        return Decision(mixture, reason)

    def _advance(self, step: int) -> None:
        self.phase += 1
        self.phase_start, self.stale, self.phase_best = step, 0, -math.inf

    def observe_eval(self, step: int, view: View) -> None:
        if self.order is None or self.phase >= len(self.order) - 1:
            return
        score = view.scores.get(self.order[self.phase])
        if score is None or step == self.phase_start:
            return
        if score > self.phase_best + self.params.plateau_delta:
            self.phase_best, self.stale = score, 0
        else:
            self.stale += 1
            if self.stale >= self.params.plateau_patience:
                self._advance(step)

    def state_dict(self) -> dict:
        return {
            "order": self.order,
            "phase": self.phase,
            "phase_start": self.phase_start,
            "stale": self.stale,
            "phase_best": None if self.phase_best == -math.inf else self.phase_best,  # JSON has no -inf
            "why": self.why,
        }

    def load_state_dict(self, state: dict) -> None:
        self.order, self.phase, self.phase_start = state["order"], state["phase"], state["phase_start"]
        best = state["phase_best"]
        self.stale, self.phase_best, self.why = state["stale"], -math.inf if best is None else best, state["why"]
