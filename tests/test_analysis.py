"""Known-answer tests for the analysis diagnostics: phases (C1), update sparsity (C3), stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spectrum_rl.analysis.phases import Phases, detect_all, detect_phases
from spectrum_rl.analysis.sparsity import changed_masks, mask_overlap, update_sparsity
from spectrum_rl.analysis.stats import paired_diff, spearman, spearman_permutation_p, t_interval

STEPS = list(range(0, 110, 10))
DIP = [0.5, 0.5, 0.35, 0.3, 0.32, 0.38, 0.44, 0.49, 0.52, 0.52, 0.53]  # trough at 30, regains 0.47 at 70
RISE_FALL = [0.5, 0.55, 0.6, 0.65, 0.68, 0.7, 0.68, 0.66, 0.64, 0.62, 0.6]  # peak at 50, low at 100
FALLING_LOSS = (list(range(101)), [2.0 - 0.01 * s + 0.02 * np.sin(s) for s in range(101)])
RISING_LOSS = (list(range(101)), [1.0 + 0.01 * s for s in range(101)])


# ---- phases ----------------------------------------------------------------------------------


def test_planted_dip_gives_disruption_and_readaptation():
    phases = detect_phases(STEPS, DIP)
    assert (phases.disruption.start, phases.disruption.end) == (20, 30)
    assert (phases.readaptation.start, phases.readaptation.end) == (30, 70)
    assert phases.disruption.confidence == pytest.approx(1.0)  # depth 0.2 >= 3 * margin, 5 points
    assert phases.readaptation.confidence == pytest.approx(1.0)  # climbs past the start again
    assert phases.overfitting is None  # no loss series
    assert json.loads(json.dumps(phases.to_dict()))["disruption"]["end"] == 30


def test_partial_recovery_and_shallow_dip_confidence():
    phases = detect_phases(STEPS[:6], [0.5, 0.4, 0.3, 0.35, 0.38, 0.4])  # never regains 0.47
    assert (phases.readaptation.start, phases.readaptation.end) == (20, 50)
    assert phases.readaptation.confidence == pytest.approx(0.5)
    shallow = detect_phases([0, 10, 20], [0.5, 0.46, 0.5]).disruption  # one point, depth 0.04
    assert (shallow.start, shallow.end) == (10, 10)
    assert shallow.confidence == pytest.approx(0.04 / 0.09 * 0.5)


def test_monotone_rise_has_no_phases():
    assert detect_phases(STEPS, np.linspace(0.3, 0.8, len(STEPS)), *FALLING_LOSS) == Phases()


def test_overfitting_found_only_while_loss_falls():
    over = detect_phases(STEPS, RISE_FALL, *FALLING_LOSS).overfitting
    assert (over.start, over.end) == (50, 100)
    assert 0.9 < over.confidence <= 1.0
    assert detect_phases(STEPS, RISE_FALL, *RISING_LOSS).overfitting is None
    assert detect_phases(STEPS, RISE_FALL).overfitting is None


def test_late_fall_below_start_is_overfitting_not_disruption():
    scores = [0.5, 0.6, 0.7, 0.6, 0.45, 0.4]
    phases = detect_phases(STEPS[:6], scores, *FALLING_LOSS)
    assert phases.disruption is None
    assert (phases.overfitting.start, phases.overfitting.end) == (20, 50)


def test_overfitting_after_readaptation():
    scores = DIP + [0.6, 0.62, 0.55, 0.5]  # peak 0.62 at 120, falls to 0.5 by 140
    steps = list(range(0, 150, 10))
    phases = detect_phases(steps, scores, list(range(141)), [3.0 - 0.01 * s for s in range(141)])
    assert (phases.overfitting.start, phases.overfitting.end) == (120, 140)


def test_smoothing_ignores_a_single_noisy_eval():
    noisy = [0.5, 0.52, 0.45, 0.55, 0.57, 0.6]
    assert detect_phases(STEPS[:6], noisy).disruption is not None
    assert detect_phases(STEPS[:6], noisy, smooth=3) == Phases()
    assert detect_phases(STEPS, DIP, smooth=3).disruption.end == 30


def test_detect_all_shared_and_per_domain_loss():
    series = {"a": (STEPS, DIP), "b": (STEPS, RISE_FALL)}
    shared = detect_all(series, loss=FALLING_LOSS)
    assert shared["a"].disruption is not None and shared["b"].overfitting is not None
    per_domain = detect_all(series, loss={"b": RISING_LOSS}, margin=0.03)
    assert per_domain["b"].overfitting is None and per_domain["a"].overfitting is None


def test_phases_rejects_bad_input():
    with pytest.raises(ValueError):
        detect_phases([0, 10], [0.5])
    with pytest.raises(ValueError):
        detect_phases([10, 0], [0.5, 0.4])


# ---- sparsity --------------------------------------------------------------------------------


def _model_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(20, 8, generator=g) + 2.0,
        "model.layers.0.mlp.weight": torch.rand(100, 50, generator=g) + 1.0,  # |x| in [1, 2)
        "model.layers.1.mlp.weight": torch.rand(30, 40, generator=g) + 1.0,
        "model.norm.weight": torch.ones(8),
        "model.rotary.inv_freq_ids": torch.arange(4),
    }  # not floating: skipped


def test_known_sparse_delta():
    before = _model_state()
    after = {k: v.clone() for k, v in before.items()}
    flat = after["model.layers.0.mlp.weight"].view(-1)
    flat[torch.randperm(5000, generator=torch.Generator().manual_seed(1))[:500]] += 0.1  # exactly 10%
    report = update_sparsity(before, after)
    n = 160 + 5000 + 1200 + 8
    assert report.n_elements == n
    assert report.unchanged_fraction == pytest.approx(1 - 500 / n, abs=1e-12)
    assert report.per_layer_density == pytest.approx({"embed_tokens": 0.0, "layer 0": 0.1, "layer 1": 0.0, "norm": 0.0})
    assert report.rank_ratio["model.layers.1.mlp.weight"] == 0.0
    assert report.mean_rank_ratio == report.rank_ratio["model.layers.0.mlp.weight"] == 1.0  # 10% random: full rank
    assert set(report.rank_ratio) == {
        "model.embed_tokens.weight",
        "model.layers.0.mlp.weight",
        "model.layers.1.mlp.weight",
    }
    assert json.loads(json.dumps(report.to_dict()))["per_layer_density"]["layer 0"] == pytest.approx(0.1)
    masks = changed_masks(before, after)
    assert int(masks["model.layers.0.mlp.weight"].sum()) == 500 and "model.rotary.inv_freq_ids" not in masks


def test_rank_one_delta_and_full_rank_delta():
    # Small integers are exact in bf16, so the bf16 delta is exactly the rank-1 outer product
    # (bf16 rounding of general values would add full-rank noise to delta).
    g = torch.Generator().manual_seed(2)
    w = torch.randint(-8, 8, (100, 50), generator=g).float()
    u, v = torch.randint(1, 4, (100, 1), generator=g).float(), torch.randint(1, 4, (1, 50), generator=g).float()
    rank1 = update_sparsity({"lm_head.weight": w}, {"lm_head.weight": w + u @ v})
    assert rank1.rank_ratio["lm_head.weight"] == pytest.approx(1 / 50)
    assert rank1.per_layer_density == {"lm_head": 1.0}
    dense = update_sparsity({"w": w}, {"w": w + 0.1 * torch.randn(100, 50, generator=g)})
    assert dense.mean_rank_ratio == pytest.approx(1.0)
    assert update_sparsity({"w": w}, {"w": w}, compute_rank=False).rank_ratio == {}


def test_changes_below_bf16_resolution_are_unchanged():
    w = torch.ones(64, 64)
    report = update_sparsity({"w": w}, {"w": w + 1e-7})
    assert report.unchanged_fraction == 1.0 and report.rank_ratio["w"] == 0.0
    assert report.mean_rank_ratio is None


def test_mask_overlap():
    g = torch.Generator().manual_seed(3)
    a = {"x": torch.rand(10, 10, generator=g) > 0.5, "y": torch.rand(7, generator=g) > 0.5}
    assert mask_overlap(a, a) == 1.0
    assert mask_overlap(a, {k: ~m for k, m in a.items()}) == 0.0
    half = {"x": a["x"], "y": torch.zeros(7, dtype=torch.bool)}
    assert mask_overlap(a, half) == pytest.approx(int(a["x"].sum()) / (int(a["x"].sum()) + int(a["y"].sum())))
    assert mask_overlap({"x": torch.zeros(10, 10, dtype=torch.bool)}, a) == 0.0


# ---- stats -----------------------------------------------------------------------------------


def test_t_interval_textbook_value():
    iv = t_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t_{0.975, 2} = 4.303
    assert iv.mean == pytest.approx(2.0) and iv.n == 3 and iv.defined
    assert iv.hi - iv.mean == pytest.approx(iv.mean - iv.lo) == pytest.approx(4.3027 / np.sqrt(3), abs=1e-4)
    assert iv.above(-0.5) and not iv.above(0.0) and iv.below(4.5) and not iv.below(4.0)
    d = iv.to_dict()
    assert d["ci_low"] == pytest.approx(-0.4841, abs=1e-4) and d["ci_high"] == pytest.approx(4.4841, abs=1e-4)
    assert d["n"] == 3 and d["method"] == "Student t over seeds"
    with pytest.raises(ValueError):
        t_interval([])


def test_t_interval_of_one_value_is_undefined():
    iv = t_interval([0.7])
    assert iv.mean == pytest.approx(0.7) and iv.n == 1 and not iv.defined
    assert not iv.above(0.0) and not iv.below(1.0)  # no interval: neither side
    assert iv.to_dict() == {"mean": 0.7, "ci_low": None, "ci_high": None, "n": 1, "method": "Student t over seeds"}
    assert json.loads(json.dumps(iv.to_dict(), allow_nan=False))["ci_low"] is None


def test_paired_diff_uses_the_pairing():
    # Seeds differ a lot (1, 2, 3) but a beats b by about 0.11 in every seed.
    a, b = [1.10, 2.12, 3.11], [1.0, 2.0, 3.0]
    paired = paired_diff(a, b)
    assert paired.mean == pytest.approx(0.11) and paired.n == 3 and "paired" in paired.method
    assert paired.above(0.0)  # per-seed differences 0.10, 0.12, 0.11: s = 0.01
    assert paired.lo == pytest.approx(0.11 - 4.3027 * 0.01 / np.sqrt(3), abs=1e-4)
    # Unpaired, the seed-to-seed spread swamps the gain: both t-intervals overlap widely,
    # and pairing the same numbers with the wrong seeds gives an interval containing 0.
    ia, ib = t_interval(a), t_interval(b)
    assert ia.lo < ib.mean < ia.hi and ib.lo < ia.mean < ib.hi
    shuffled = paired_diff(a, [b[1], b[2], b[0]])
    assert not shuffled.above(0.0) and not shuffled.below(0.0)
    assert not paired_diff([0.5], [0.4]).defined
    with pytest.raises(ValueError):
        paired_diff([1.0, 2.0, 3.0], [1.0, 2.0])


def test_spearman_permutation_p():
    x = list(range(6))
    # A perfect rank order of 6 points: 2 of the 720 pairings reach |rho| = 1, p ~ 2/720.
    assert spearman_permutation_p(x, [2 * v + 1 for v in x]) < 0.01
    assert spearman_permutation_p(x, [-v for v in x]) < 0.01
    assert spearman_permutation_p(x, [3, 1, 6, 2, 5, 4]) > 0.3  # rho = 0.37
    rng = np.random.default_rng(0)
    assert spearman_permutation_p(rng.normal(size=8), rng.normal(size=8)) > 0.2
    # the observed pairing counts as one of the n_perm + 1, so p is never below 1 / (n_perm + 1);
    # about 2 of 720 random pairings are as extreme, so 100 of them add a few hits at most
    p = spearman_permutation_p(x, [2 * v for v in x], n_perm=100)
    assert 1 / 101 <= p <= 4 / 101
    assert np.isnan(spearman_permutation_p(x, [1.0] * 6))


def test_spearman():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spearman(x, [10.0, 20.0, 30.0, 40.0, 50.0]) == pytest.approx(1.0)
    assert spearman(x, [5.0, 4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert spearman(x, [np.exp(v) for v in x]) == pytest.approx(1.0)
    assert np.isnan(spearman([1.0, 2.0], [1.0, 2.0]))
    assert np.isnan(spearman(x, [3.0] * 5))
    assert spearman(x + [np.nan], [1.0, 2.0, 3.0, 4.0, 5.0, 0.0]) == pytest.approx(1.0)


# ---- phases: eval-noise floor on the margin ------------------------------------------------------

FLAT_NOISE = [0.0, 0.03, -0.02, 0.01, -0.03, 0.02, 0.0, -0.01, 0.03, -0.02, 0.01]  # |noise| <= 0.03


def _flat_with_dip(depth: float) -> list[float]:
    """A noisy flat curve at 0.5 with a dip of ``depth`` at steps 30-50 (eval points 3-5)."""
    return [0.5 + e - (depth if 3 <= i <= 5 else 0.0) for i, e in enumerate(FLAT_NOISE)]


def test_dip_within_eval_noise_is_not_a_disruption():
    # p = 0.5 on n = 50 prompts: se = sqrt(0.25 / 50) = 0.0707, so changes under 2 se = 0.141 are noise.
    shallow = _flat_with_dip(0.1)
    assert detect_phases(STEPS, shallow).disruption is not None  # the fixed 0.03 margin calls noise a phase
    phases = detect_phases(STEPS, shallow, eval_size=50)
    assert phases.disruption is None and phases.readaptation is None
    deep = detect_phases(STEPS, _flat_with_dip(0.3), eval_size=50)
    assert (deep.disruption.start, deep.disruption.end) == (30, 40)  # trough 0.5 - 0.03 - 0.3 at step 40
    assert (deep.readaptation.start, deep.readaptation.end) == (40, 60)
    assert "2 x eval s.e." in deep.disruption.detail
    # confidence is scaled by the effective margin: depth 0.33 / (3 * 0.1414) and 3 points
    assert deep.disruption.confidence == pytest.approx(0.33 / (3 * 2 * np.sqrt(0.25 / 50)))


def test_noise_floor_never_lowers_the_margin_and_clips_scores():
    from spectrum_rl.analysis.phases import binomial_se, mean_binomial_se

    assert detect_phases(STEPS, DIP, eval_size=100_000) == detect_phases(STEPS, DIP)  # 2 se = 0.003 < 0.03
    assert binomial_se(0.5, 50) == pytest.approx(np.sqrt(0.005))
    assert binomial_se(1.26, 50) == 0.0 and binomial_se(-0.1, 50) == 0.0  # p clipped into [0, 1]
    # mean over D = 2 domains at p = 0.5, n = 50 each: sqrt(0.005 + 0.005) / 2 = 0.05
    assert mean_binomial_se({"a": 0.5, "b": 0.5}, {"a": 50, "b": 50}) == pytest.approx(0.05)
    assert mean_binomial_se({"a": 0.9, "b": 0.5}, {"a": 10, "b": 40}) == pytest.approx(
        np.sqrt(0.09 / 10 + 0.25 / 40) / 2
    )
    with pytest.raises(ValueError):
        mean_binomial_se({"a": 0.5}, {})
    with pytest.raises(ValueError):
        detect_phases(STEPS, DIP, eval_size=50, noise_se=0.01)
    with pytest.raises(ValueError):
        detect_phases(STEPS, DIP, eval_size=0)
    with pytest.raises(ValueError):
        detect_phases(STEPS, DIP, noise_se=-0.1)


def test_detect_all_eval_sizes_per_domain_and_for_the_mean():
    flat = (STEPS, [0.5] * len(STEPS))
    shallow, deep = (STEPS, _flat_with_dip(0.1)), (STEPS, _flat_with_dip(0.3))
    out = detect_all({"a": shallow, "b": deep, "c": shallow}, eval_sizes={"a": 50, "b": 50})
    assert out["a"].disruption is None and out["b"].disruption is not None
    assert out["c"].disruption is not None  # no size given: the fixed margin
    # The mean of two domains at 0.5 on 50 prompts each has se 0.05: 2 se = 0.1.
    small_dip = (STEPS, [0.5 - (0.08 if 3 <= i <= 5 else 0.0) for i in range(len(STEPS))])
    big_dip = (STEPS, [0.5 - (0.15 if 3 <= i <= 5 else 0.0) for i in range(len(STEPS))])
    sizes = {"a": 50, "b": 50}
    assert detect_all({"a": flat, "b": flat, "mean": small_dip}, eval_sizes=sizes)["mean"] == Phases()
    assert detect_all({"a": flat, "b": flat, "mean": big_dip}, eval_sizes=sizes)["mean"].disruption is not None
    # a domain without a size leaves the mean at the fixed margin
    assert detect_all({"a": flat, "c": flat, "mean": small_dip}, eval_sizes=sizes)["mean"].disruption is not None


def test_holm_and_the_paired_sign_flip_test():
    import itertools

    from spectrum_rl.analysis.stats import holm, paired_p

    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 with a running maximum: 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, float("nan"), 0.6]) == pytest.approx([1.0, float("nan"), 1.0], nan_ok=True)  # m = 2
    a, b = [1.0, 2.0, 3.0, 4.5], [0.5, 1.9, 2.2, 3.0]
    # by hand: the differences 0.5, 0.1, 0.8, 1.5 under all 16 sign assignments; |sum| >= 2.9 only
    # for all-plus and all-minus, and 2.7 (0.1 flipped) falls short: p = 2/16
    d = [x - y for x, y in zip(a, b, strict=True)]
    flips = [abs(sum(s * x for s, x in zip(signs, d, strict=True))) for signs in itertools.product((1, -1), repeat=4)]
    exact = sum(f >= abs(sum(d)) - 1e-12 for f in flips) / len(flips)
    assert exact == pytest.approx(2 / 16)
    assert paired_p(a, b) == pytest.approx(exact)
    # differences -0.3, 0.8, -0.4, 0.9, 0.5 (sum 1.5): 10 of the 32 assignments reach |sum| >= 1.5
    a2, b2 = [1.0, 2.0, 3.0, 4.0, 5.0], [1.3, 1.2, 3.4, 3.1, 4.5]
    d2 = [x - y for x, y in zip(a2, b2, strict=True)]
    flips2 = [abs(sum(s * x for s, x in zip(signs, d2, strict=True))) for signs in itertools.product((1, -1), repeat=5)]
    exact2 = sum(f >= abs(sum(d2)) - 1e-12 for f in flips2) / len(flips2)
    assert exact2 == pytest.approx(10 / 32) and paired_p(a2, b2) == pytest.approx(exact2)
    assert paired_p(b2, a2) == pytest.approx(exact2)  # two-sided: the order of the arms does not matter
    # two equal differences: only the two unanimous signs (of 4) reach it; no difference: p = 1
    assert paired_p([1.0, 2.0], [0.0, 1.0]) == pytest.approx(0.5) and paired_p([1.0, 2.0], [1.0, 2.0]) == 1.0
    assert np.isnan(paired_p([1.0], [0.0]))


def test_held_out_course_flags_a_drop_beyond_two_standard_errors():
    from spectrum_rl.scheduler.continual import held_out_course
    from spectrum_rl.trainer.run import held_out_table

    evals = [
        {"step": 0, "eval/a": 0.70, "eval/b": 0.70, "eval/c": 0.10},
        {"step": 10, "eval/a": 0.75, "eval/b": 0.72, "eval/c": 0.50},
        {"step": 20, "eval/a": 0.40, "eval/b": 0.62, "eval/c": 0.60},
    ]
    course, bwt, se = held_out_course(evals, ["a", "b", "c"], {"a": 64, "b": 64, "c": 64})
    # a: 0.70 -> 0.40 on 64 prompts, 2 SE of the difference ~0.16: fell; b: -0.08, within the noise
    assert course["a"].fell and course["a"].forgot and not course["b"].fell and not course["c"].fell
    assert (course["c"].start, course["c"].best, course["c"].end) == (0.10, 0.60, 0.60)
    assert bwt == pytest.approx(((0.40 - 0.75) + (0.62 - 0.72) + 0.0) / 3)
    assert 0 < se < 0.1
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(held_out_table(evals, ["a", "b", "c"], {"a": 64, "b": 64, "c": 64}))
    text = console.export_text()
    assert "! fell" in text.splitlines()[[i for i, line in enumerate(text.splitlines()) if " a " in line][0]]
    assert "BWT (mean of end - best) -0.150" in text


def test_a_zero_variance_paired_difference_has_no_t_interval_and_an_exact_p():
    """Three seeds whose differences are all 7/256: no t interval (a zero-width one would claim
    certainty), and the exact sign-flip p is 2/8 = 0.25, not the t-test's 0."""
    from spectrum_rl.analysis.stats import paired_diff, paired_p, sign_flip_p

    a, b = [0.5 + 7 / 256, 0.6 + 7 / 256, 0.4 + 7 / 256], [0.5, 0.6, 0.4]
    d = paired_diff(a, b)
    assert not d.defined and d.to_dict()["ci_low"] is None and d.mean == pytest.approx(7 / 256)
    assert paired_p(a, b) == pytest.approx(0.25)
    assert sign_flip_p([0.1] * 8) == pytest.approx(2 / 256)  # the smallest p at n = 8
    assert sign_flip_p([1.0, -1.0, 1.0, -1.0]) == 1.0
    # above the exact range: seeded random flips, close to the exact value
    many = [0.05 * (k % 5) - 0.04 for k in range(20)]
    assert sign_flip_p(many) == pytest.approx(sign_flip_p(many, exact_up_to=20), abs=0.01)
