"""Loss and advantages against their published formulas and TRL's GRPOTrainer."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from spectrum_rl.objectives.advantages import group_advantages
from spectrum_rl.objectives.losses import LOSSES, aggregate, policy_loss, rl_denominator, rl_token_loss, sft_token_loss

B, T = 6, 7
MAX_NEW = 9


def _tensors(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g) * 3
    old = logp + 0.3 * torch.randn(B, T, generator=g)  # ratios well outside the clip range too
    ref = logp + 0.2 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = torch.ones(B, T)
    for i, n in enumerate([7, 3, 5, 1, 6, 2]):
        mask[i, n:] = 0
    return logp, old, ref, adv, mask


def _trl_loss(
    loss_type: str, logp, old, ref, adv, mask, eps_low, eps_high, beta, level="token", sapo=(1.0, 1.05)
) -> torch.Tensor:
    """TRL 1.x GRPOTrainer._compute_loss on our tensors (model forward replaced by `logp`)."""
    trl = pytest.importorskip("trl")
    trainer = object.__new__(trl.GRPOTrainer)
    attrs = dict(
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        beta=beta,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=level,
        use_vllm=False,
        aux_loss_enabled=False,
        _entropy_bonus_enabled=False,
        max_completion_length=MAX_NEW,
        current_gradient_accumulation_steps=1,
        model=SimpleNamespace(training=True),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        args=SimpleNamespace(
            delta=None,
            use_bias_correction_kl=False,
            steps_per_generation=1,
            sapo_temperature_pos=sapo[0],
            sapo_temperature_neg=sapo[1],
        ),
        accelerator=SimpleNamespace(
            num_processes=1,
            reduce=lambda t, reduction="sum": t,
            gather=lambda t: t,
            gather_for_metrics=lambda t: t,
            sync_gradients=True,
        ),
    )
    for k, v in attrs.items():
        object.__setattr__(trainer, k, v)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros_like(logp), None)
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    return trainer._compute_loss(None, inputs)


def _loss(name: str, **fields):
    """The loss ``name`` with its parameters (its own defaults for those not given)."""
    return policy_loss(LOSSES.get(name).Params(type=name, **fields))


def _whole_batch(loss, terms, mask, world=1):
    """The step loss of one process holding the whole batch (all counts local = global)."""
    den = rl_denominator(
        loss.aggregation,
        tokens=float(mask.sum()),
        sequences=float(mask.shape[0]),
        local_tokens=float(mask.sum()),
        max_new_tokens=MAX_NEW,
        world=world,
    )
    return aggregate(terms.per_token, mask, loss.aggregation, den)


# TRL's cispo caps the weight at epsilon_high (its eps_max); sapo has no clip
_TRL_EPS_HIGH = {"cispo": 5.0}


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_rl_loss_matches_trl(loss_type, level, beta):
    """Every registered TRL loss type, at both importance-sampling levels (sequence: GSPO), equals
    TRL 1.16's own loss on the same tensors; its gradient too."""
    logp, old, ref, adv, mask = _tensors()
    loss = _loss(loss_type)  # their defaults: TRL's clip (0.2, 0.28), cispo's cap 5, sapo's (1.0, 1.05)
    leaf = logp.clone().requires_grad_()
    terms = rl_token_loss(loss, leaf, old, adv, mask, level=level, beta=beta, ref_logp=ref)
    ours = _whole_batch(loss, terms, mask)
    trl_leaf = logp.clone().requires_grad_()
    eps_high = _TRL_EPS_HIGH.get(loss_type, 0.28)
    theirs = _trl_loss(loss_type, trl_leaf, old, ref, adv, mask, 0.2, eps_high, beta, level=level)
    assert torch.allclose(ours, theirs, atol=1e-6), (float(ours), float(theirs))
    ours.backward()
    theirs.backward()
    assert torch.allclose(leaf.grad, trl_leaf.grad, atol=1e-6)


def test_the_trl_loss_family_is_registered():
    assert {"grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"} <= set(LOSSES)


def test_micro_batches_add_up_to_full_batch_loss():
    logp, old, ref, adv, mask = _tensors(1)
    for name in LOSSES:
        loss = _loss(name, **({"eps_high": 0.2} if "eps_high" in LOSSES.get(name).Params.model_fields else {}))
        terms = rl_token_loss(loss, logp, old, adv, mask)
        den = rl_denominator(
            loss.aggregation,
            tokens=float(mask.sum()),
            sequences=B,
            local_tokens=float(mask.sum()),
            max_new_tokens=MAX_NEW,
            world=1,
        )
        full = aggregate(terms.per_token, mask, loss.aggregation, den)
        parts = sum(
            aggregate(terms.per_token[i : i + 2], mask[i : i + 2], loss.aggregation, den) for i in range(0, B, 2)
        )
        assert torch.allclose(full, parts, atol=1e-6)


def test_bnpo_normalises_by_each_process_tokens_and_dapo_by_all():
    """Two processes with 3 and 1 of 4 rows: dapo's mean over processes of their losses is the
    token mean of the whole batch; bnpo's is the mean of the two processes' token means (TRL: the
    local batch)."""
    logp, old, ref, adv, mask = _tensors(2)
    parts = [slice(0, 3), slice(3, 4)]
    tokens = float(mask[:4].sum())
    for name in ("dapo", "bnpo"):
        loss = _loss(name)
        terms = rl_token_loss(loss, logp[:4], old[:4], adv[:4], mask[:4])
        per_process = []
        for p in parts:
            den = rl_denominator(
                loss.aggregation,
                tokens=tokens,
                sequences=4,
                local_tokens=float(mask[p].sum()),
                max_new_tokens=MAX_NEW,
                world=2,
            )
            per_process.append(aggregate(terms.per_token[p], mask[p], loss.aggregation, den))
        mean = sum(per_process) / 2  # DDP's gradient mean
        lt = terms.per_token * mask[:4]
        expected = lt.sum() / tokens if name == "dapo" else sum(lt[p].sum() / mask[p].sum() for p in parts) / 2
        assert torch.allclose(mean, expected, atol=1e-6)


def test_clip_objective_by_hand():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))  # ratios vs old=0: 1.5, 0.5, 1.0
    old = torch.zeros(1, 3)
    clip, mask = _loss("dapo"), torch.ones(1, 3)
    pos = rl_token_loss(clip, logp, old, torch.tensor([2.0]), mask).per_token
    assert torch.allclose(pos, torch.tensor([[-1.28 * 2, -0.5 * 2, -2.0]]))  # min picks clip only above
    neg = rl_token_loss(clip, logp, old, torch.tensor([-1.0]), mask).per_token
    assert torch.allclose(neg, torch.tensor([[1.5, 0.8, 1.0]]))


def test_k1_and_k3_kl():
    logp, ref = torch.tensor([[-1.0]]), torch.tensor([[-2.0]])
    adv = torch.zeros(1)
    loss, mask = _loss("dapo"), torch.ones(1, 1)
    k3 = rl_token_loss(loss, logp, logp, adv, mask, beta=1.0, ref_logp=ref).kl
    k1 = rl_token_loss(loss, logp, logp, adv, mask, beta=1.0, ref_logp=ref, kl_estimator="k1").kl
    assert torch.allclose(k3, torch.tensor([[math.exp(-1) + 1 - 1]]))
    assert torch.allclose(k1, torch.tensor([[1.0]]))


def test_luffy_shaped_weight_gradient():
    logp = torch.log(torch.tensor([[0.5]])).requires_grad_()
    terms = rl_token_loss(
        _loss("dapo"),
        logp,
        logp.detach(),
        torch.tensor([1.0]),
        torch.ones(1, 1),
        luffy=torch.tensor([True]),
        luffy_gamma=0.1,
    )
    assert torch.allclose(terms.per_token, torch.tensor([[-0.5 / 0.6]]))
    terms.per_token.sum().backward()
    # d/dlogp of -(pi/(pi+g)) = -g*pi/(pi+g)^2
    assert torch.allclose(logp.grad, torch.tensor([[-0.1 * 0.5 / 0.36]]))


def test_sft_loss_and_chord_phi():
    logp = torch.log(torch.tensor([[0.9, 0.5]]))
    assert torch.allclose(sft_token_loss(logp), -logp)
    phi = sft_token_loss(logp, phi=True)
    assert torch.allclose(phi, -logp * torch.tensor([[0.09, 0.25]]))


def test_group_advantages():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    adv, zero = group_advantages(r)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()
    assert torch.allclose(adv[0], (r[0] - 0.5) / (std + 1e-4))
    assert torch.equal(adv[1], torch.zeros(4)) and zero.tolist() == [False, True]
    none, _ = group_advantages(r, estimator="none")
    assert torch.allclose(none[0], r[0] - 0.5)
    batch, _ = group_advantages(r, estimator="batch")
    assert torch.allclose(batch[0], (r[0] - 0.5) / (r.std() + 1e-4))
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    masked, _ = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 100.0], [0.0] * 4]), valid)
    assert masked[0, 3] == 0 and masked[0, 0] > 0  # invalid sample out of the statistics


def test_length_bucketed_micro_batches_keep_every_row_under_the_token_cap():
    import random

    from spectrum_rl.trainer.batch import Row, micro_batches

    rng = random.Random(0)
    rows = [Row([1] * rng.randint(3, 12), [2] * rng.randint(1, 40), "rl", "d", 1.0, float(i)) for i in range(50)]
    batches = micro_batches(rows, size=16, pad_id=0, max_tokens=256)
    assert sorted(float(a) for mb in batches for a in mb.advantage) == sorted(r.advantage for r in rows)

    def tokens(mb):  # what the model is fed: each distinct prompt once, plus every completion
        return mb.prompt_ids.numel() + mb.completion_ids.numel()

    assert all(tokens(mb) <= 256 or mb.group.shape[0] == 1 for mb in batches)
    assert all(mb.group.shape[0] <= 16 for mb in batches)
    padded = sum(tokens(mb) for mb in batches)
    unbucketed = sum(tokens(mb) for mb in micro_batches(rows, size=50, pad_id=0))
    assert padded < unbucketed  # bucketing removes padding


def test_micro_batches_spread_rows_evenly_under_the_caps():
    from spectrum_rl.trainer.batch import Row, micro_batches

    rows = [Row([1, 2, p], [3] * 32, "rl", "d", 1.0) for p in range(8) for _ in range(8)]
    # 1024 tokens fit 30 rows of 32 (+ their prompts): 3 micro-batches of ceil(64 / 3) rows, not 30 + 30 + 4
    assert [mb.group.shape[0] for mb in micro_batches(rows, size=64, pad_id=0, max_tokens=1024)] == [22, 22, 20]
    assert [mb.group.shape[0] for mb in micro_batches(rows, size=30, pad_id=0)] == [22, 22, 20]
    assert [mb.group.shape[0] for mb in micro_batches(rows, size=64, pad_id=0, max_tokens=2048)] == [32, 32]


@pytest.mark.parametrize("schedule,middle,end", [("constant", 1.0, 1.0), ("linear", 0.5, 0.0), ("cosine", 0.5, 0.0)])
def test_learning_rate_schedules(schedule, middle, end):
    from spectrum_rl.config import TrainingConfig
    from spectrum_rl.trainer.setup import lr_lambda

    factor = lr_lambda(TrainingConfig(lr_schedule=schedule, warmup_steps=2), total=12)
    assert [factor(0), factor(1)] == [0.5, 1.0]  # linear warmup
    assert factor(2) == pytest.approx(1.0) and factor(7) == pytest.approx(middle)
    assert factor(12) == pytest.approx(end)
