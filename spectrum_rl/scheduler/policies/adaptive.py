"""adaptive (ours): the mission's scheduler.

Each domain's score is ``learnability * g(LP) + explore * UCB + transfer_weight * alignment +
bwt_weight * b_i``. Learnability (4 s (1 - s) of its groups' pass fractions: is there signal?) is
gated by learning progress (scheduler/progress.py: is the signal turning into a rising reward?),
``g(LP) = floor + (1 - floor) LP / (LP + progress_half)``, 1 until LP is measured: a domain whose
reward varies but does not rise, or sits at its ceiling, keeps a quarter of its learnability weight
(reward variance is not headroom). An unmeasured domain's learnability counts as 1, the most, so it is measured first.
``b_i = mean_{j != i} T[i, j]``, the estimated change of the other domains' held-out scores from training
on i (T from the online fit or a probe; entries within two standard errors of 0 count as 0), and
the mixture is proportional to the scores (not a softmax: a noisy lead does not take the whole
step), with a floor. Difficulty levels come from the Planner's frontier and prompts from the
pass-rate sampler, so it decides at all three levels. On top: the entropy monitor's collapse guard
(a domain behaving creatively whose entropy collapsed cuts the weight of the structured ones and
gets its mu raised, unless its recent pass rate is >= 0.9: solved, not collapsed; a
declared-structured domain whose entropy rises is treated as creative), a forgetting guard (a
domain the pooled detector of scheduler/progress.py finds falling gets ``forgetting_boost`` times
its weight (replay) and mu at least ``forgetting_mu`` (SFT, where it has demonstrations); a domain
whose training the transfer estimate blames for it, T[i, j] below 0 beyond two standard errors,
gets ``blame_cut`` times its weight) and prerequisite gating (a lock opens when the prerequisite
reaches ``unlock_score``, plateaus, or ``unlock_share`` of the run has passed). The reason names
every signal that moved a weight by at least ``MOVED`` and every guard that fired.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from spectrum_rl.scheduler.order import significant_transfer
from spectrum_rl.scheduler.policies.base import (
    POLICIES,
    Decision,
    MinWeight,
    Policy,
    View,
    proportional_with_floor,
    ucb_bonus,
)
from spectrum_rl.scheduler.shares import normalise


class AdaptiveParams(MinWeight):
    """The adaptive policy's weights of its signals and its guards."""

    explore: float = Field(
        0.1, ge=0, description="Weight of the UCB exploration bonus sqrt(2 ln(N+1) / (n_d+1)) (groups)."
    )
    transfer_weight: float = Field(1.0, ge=0, description="Weight of the domain's mean gradient alignment.")
    bwt_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of a domain's estimated backward transfer (the mean change of the other domains' "
        "held-out scores per window of training on it; needs a transfer estimate).",
    )
    progress_half: float = Field(
        0.02,
        gt=0,
        description="Learning progress (noise-adjusted reward gain per window) at which a domain keeps half its "
        "learnability weight; none keeps none of it.",
    )
    progress_floor: float = Field(
        0.25, ge=0, le=1, description="Share of its learnability weight a domain keeps without learning progress."
    )
    plateau_delta: float = Field(0.01, ge=0, description="Held-out gain that resets a domain's plateau count.")
    forgetting_boost: float = Field(2.0, ge=1, description="Weight multiplier of a domain found falling (replay).")
    forgetting_mu: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Minimum mu of a domain found falling (SFT on its demonstrations, where it has them).",
    )
    blame_cut: float = Field(
        0.5, ge=0, le=1, description="Weight multiplier of a domain whose training lowers a falling one (transfer)."
    )
    entropy_guard_cut: float = Field(
        0.5, ge=0, le=1, description="Structured weight multiplier while a creative domain's entropy has collapsed."
    )
    entropy_guard_mu: float = Field(0.3, ge=0, le=1, description="Minimum mu of a collapsed creative domain.")
    unlock_score: float = Field(0.3, description="Held-out score prerequisites must reach.")
    unlock_patience: int = Field(
        3,
        ge=1,
        description="A prerequisite that has not gained more than `plateau_delta` (or two standard errors of its "
        "eval score) over its best for this many evals counts as done (plateaued).",
    )
    unlock_share: float = Field(0.25, ge=0, le=1, description="No prerequisite lock holds past this share of the run.")


MOVED = 0.02  # a signal "moved the mixture" when some domain's weight differs by this much without it
CONVERGED = 0.9  # a domain whose recent pass rate is this high has converged: low entropy is expected there


def converged(view: View, domain: str) -> bool:
    """Whether ``domain``'s recent pass rate (its discounted Beta posterior mean) is at least CONVERGED:
    its entropy fell because it is solved, which the collapse guard must not treat as a collapse."""
    passes, fails = view.learnability.posterior(domain)
    return passes / (passes + fails) >= CONVERGED


def backward_transfer(view: View) -> dict[str, float]:
    """``b_i = mean_{j != i} T[i, j]`` per domain (0 without a transfer estimate); entries within
    two standard errors of 0 count as 0, so only what the data determine can move the mixture."""
    T = view.transfer
    if T is None or len(view.names) < 2:
        return dict.fromkeys(view.names, 0.0)
    if view.transfer_stderr is not None:
        T = significant_transfer(T, view.transfer_stderr)
    off = ~np.eye(len(view.names), dtype=bool)
    return {n: float(T[i][off[i]].mean()) for i, n in enumerate(view.names)}


@POLICIES.register("adaptive")
class AdaptivePolicy(Policy):
    """Learnability + backward transfer + gradient alignment, with the entropy, forgetting and
    prerequisite guards (module docstring).

    A domain is locked while a prerequisite is not done; a prerequisite is done once its held-out
    score reaches ``unlock_score`` or it has plateaued (no gain above ``plateau_delta`` over its
    best for ``unlock_patience`` evals). An unlock is permanent and its reason is logged once."""

    Params = AdaptiveParams
    uses_alignment = True

    def __init__(self, params: AdaptiveParams, names: list[str]) -> None:
        super().__init__(params, names)
        self.peak: dict[str, float] = {}  # best held-out score so far, per domain
        self.stale: dict[str, int] = {}  # evals since the last gain above plateau_delta
        self.done: dict[str, str] = {}  # prerequisite -> why it counts as done
        self.news: list[str] = []  # unlock and re-kind reasons not reported yet
        self.creative: list[str] = []  # declared structured, but their entropy rose under training

    def observe_eval(self, step: int, view: View) -> None:
        super().observe_eval(step, view)
        for n, score in view.scores.items():
            gain = max(self.params.plateau_delta, 2 * view.stderr(n, score))  # a gain the eval's noise cannot make
            if n not in self.peak or score > self.peak[n] + gain:
                self.peak[n], self.stale[n] = max(score, self.peak.get(n, score)), 0
            else:
                self.stale[n] += 1
            if n in self.done:
                continue
            if score >= self.params.unlock_score:
                self.done[n] = f"{n} reached {score:.2f} >= unlock_score {self.params.unlock_score} at step {step}"
            elif self.stale[n] >= self.params.unlock_patience:
                self.done[n] = (
                    f"{n} plateaued at {self.peak[n]:.2f} (no gain > {gain:.3f} in {self.stale[n]} evals, step {step})"
                )
            if n in self.done and any(n in view.prerequisites.get(m, []) for m in self.names):
                self.news.append(f"prerequisite {self.done[n]}")

    def _unlock_by_budget(self, step: int, view: View) -> None:
        """No lock holds past ``unlock_share`` of the run: its prerequisites count as done then."""
        if view.spent(step) < self.params.unlock_share or not (view.total_steps or view.max_rollouts):
            return
        for n in self.names:
            for pre in view.prerequisites.get(n, []):
                if pre not in self.done:
                    self.done[pre] = (
                        f"{pre} held its lock for unlock_share {self.params.unlock_share} of the run (step {step})"
                    )
                    self.news.append(f"prerequisite {self.done[pre]}")

    def _signals(self, view: View) -> tuple[dict[str, float], list[str]]:
        """The mixture from the three score terms, and what each term that moved it says."""
        learn_view = view.learnability
        total = sum(learn_view.count(n) for n in self.names)
        learn = {  # an unmeasured domain counts as fully learnable (optimism: it is measured first)
            n: (1.0 if learn_view.value(n) is None else learn_view.value(n)) * self._progress_gate(view, n)
            + self.params.explore * ucb_bonus(total, learn_view.count(n))
            for n in self.names
        }
        align = {n: self.params.transfer_weight * (view.alignment.mean_alignment(n) or 0.0) for n in self.names}
        bwt = backward_transfer(view)
        bwt_term = {n: self.params.bwt_weight * b for n, b in bwt.items()}
        terms = {"learnability": learn, "alignment": align, "bwt": bwt_term}

        def mixture(flat: str | None = None) -> dict[str, float]:
            """The mixture, with term ``flat`` replaced by its mean over domains (it then tells them
            apart no more, but adds the same mass)."""
            parts = {
                k: v if k != flat else dict.fromkeys(v, float(np.mean(list(v.values())))) for k, v in terms.items()
            }
            total = {n: sum(part[n] for part in parts.values()) for n in self.names}
            return proportional_with_floor(total, self.params.min_weight)

        weights = mixture()
        notes = []
        for k in terms:
            without = mixture(k)
            if max(abs(weights[n] - without[n]) for n in self.names) < MOVED:
                continue
            if k == "learnability":
                top = max(learn, key=learn.get)
                notes.append(f"learnability favours {top} ({learn[top]:.3f} with exploration)")
            elif k == "alignment":
                top = max(align, key=align.get)
                notes.append(f"gradient alignment favours {top} ({align[top]:+.3f})")
            else:
                low, high = min(bwt, key=bwt.get), max(bwt, key=bwt.get)
                said = [f"damps {low} ({bwt[low]:+.3f})"] if bwt[low] < 0 else []
                said += [f"favours {high} ({bwt[high]:+.3f})"] if bwt[high] > 0 else []
                notes.append("backward transfer " + ", ".join(said))
        return weights, notes

    def _progress_gate(self, view: View, domain: str) -> float:
        """``floor + (1 - floor) LP / (LP + progress_half)``: how much of its learnability a domain
        keeps; 1 until measured."""
        lp, p = view.progress.value(domain), self.params
        return 1.0 if lp is None else p.progress_floor + (1 - p.progress_floor) * lp / (lp + p.progress_half)

    def _forgetting(self, view: View, weights: dict[str, float], locked: list[str]) -> tuple[dict, list[str]]:
        """Replay and SFT for the domains found falling; less weight on those whose training the
        transfer estimate blames for it. Returns (mu floors, reasons)."""
        mu_raise, notes = {}, []
        T = view.transfer
        if T is not None and view.transfer_stderr is not None:
            T = significant_transfer(T, view.transfer_stderr)
        for j, n in enumerate(self.names):
            why = None if n in locked else view.falling.falling(n)
            if why is None:
                continue
            weights[n] *= self.params.forgetting_boost
            mu_raise[n] = self.params.forgetting_mu
            blamed = [m for i, m in enumerate(self.names) if T is not None and i != j and T[i][j] < 0]
            for m in blamed:
                weights[m] *= self.params.blame_cut
            note = (
                f"forgetting guard: {why}; replay x{self.params.forgetting_boost:g}, mu >= {self.params.forgetting_mu}"
            )
            notes.append(note + (f"; training {', '.join(blamed)} lowers it (transfer): cut" if blamed else ""))
        return mu_raise, notes

    def _kinds(self, view: View) -> dict[str, str]:
        """The kinds the entropy monitor observed: a declared-structured domain whose entropy rises
        under training (the monitor's ``contradicts_kind``) behaves creatively and is treated as
        creative from then on (its collapse is guarded, the guard does not cut it)."""
        for n in self.names:
            state = view.entropy.state(n)
            if (
                view.kinds[n] == "structured"
                and n not in self.creative
                and state is not None
                and state.contradicts_kind
            ):
                self.creative.append(n)
                self.news.append(f"entropy: {n} is declared structured but its entropy rises; treated as creative")
        return {n: "creative" if n in self.creative else view.kinds[n] for n in self.names}

    def decide(self, step: int, view: View) -> Decision:
        self._unlock_by_budget(step, view)
        weights, notes = self._signals(view)
        kinds = self._kinds(view)
        notes += self.news
        self.news = []
        locked = [n for n in self.names if any(p not in self.done for p in view.prerequisites.get(n, []))]
        for n in locked:
            weights[n] = 0.0
        if locked:
            notes.append(
                f"locked until prerequisites reach {self.params.unlock_score}, plateau or "
                f"{self.params.unlock_share:.0%} of the run has passed: {', '.join(locked)}"
            )
        mu_raise, forgetting = self._forgetting(view, weights, locked)
        notes += forgetting
        collapsed = [
            n
            for n in self.names
            if kinds[n] == "creative"
            and n not in locked
            and (s := view.entropy.state(n)) is not None
            and s.collapsed
            and not converged(view, n)
        ]
        if collapsed:
            for n in self.names:
                if kinds[n] == "structured":
                    weights[n] *= self.params.entropy_guard_cut
            mu_raise |= {n: max(mu_raise.get(n, 0.0), self.params.entropy_guard_mu) for n in collapsed}
            notes.append(f"entropy guard: {', '.join(collapsed)} collapsed; structured weight cut, mu raised")
        if sum(weights.values()) <= 0:  # everything locked: train the unlocked roots
            weights = {n: float(not view.prerequisites.get(n)) for n in self.names}
        reason = "adaptive: " + ("; ".join(notes) if notes else "no signal has moved the mixture yet")
        return Decision(normalise(weights), reason, mu_raise)

    def state_dict(self) -> dict:
        return {
            "peak": self.peak,
            "stale": self.stale,
            "done": self.done,
            "creative": self.creative,
        }

    def load_state_dict(self, state: dict) -> None:
        self.peak, self.stale, self.done = state["peak"], state["stale"], state["done"]
        self.creative = list(state["creative"])
