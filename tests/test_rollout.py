"""The KV-cache rollout path gives the same tokens as the plain path (HF generate / full forwards)."""
from __future__ import annotations

import torch

from spectrum_rl.models import load_causal_lm
from spectrum_rl.trainer.loss import token_logprobs
from spectrum_rl.trainer.rollout import sample

PROMPTS = ["sort: dcba\n", "add: 12+34\n", "x", "reverse: abcdefg\n"]


def test_greedy_matches_hf_generate(tiny_random_lm_dir):
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    ro = sample(model, ids, max_new_tokens=12, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, temperature=0)
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    plain = model.generate(**batch, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id,
                           eos_token_id=tok.eos_token_id)[:, batch["input_ids"].shape[1]:]
    for i in range(len(PROMPTS)):
        n = int(ro.completion_mask[i].sum())
        assert ro.completion_ids[i, :n].tolist() == plain[i, :n].tolist()


def test_sampling_logprobs_match_a_full_forward(tiny_random_lm_dir):
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    ids = [tok(p)["input_ids"] for p in PROMPTS] * 4
    ro = sample(model, ids, max_new_tokens=10, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                temperature=0.7, generator=torch.Generator().manual_seed(0))
    full = torch.cat([ro.prompt_ids, ro.completion_ids], 1)
    mask = torch.cat([ro.prompt_mask, ro.completion_mask], 1)
    logp, _ = token_logprobs(model, full, mask, ro.completion_ids.shape[1], temperature=0.7)
    assert torch.allclose(logp * ro.completion_mask, ro.logprobs, atol=1e-4)


def test_sampling_distribution_matches_softmax(tiny_random_lm_dir):
    """First sampled token over 4000 draws vs the exact softmax(logits / T) of a plain forward (chi-square)."""
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    prompt = tok("sort: dcba\n")["input_ids"]
    n = 4000
    ro = sample(model, [prompt] * n, max_new_tokens=1, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                temperature=0.15, generator=torch.Generator().manual_seed(1))
    from scipy.stats import chisquare

    counts = torch.bincount(ro.completion_ids[:, 0], minlength=len(tok)).double()
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].double() / 0.15, -1)
    keep = probs * n >= 5  # chi-square needs expected counts >= 5; pool the tail
    observed = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)]).numpy()
    expected = torch.cat([probs[keep], probs[~keep].sum(0, keepdim=True)]).numpy() * n
    assert chisquare(observed, expected).pvalue > 1e-3  # goodness of fit to the exact distribution
    shifted = torch.roll(probs, 1)  # and the test has power: a shifted distribution is rejected
    expected_shifted = torch.cat([shifted[keep], shifted[~keep].sum(0, keepdim=True)]).numpy() * n
    assert chisquare(observed, expected_shifted * observed.sum() / expected_shifted.sum()).pvalue < 1e-3


def test_same_seed_same_samples(tiny_random_lm_dir):
    model, tok = load_causal_lm(str(tiny_random_lm_dir))
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    a, b = (sample(model, ids, max_new_tokens=8, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                   temperature=1.0, generator=torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a.completion_ids, b.completion_ids)
