"""Known-answer tests for the analysis diagnostics: phases (C1), update sparsity (C3), stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spectrum_rl.analysis.phases import Phases, detect_all, detect_phases
from spectrum_rl.analysis.sparsity import changed_masks, mask_overlap, update_sparsity
from spectrum_rl.analysis.stats import bootstrap_ci, bootstrap_diff_ci, spearman

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


def test_bootstrap_ci_covers_mean_and_narrows_with_data():
    rng = np.random.default_rng(0)
    big = rng.normal(1.0, 2.0, size=5000)
    mean, lo, hi = bootstrap_ci(big)
    assert lo < 1.0 < hi and lo < mean < hi
    _, lo_s, hi_s = bootstrap_ci(big[:100])
    assert hi - lo < hi_s - lo_s
    assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)


def test_bootstrap_diff_ci():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000)
    diff, lo, hi = bootstrap_diff_ci(a, b)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert lo < 1.0 < hi and lo > 0.8


def test_spearman():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spearman(x, [10.0, 20.0, 30.0, 40.0, 50.0]) == pytest.approx(1.0)
    assert spearman(x, [5.0, 4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert spearman(x, [np.exp(v) for v in x]) == pytest.approx(1.0)
    assert np.isnan(spearman([1.0, 2.0], [1.0, 2.0]))
    assert np.isnan(spearman(x, [3.0] * 5))
    assert spearman(x + [np.nan], [1.0, 2.0, 3.0, 4.0, 5.0, 0.0]) == pytest.approx(1.0)
