"""RL policy losses: TRL 1.16's ``GRPOConfig.loss_type`` family, one registered class each, with
its parameters beside it.

Per completion token t of sequence i, with advantage A_i and completion mask m:
    s_t = logp_t - logp_old_t
    w_t = exp(s_t)                                   importance_sampling_level: token
    w_i = exp(sum_t s_t m_t / sum_t m_t)             sequence (GSPO, arXiv:2507.18071)
Surrogates (l_t, before the KL term):
    clip  (grpo, dr_grpo, dapo, bnpo)  -min(w A, clip(w, 1 - eps_low, 1 + eps_high) A)      PPO; DAPO clip-higher
    cispo (MiniMax-M1, arXiv:2506.13585) -sg(min(w, eps_max)) A logp_t                       gradient through logp
    sapo  (arXiv:2511.20347)           -(4 / tau) sigmoid(tau (w - 1)) A,  tau = tau_pos if A > 0 else tau_neg
    KL:  + beta kl_t,  k3 = exp(ref - logp) - (ref - logp) - 1,  k1 = logp - ref
Aggregation over the step's RL rows (see ``aggregate``):
    seq_mean_token_mean      (grpo, sapo)   mean_i( sum_t l m / sum_t m )
    seq_mean_token_sum_norm  (dr_grpo)      sum l m / (n_seq * max_new_tokens)        Dr. GRPO, arXiv:2503.20783
    token_mean               (dapo, cispo)  sum l m / sum m, tokens of all processes  DAPO, arXiv:2503.14476
    local_token_mean         (bnpo)         sum l m / sum m, tokens of this process (the mean over processes follows)
LUFFY (arXiv:2504.14945): an expert completion in the group gets the regularised importance weight
f = pi / (pi + gamma) instead of the loss's weight: l_t = -f_t A_i, no clipping.

``training.loss: {type: NAME, ...its parameters}`` (or a bare NAME) chooses one. A new loss: one
class with ``@LOSSES.register("name")``, an ``aggregation``, a ``surrogate`` and its ``Params``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import Field

from spectrum_rl.registry import Registry
from spectrum_rl.schema import StrictModel

Aggregation = Literal["token_mean", "local_token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]
ImportanceLevel = Literal["token", "sequence"]


class LossParams(StrictModel):
    """What every loss's parameters hold: its registered name."""

    type: str = Field(..., description="The loss (a name registered in LOSSES).")


class ClipParams(LossParams):
    """PPO's clip of the importance weight (defaults as TRL's GRPOConfig)."""

    eps_low: float = Field(0.2, ge=0, lt=1, description="Lower bound of the clip: 1 - eps_low.")
    eps_high: float = Field(0.28, ge=0, description="Upper bound of the clip: 1 + eps_high (DAPO clip-higher).")


class CISPOParams(LossParams):
    """CISPO's cap on the detached importance weight."""

    eps_max: float = Field(5.0, gt=0, description="The weight's cap (TRL's epsilon_high under cispo; ScaleRL's value).")


class SAPOParams(LossParams):
    """SAPO's sigmoid gate."""

    temperature_pos: float = Field(1.0, gt=0, description="Gate temperature for positive advantages.")
    temperature_neg: float = Field(1.05, gt=0, description="Gate temperature for other advantages.")


@dataclass
class Surrogate:
    per_token: torch.Tensor  # [B, T] (or [B, 1] at sequence level) loss before the KL term
    clipped_low: torch.Tensor  # bool: the weight was cut from below (A < 0)
    clipped_high: torch.Tensor  # bool: the weight was cut from above (A > 0)


class PolicyLoss:
    """A loss: ``surrogate`` turns importance weights into per-token losses; ``aggregation`` says
    how the trainer sums them into the step loss; ``Params``, its parameters."""

    Params: ClassVar[type[LossParams]] = LossParams
    aggregation: ClassVar[Aggregation] = "token_mean"

    def __init__(self, params: LossParams) -> None:
        self.params = params

    def surrogate(self, weight: torch.Tensor, logp: torch.Tensor, adv: torch.Tensor) -> Surrogate:
        """weight: [B, T] or [B, 1] importance weights; logp: [B, T]; adv: [B, 1]."""
        raise NotImplementedError


LOSSES: Registry[type[PolicyLoss]] = Registry("loss")
"""``training.loss.type`` -> PolicyLoss class."""


def policy_loss(params: LossParams) -> PolicyLoss:
    """The loss ``params`` name, built with them."""
    return LOSSES.get(params.type, field="training.loss.type")(params)


class _Clipped(PolicyLoss):
    Params = ClipParams

    def surrogate(self, weight: torch.Tensor, logp: torch.Tensor, adv: torch.Tensor) -> Surrogate:
        s = self.params
        clipped = torch.clamp(weight, 1 - s.eps_low, 1 + s.eps_high)
        return Surrogate(
            -torch.min(weight * adv, clipped * adv),
            (weight < 1 - s.eps_low) & (adv < 0),
            (weight > 1 + s.eps_high) & (adv > 0),
        )


@LOSSES.register("grpo")
class GRPO(_Clipped):
    """Clipped ratio; the mean over sequences of each sequence's token mean (TRL grpo)."""

    aggregation = "seq_mean_token_mean"


@LOSSES.register("dr_grpo")
class DrGRPO(_Clipped):
    """Clipped ratio; the token sum over sequences x max_new_tokens (Dr. GRPO, no length bias)."""

    aggregation = "seq_mean_token_sum_norm"


@LOSSES.register("dapo")
class DAPO(_Clipped):
    """Clipped ratio; the token mean over all processes' tokens (DAPO; TRL's default)."""

    aggregation = "token_mean"


@LOSSES.register("bnpo")
class BNPO(_Clipped):
    """Clipped ratio; the token mean over each process's tokens, then the mean over processes."""

    aggregation = "local_token_mean"


@LOSSES.register("cispo")
class CISPO(PolicyLoss):
    """Clipped, detached importance weight times logp; token mean (MiniMax-M1). The gradient flows
    through logp (REINFORCE-like), so clipped tokens still contribute instead of being dropped."""

    Params = CISPOParams
    aggregation = "token_mean"

    def surrogate(self, weight: torch.Tensor, logp: torch.Tensor, adv: torch.Tensor) -> Surrogate:
        cap = self.params.eps_max
        high = weight > cap
        return Surrogate(-torch.clamp(weight, max=cap).detach() * adv * logp, torch.zeros_like(high), high & (adv > 0))


@LOSSES.register("sapo")
class SAPO(PolicyLoss):
    """A smooth sigmoid gate in place of the clip: off-policy tokens are attenuated, not cut; as grpo."""

    Params = SAPOParams
    aggregation = "seq_mean_token_mean"

    def surrogate(self, weight: torch.Tensor, logp: torch.Tensor, adv: torch.Tensor) -> Surrogate:
        p = self.params
        tau = torch.where(adv > 0, p.temperature_pos, p.temperature_neg)
        none = torch.zeros_like(weight, dtype=torch.bool)
        return Surrogate(-torch.sigmoid(tau * (weight - 1)) * 4 / tau * adv, none, none)


@dataclass
class RLTerms:
    per_token: torch.Tensor  # [B, T] loss per token (before row weights and mask)
    clipped_low: torch.Tensor  # [B, T] bool
    clipped_high: torch.Tensor  # [B, T] bool
    kl: torch.Tensor | None  # [B, T]


def rl_token_loss(
    loss: PolicyLoss,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    level: ImportanceLevel = "token",
    beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    kl_estimator: Literal["k1", "k3"] = "k3",
    luffy: torch.Tensor | None = None,
    luffy_gamma: float = 0.1,
) -> RLTerms:
    """Per-token loss of ``loss`` (+ beta * KL). advantages: [B]; mask: [B, T]; luffy: [B] bool
    marks expert rows (None: there are none; the caller knows without asking the device)."""
    adv = advantages.unsqueeze(1)  # [B, 1]
    log_weight = logp - old_logp  # [B, T]
    if level == "sequence":
        m = mask.to(log_weight.dtype)
        log_weight = ((log_weight * m).sum(-1) / m.sum(-1).clamp(min=1)).unsqueeze(1)  # [B, 1]
    terms = loss.surrogate(torch.exp(log_weight), logp, adv)
    shape = logp.shape
    per_token = terms.per_token.expand(shape)
    if luffy is not None:
        pi = logp.exp()
        per_token = torch.where(luffy.unsqueeze(1), -(pi / (pi + luffy_gamma)) * adv, per_token)
    kl = None
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs reference log-probs")
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1 if kl_estimator == "k3" else -delta
        per_token = per_token + beta * kl
    return RLTerms(per_token, terms.clipped_low.expand(shape), terms.clipped_high.expand(shape), kl)


def rl_denominator(
    aggregation: Aggregation, *, tokens: float, sequences: float, local_tokens: float, max_new_tokens: int, world: int
) -> float:
    """Each process's normaliser for ``aggregate``, from the step's counts (over all processes,
    except ``local_tokens``), so that micro-batches add up to the step loss and the gradient
    mean over ``world`` processes is the whole batch's."""
    if aggregation == "token_mean":
        return max(tokens, 1.0) / world
    if aggregation == "local_token_mean":
        return max(local_tokens, 1.0)
    if aggregation == "seq_mean_token_mean":
        return max(sequences, 1.0) / world
    if aggregation == "seq_mean_token_sum_norm":
        return max(sequences * max_new_tokens, 1.0) / world
    raise ValueError(f"unknown aggregation {aggregation!r}")


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    aggregation: Aggregation,
    denominator: float,
    seq_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """This micro-batch's share of the aggregated loss (see the module docstring). The per-sequence
    weight (1 - mu_d of the sequence's domain) multiplies l before aggregation, so a batch that
    mixes domains with different mu is still one loss."""
    m = mask.to(per_token.dtype)
    if seq_weight is not None:
        m = m * seq_weight.unsqueeze(1)
    if aggregation == "seq_mean_token_mean":
        per_seq = (per_token * m).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / denominator
    return (per_token * m).sum() / denominator


def sft_token_loss(logp: torch.Tensor, phi: bool = False) -> torch.Tensor:
    """The SFT part's per-token NLL [B, T]: ``-logp``; with ``phi`` (CHORD-phi, arXiv:2508.11408)
    each token is weighted by ``p (1 - p)``, ``p = exp(logp)`` detached, so tokens the model is sure
    of or finds very unlikely count less."""
    nll = -logp
    if phi:
        p = logp.detach().exp()
        nll = nll * p * (1 - p)
    return nll
