"""The SFT<->RL blend of a step: how many rows of each kind (``allocate_rows``, when planning) and
the weight of every row once the rollouts are scored (``weigh``, one call per step).

The spectrum loss ``L = (1 - mu) * L_RL + mu * L_SFT`` is decided here; the trainer only applies
the numbers ``weigh`` returns (``StepWeights``): each rollout row weighs ``1 - mu_d`` and each
demonstration ``mu_d``, with three refinements:

- **the gate** (HPT, arXiv:2509.04419; scheduler/mu.py): per prompt of a gated domain, SFT on its
  demonstration when the share of its rollouts that succeed is <= gamma, else RL. The domain's mu
  is then the fraction ``f_d`` of its prompts switched, over all processes; a switched prompt's
  demonstration weighs ``f_d`` and its rollouts 0, any other prompt's rollouts ``1 - f_d``. The RL
  and SFT parts are each a mean over their own tokens, so each part carries its share of prompts:
  every prompt counts one unit, as RL or as SFT, over one denominator (the domain's prompts);
- **dynamic sampling** (DAPO, ``drop_zero_variance``): a group whose rewards are all equal weighs 0;
- **per-layer mu** (``layer_mu`` not uniform): every row in the loss weighs 1 and mu acts on the
  gradients layer by layer instead (``layer_factors``).

The step's one mu (``mean_mu``) blends the learning rates (``lr_factor``) and centres per-layer mu.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from spectrum_rl.registry import Registered, renamed
from spectrum_rl.scheduler.mu import MU_SCHEDULES, GateParams, MuParams, RLOnly
from spectrum_rl.scheduler.shares import Credit, normalise
from spectrum_rl.scheduler.step import GroupOutcome, StepPlan
from spectrum_rl.schema import StrictModel

MuField = Annotated[MuParams, Registered(MU_SCHEDULES, shorthand=True, formerly="schedule")]
"""``training.sft.mu``: a registered schedule's parameters, chosen by ``type`` (or a bare name)."""


class SFTConfig(StrictModel):
    """`training.sft:` — the SFT side of the spectrum and how it is blended with RL."""

    mu: MuField = Field(
        default_factory=lambda: RLOnly.Params(type="rl_only"),
        description="The mu schedule of every domain: `{type: NAME, ...its parameters}`, or a bare NAME "
        "(each schedule's parameters: below).",
    )
    per_domain: dict[str, MuField] = Field(
        default_factory=dict, description="Per-domain mu schedules (domain name -> schedule), in place of `mu`."
    )
    expert_ratio: float = Field(
        0.5,
        ge=0,
        le=8,
        description="Expert demonstrations per step, as a fraction of prompts_per_step; they only enter the SFT loss.",
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="Learning rate of a pure-SFT step (mu = 1); a step blending SFT and RL uses "
        "`(1 - mu) * training.learning_rate + mu * this` (mu: the step's mixture-weighted mu), following "
        "the same warmup/decay. Unset: `training.learning_rate`. SFT recipes usually run a higher rate than "
        "RL ones (e.g. ~1e-5 vs ~1e-6 for 7B models).",
    )
    phi: bool = Field(False, description="CHORD-phi: weight each expert token by p(1-p).")
    luffy: bool = Field(
        False,
        description="LUFFY: add each prompt's expert completion to its rollout group "
        "(shaped importance weight pi/(pi+luffy_gamma), no clipping).",
    )
    luffy_gamma: float = Field(0.1, gt=0, description="LUFFY shaping constant gamma.")
    layer_mu: Literal["uniform", "increasing", "decreasing"] = Field(
        "uniform",
        description="Per-layer mu: a ramp over depth around the step's mean mu (increasing: less SFT at the "
        "bottom, more at the top, 0 to 2*mu while mu <= 0.5; decreasing: the reverse), applied to gradients "
        "layer by layer. The layers' average is always the step's mu: above 0.5 the ramp flattens to stay "
        "in [0, 1] (mu 0.9: 0.8 to 1.0).",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: object) -> object:
        renamed(data, "gate_threshold", "write mu: {type: gate, threshold: ...}")
        return data

    def schedule_of(self, domain: str) -> MuParams:
        """The domain's schedule: its ``per_domain`` entry, else ``mu``."""
        return self.per_domain.get(domain, self.mu)


def allocate_rows(
    mixture: Mapping[str, float],
    mu: Mapping[str, float],
    gated: Collection[str],
    prompts_per_step: int,
    expert_ratio: float,
    by_need: Collection[str] = (),
    credit: tuple[Credit, Credit] | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """(rollout prompts, demonstrations) per domain for one step.

    Only domains the mixture trains (weight > 0) get rows. Rollouts go to those with an RL part
    (mu < 1, or gated), by mixture weight. Demonstrations, ``ceil(expert_ratio *
    prompts_per_step)`` of them, go to those with mu > 0 (gated domains take theirs from their
    failed prompts instead), in proportion to the mixture weight, or, for ``by_need`` domains, to
    mu itself: a domain RL cannot learn gets its demonstrations however small its RL share.
    ``credit``: the (prompts, demonstrations) ``Credit`` carried from step to step (the Planner's),
    updated here; without it each step is rounded on its own.
    """
    prompt_credit, demo_credit = credit if credit is not None else (Credit(), Credit())
    rl = {d: w for d, w in mixture.items() if w > 0 and (mu[d] < 1 or d in gated)}
    sft = {d: mu[d] if d in by_need else w for d, w in mixture.items() if w > 0 and mu[d] > 0 and d not in gated}
    prompts = prompt_credit.allocate(normalise(rl), prompts_per_step)
    demos = demo_credit.allocate(normalise(sft), math.ceil(expert_ratio * prompts_per_step))
    return prompts, demos


@dataclass(frozen=True)
class StepWeights:
    """What the trainer applies in one step (``weigh``).

    rl[i]: weight of each rollout row of group i; gated[i]: weight of group i's demonstration when
        the gate switched its prompt to SFT (0 otherwise); sft[j]: weight of the j-th drawn
        demonstration. A weight of 0 leaves the row out of the loss.
    mu: domain -> mu as executed (a gated domain's: the fraction of its prompts switched).
    mean_mu: the step's one mu (``mean_mu``).
    lr_scale: multiplier of the scheduled learning rate (``lr_factor``).
    layer_scales: per-parameter gradient factors (RL part, SFT part) for per-layer mu, else None.
    """

    rl: list[float]
    gated: list[float]
    sft: list[float]
    mu: dict[str, float]
    mean_mu: float
    lr_scale: float
    layer_scales: tuple[list[float], list[float]] | None = None


def weigh(
    plan: StepPlan,
    groups: Sequence[GroupOutcome],
    demo_domains: Sequence[str],
    sft: SFTConfig,
    *,
    group_size: int,
    learning_rate: float,
    drop_zero_variance: bool = False,
    layer_depth: Sequence[float] | None = None,
    total: Callable[[list[float]], list[float]] = lambda counts: counts,
) -> StepWeights:
    """Every row's weight for the step ``plan`` planned, once its rollout ``groups`` (this
    process's) are scored and its demonstrations (of ``demo_domains``) drawn. ``total`` sums
    counts over all processes (the gate's fraction is the whole step's); ``layer_depth``: each
    parameter's depth fraction, for per-layer mu."""
    switched = [_switched(plan, g, sft, group_size) for g in groups]
    gated = [d for d, p in plan.domains.items() if p.gated]
    mu = plan.mu
    if gated:
        # (switched, prompts) per gated domain, summed over processes
        counts = total([float(c) for d in gated for c in _gate_counts(d, groups, switched)])
        mu |= {d: s / n if n else 0.0 for d, s, n in zip(gated, counts[::2], counts[1::2])}
    rl, gated_demos = [], []
    for g, switch in zip(groups, switched):
        zero = drop_zero_variance and g.zero_variance
        rl.append(0.0 if switch or zero else 1.0 - mu[g.domain])
        gated_demos.append(mu[g.domain] if switch else 0.0)
    demos = [mu[d] for d in demo_domains]
    step_mu = mean_mu(plan, mu)
    scales = None
    if sft.layer_mu != "uniform":
        rl, gated_demos, demos = ([float(w > 0) for w in ws] for ws in (rl, gated_demos, demos))
        scales = layer_factors(layer_depth or [], step_mu, sft.layer_mu)
    return StepWeights(rl, gated_demos, demos, mu, step_mu, lr_factor(step_mu, sft, learning_rate), scales)


def _switched(plan: StepPlan, group: GroupOutcome, sft: SFTConfig, group_size: int) -> bool:
    """HPT's switch: the prompt's rollouts succeed at a rate <= gamma and it has a demonstration."""
    if not plan.domains[group.domain].gated or not group.has_expert:
        return False
    gate = sft.schedule_of(group.domain)
    assert isinstance(gate, GateParams)
    rollouts = group.rewards[:group_size]
    return sum(r >= gate.threshold for r in rollouts) / len(rollouts) <= gate.gamma


def _gate_counts(domain: str, groups: Sequence[GroupOutcome], switched: Sequence[bool]) -> tuple[int, int]:
    """(prompts switched, prompts) of ``domain`` among this process's groups."""
    mine = [s for g, s in zip(groups, switched) if g.domain == domain]
    return sum(mine), len(mine)


def mean_mu(plan: StepPlan, mu: Mapping[str, float]) -> float:
    """The step's one mu (logged as ``mu``; it blends the learning rates and centres per-layer mu):
    the mean of ``mu`` over the step's rows by domain, each rollout prompt and each demonstration
    one unit, ``sum_d (prompts_d + demos_d) mu_d / sum_d (prompts_d + demos_d)``. So it is the
    schedule's mu when every domain has the same, and the SFT-heavy domain counts by the
    demonstrations it gets when SFT is routed by need; share-weighted for a plan without rows."""
    units = {d: p.prompts + p.demos for d, p in plan.domains.items()}
    rows = sum(units.values())
    if not rows:
        return sum(p.share * mu[d] for d, p in plan.domains.items())
    return sum(units[d] * mu[d] for d in units) / rows


def lr_factor(mu: float, sft: SFTConfig, learning_rate: float) -> float:
    """Multiplier of the scheduled learning rate for a step with mixture-weighted ``mu``:
    ``(1 - mu) + mu * sft.learning_rate / learning_rate`` (1 when ``sft.learning_rate`` is unset),
    so a pure-RL step runs the RL rate, a pure-SFT step the SFT rate, a blend the blend."""
    if sft.learning_rate is None:
        return 1.0
    return (1 - mu) + mu * sft.learning_rate / learning_rate


def layer_factors(depth: Sequence[float], mu: float, mode: str) -> tuple[list[float], list[float]]:
    """Per-parameter gradient factors (RL part, SFT part) for per-layer mu, from each parameter's
    depth fraction f in [0, 1] (``mode`` increasing; decreasing uses ``1 - f``).

    A ramp around mu that keeps its mean: ``mu_l = mu + k * (f - f_bar)`` with ``f_bar`` the mean
    depth over ``depth`` and the slope ``k = min(2 mu, mu / (f_bar - f_min), (1 - mu) / (f_max -
    f_bar))``, the steepest that keeps every ``mu_l`` in [0, 1] (``2 mu``, i.e. ``mu_l = 2 mu f``
    on evenly spread depths, while mu <= 0.5). So the average mu over the parameter tensors is always the
    schedule's mu; above mu = 0.5 the ramp flattens instead of clipping (CHORD's peak 0.9 gives
    0.8 to 1.0). The factors are ``1 - mu_l`` and ``mu_l``."""
    shape = list(depth) if mode == "increasing" else [1 - f for f in depth]
    if not shape:
        return [], []
    mean, low, high = sum(shape) / len(shape), min(shape), max(shape)
    slopes = [2 * mu]
    if mean > low:
        slopes.append(mu / (mean - low))
    if high > mean:
        slopes.append((1 - mu) / (high - mean))
    k = max(0.0, min(slopes))
    mu_l = [min(max(mu + k * (f - mean), 0.0), 1.0) for f in shape]  # the clip only absorbs rounding
    return [1 - m for m in mu_l], mu_l
