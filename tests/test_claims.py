"""The claim rules (analysis/claims.py) on synthetic study numbers: every branch of every rule,
including ties, a single seed and two seeds. Pure dicts, no training."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from spectrum_rl.analysis.claims import (
    EQUIVALENCE_MARGIN,
    INCONCLUSIVE,
    MIN_KAPPA,
    MIN_SEEDS,
    NOT_SUPPORTED,
    SUPPORTED,
    judge_claims,
)
from spectrum_rl.analysis.report import claims_markdown
from spectrum_rl.analysis.stats import spearman, spearman_permutation_p, t_interval

CONFIG = SimpleNamespace(
    tasks=[
        SimpleNamespace(name="s", kind="structured"),
        SimpleNamespace(name="s2", kind="structured"),
        SimpleNamespace(name="c", kind="creative"),
        SimpleNamespace(name="c2", kind="creative"),
    ]
)
BASE = [0.2, 0.5, 0.8]  # seeds differ a lot: only a paired comparison sees a steady gain
GAIN = [0.10, 0.12, 0.11]
FEW = "at least 3 are needed for evidence"


def run(final=0.5, kl=0.1, auc=0.2, unchanged=0.5, classes=None, mu=None) -> dict:
    return {
        "final_mean": final,
        "kl_to_base": {"0": 0.0, "10": kl},
        "plasticity": {"auc": auc},
        "sparsity": {"unchanged_fraction": unchanged},
        "entropy_class": classes or {},
        "mu": mu or ([], []),
    }


def judge(runs, arms=None, overlap=None) -> dict:
    claims = judge_claims(runs, arms or {}, overlap or {}, CONFIG)
    for c in claims.values():  # every claim: a verdict, its rule and why; valid JSON (no NaN)
        assert c["verdict"] in {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE} and c["rule"] and c["reason"]
    json.dumps(claims, allow_nan=False)
    return claims


def plus(xs, ds):
    return [x + d for x, d in zip(xs, ds)]


def test_min_seeds_is_three():
    assert MIN_SEEDS == 3


def test_nothing_run_is_inconclusive_everywhere():
    claims = judge({})
    assert set(claims) == {"C1", "C2", "C3", "C4", "C5"}
    assert all(c["verdict"] == INCONCLUSIVE for c in claims.values())
    assert "not run" in claims["C1"]["reason"] and "not run" in claims["C5"]["reason"]


# ---- C1: staged disruption and chord_mu - staged ----------------------------------------------


def c1(staged, chord, disrupted) -> dict:
    runs = {"staged": [run(f) for f in staged], "chord_mu": [run(f) for f in chord]}
    phases = [{"mean": {"disruption": {"start": 10, "end": 20} if d else None}} for d in disrupted]
    return judge(runs, {"staged": {"phases": phases}})["C1"]


def test_c1_supported_paired_by_seed():
    got = c1(BASE, plus(BASE, GAIN), [True, True, False])
    assert got["verdict"] == SUPPORTED and got["staged_disruption_seeds"] == "2/3"
    diff = got["chord_mu_minus_staged"]
    assert diff["mean"] == pytest.approx(0.11) and diff["n"] == 3 and "paired" in diff["method"]
    assert diff["ci_low"] > 0 and "above 0" in got["reason"]
    # Unpaired, the seed-to-seed spread (0.2 .. 0.8) would swamp the 0.11 gain.
    assert t_interval(BASE).hi > t_interval(plus(BASE, GAIN)).lo


@pytest.mark.parametrize(
    ("gain", "disrupted", "words"),
    [
        ([-0.10, -0.12, -0.11], [True] * 3, "below 0"),
        ([0.001, -0.002, 0.0005], [True] * 3, "within"),  # straddles 0, inside the margin
        ([0.005, 0.006, 0.007], [True] * 3, "within"),  # above 0 but surely below the margin
        (GAIN, [False] * 3, "no staged seed (0/3)"),
    ],
)
def test_c1_not_supported(gain, disrupted, words):
    got = c1(BASE, plus(BASE, gain), disrupted)
    assert got["verdict"] == NOT_SUPPORTED and words in got["reason"]
    assert got["equivalence_margin"] == EQUIVALENCE_MARGIN


@pytest.mark.parametrize(
    ("gain", "disrupted", "words"),
    [
        ([0.15, -0.10, 0.05], [True] * 3, "contains 0"),
        (GAIN, [True, False, False], "only 1/3"),
        ([0.15, -0.10, 0.05], [False, True, False], "contains 0; staged disrupted in only 1/3"),
    ],
)
def test_c1_inconclusive(gain, disrupted, words):
    got = c1(BASE, plus(BASE, gain), disrupted)
    assert got["verdict"] == INCONCLUSIVE and words in got["reason"]


def test_c1_disruption_tie_is_not_most():
    got = c1(BASE + [0.4], plus(BASE + [0.4], GAIN + [0.1]), [True, True, False, False])
    assert got["verdict"] == INCONCLUSIVE and "2/4" in got["reason"]


@pytest.mark.parametrize("n", [1, 2])
def test_c1_too_few_seeds(n):
    got = c1(BASE[:n], plus(BASE, GAIN)[:n], [True] * n)
    assert got["verdict"] == INCONCLUSIVE
    assert got["reason"].startswith(f"only n={n} seed") and FEW in got["reason"]
    assert got["chord_mu_minus_staged"] is None
    assert "only n=2 seeds; at least 3 are needed for evidence" in c1(BASE, BASE[:2], [True] * 3)["reason"]


def test_c1_pairs_over_the_common_seeds():
    # staged ran 4 seeds, chord_mu 3: seeds 0-2 are compared; seed 3 (a wild 5.0) is not.
    got = c1(BASE + [5.0], plus(BASE, GAIN), [True] * 4)
    assert got["verdict"] == SUPPORTED and got["chord_mu_minus_staged"]["n"] == 3


def test_c1_missing_arm_or_value():
    staged = [run(f) for f in BASE]
    phases = {"staged": {"phases": [{"mean": {"disruption": {"start": 1}}}] * 3}}
    assert "chord_mu was not run" in judge({"staged": staged}, phases)["C1"]["reason"]
    assert "staged was not run" in judge({"staged": staged, "chord_mu": staged})["C1"]["reason"]
    got = c1(BASE, [0.3, None, 0.9], [True] * 3)  # a missing score: no interval
    assert got["verdict"] == INCONCLUSIVE and "no interval" in got["reason"]


# ---- C2: KL to base vs plasticity -------------------------------------------------------------


def c2(kls, aucs, arm="rl_only") -> dict:
    return judge({arm: [run(kl=k, auc=a) for k, a in zip(kls, aucs)]})["C2"]


def test_c2_supported_and_not_supported_by_sign():
    x = list(range(8))
    got = c2(x, [-v for v in x])
    assert got["verdict"] == SUPPORTED and got["spearman_kl_vs_plasticity"] == -1.0
    assert got["p_value"] < 0.01 and got["runs"] == 8
    got = c2(x, x)
    assert got["verdict"] == NOT_SUPPORTED and got["spearman_kl_vs_plasticity"] == 1.0 and "more drift" in got["reason"]


def test_c2_six_runs_is_enough_five_is_not():
    assert c2(range(6), range(6, 0, -1))["verdict"] == SUPPORTED
    got = c2(range(5), range(5, 0, -1))
    assert got["verdict"] == INCONCLUSIVE and "only 5 runs" in got["reason"] and got["runs"] == 5


def test_c2_weak_correlation_over_many_runs_is_not_supported():
    x = list(range(24))
    y = [(7 * i) % 24 for i in x]  # a permutation with rho = 0.19, p = 0.38
    assert abs(spearman(x, y)) < 0.3 and spearman_permutation_p(x, y) > 0.05
    got = c2(x, y)
    assert got["verdict"] == NOT_SUPPORTED and "|rho| < 0.3" in got["reason"]
    y = [(5 * i) % 24 for i in x]  # rho = 0.30, p = 0.15: not weak, not significant
    assert c2(x, y)["verdict"] == INCONCLUSIVE


def test_c2_inconclusive_when_not_significant_with_few_runs():
    x = list(range(10))
    got = c2(x, [(3 * i) % 10 for i in x])  # rho = 0.27, p = 0.46, only 10 runs
    assert got["verdict"] == INCONCLUSIVE and "not significant" in got["reason"]


def test_c2_undefined_rho():
    got = c2([0.5] * 8, range(8))
    assert got["verdict"] == INCONCLUSIVE and got["spearman_kl_vs_plasticity"] is None and got["p_value"] is None


def test_c2_pools_arms_but_not_joint_and_skips_missing_numbers():
    runs = {arm: [run(kl=k + j, auc=-(k + j)) for j in (0.0, 0.3, 0.6)] for k, arm in enumerate("abcd")}
    assert judge(runs)["C2"]["verdict"] == SUPPORTED  # 4 arms x 3 seeds
    runs = {"rl_only": [run(kl=k, auc=-k) for k in range(3)]}
    runs["joint"] = runs["rl_only"]  # the same runs: counted once
    assert judge(runs)["C2"]["runs"] == 3
    runs = {"rl_only": [run(kl=k, auc=-k) for k in range(6)]}
    runs["rl_only"][0]["kl_to_base"] = {}
    runs["rl_only"][1]["plasticity"]["auc"] = float("nan")
    got = judge(runs)["C2"]
    assert got["runs"] == 4 and got["verdict"] == INCONCLUSIVE


# ---- C3: update sparsity -----------------------------------------------------------------------


RL_SPARSE, SFT_DENSE = [0.80, 0.82, 0.81], [0.10, 0.12, 0.11]


def c3(rl, sft, rank=0.99, overlap=0.6, per_seed=True) -> dict:
    runs = {"rl_only": [run(unchanged=u) for u in rl], "sft_only": [run(unchanged=u) for u in sft]}
    if not per_seed:
        for r in runs["rl_only"]:
            del r["sparsity"]
    arms = {
        "rl_only": {
            "sparsity_unchanged": t_interval(rl).to_dict(),
            "rank_ratio": t_interval([rank] * len(rl)).to_dict(),
        },
        "sft_only": {"sparsity_unchanged": t_interval(sft).to_dict()},
    }
    ov = {} if overlap is None else {"rl_only": overlap, "sft_only": 0.95}
    return judge(runs, arms, ov)["C3"]


def test_c3_supported():
    got = c3(RL_SPARSE, SFT_DENSE)
    assert got["verdict"] == SUPPORTED
    assert got["overlap_chance"] == pytest.approx(0.19) and got["overlap_kappa"] == pytest.approx(0.41 / 0.81, abs=1e-4)
    assert got["rl_minus_sft_unchanged"]["mean"] == pytest.approx(0.70) and got["rl_minus_sft_unchanged"]["n"] == 3
    assert got["rl_unchanged"]["n"] == 3 and got["band"] == [0.70, 0.95]


@pytest.mark.parametrize(
    ("rl", "sft", "words"),
    [
        ([0.07, 0.08, 0.09], [0.01, 0.02, 0.015], "entirely outside"),  # what the study measures today
        ([0.97, 0.98, 0.99], [0.10, 0.12, 0.11], "entirely outside"),  # sparser than the band
        (RL_SPARSE, [0.90, 0.91, 0.92], "denser than sft_only"),
    ],
)
def test_c3_not_supported(rl, sft, words):
    got = c3(rl, sft)
    assert got["verdict"] == NOT_SUPPORTED and words in got["reason"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rl": [0.60, 0.72, 0.63]}, "needs its mean in [0.7, 0.95]"),  # interval overlaps the band, mean 0.65 outside
        ({"sft": [0.85, 0.70, 0.90]}, "unchanged = -0.007 [-0.284, +0.270], n=3 (needs above 0)"),  # contains 0
        ({"rank": 0.5}, "rank ratio 0.5"),
        ({"rank": None}, "rank ratio None"),
        ({"overlap": 0.2}, "kappa 0.0123"),  # overlap ~ chance (0.19)
        ({"overlap": 0.19 + 0.81 * (MIN_KAPPA - 0.01)}, "kappa 0.09"),
        ({"overlap": None}, "overlap None"),
        ({"per_seed": False}, "no interval"),  # per-seed sparsity not recorded
    ],
)
def test_c3_inconclusive(kwargs, words):
    args = {"rl": RL_SPARSE, "sft": SFT_DENSE} | kwargs
    got = c3(args.pop("rl"), args.pop("sft"), **args)
    assert got["verdict"] == INCONCLUSIVE and words in got["reason"] and got["reason"].startswith("not met")


def test_c3_kappa_just_above_the_margin_passes():
    assert c3(RL_SPARSE, SFT_DENSE, overlap=0.19 + 0.81 * (MIN_KAPPA + 0.01))["verdict"] == SUPPORTED


@pytest.mark.parametrize("n", [1, 2])
def test_c3_too_few_seeds_even_when_outside_the_band(n):
    got = c3([0.07, 0.08][:n], [0.01, 0.02][:n])
    assert got["verdict"] == INCONCLUSIVE and got["reason"].startswith(f"only n={n} seed") and FEW in got["reason"]
    assert got["rl_minus_sft_unchanged"] is None


def test_c3_unequal_seeds_and_missing_arm():
    assert c3(RL_SPARSE, SFT_DENSE + [0.5])["rl_minus_sft_unchanged"]["n"] == 3
    runs = {"rl_only": [run(unchanged=u) for u in RL_SPARSE]}
    got = judge(runs, {"rl_only": {"sparsity_unchanged": t_interval(RL_SPARSE).to_dict()}})["C3"]
    assert got["verdict"] == INCONCLUSIVE and "sft_only was not run" in got["reason"]


# ---- C4: entropy slope sign by kind, structured_first - joint ---------------------------------


def c4(slopes, sf=None, joint=BASE) -> dict:
    rl = [run(f) for f in joint]
    sf = plus(joint, GAIN) if sf is None else sf
    runs = {"rl_only": rl, "joint": rl, "structured_first": [run(f) for f in sf]}
    return judge(runs, {"rl_only": {"entropy_slope": slopes}})["C4"]


MATCH = {"s": -0.01, "c": 0.02}
WORSE = plus(BASE, [-0.10, -0.12, -0.11])
STRADDLE = plus(BASE, [0.15, -0.10, 0.05])


def test_c4_supported():
    got = c4(MATCH)
    assert got["verdict"] == SUPPORTED and got["slopes_matching_kind"] == "2/2"
    assert got["structured_first_minus_joint"]["mean"] == pytest.approx(0.11)
    assert got["structured_first_minus_joint"]["n"] == 3


@pytest.mark.parametrize(
    ("slopes", "sf"),
    [
        (MATCH, WORSE),  # diff below 0
        ({"s": 0.01, "c": -0.02}, None),  # both slopes reversed
        ({"s": 0.01, "c": -0.02, "s2": -0.01}, None),  # 2 of 3 reversed
        ({"s": -0.01, "c": -0.02}, WORSE),  # slope tie, diff below 0
        ({"s": 0.0}, WORSE),  # no counted domain, diff below 0
        ({"s": 0.01, "c": -0.02}, STRADDLE),  # slopes reversed, diff undecided
    ],
)
def test_c4_not_supported(slopes, sf):
    assert c4(slopes, sf)["verdict"] == NOT_SUPPORTED


@pytest.mark.parametrize(
    ("slopes", "sf"),
    [
        ({"s": -0.01, "c": -0.02}, None),  # tie: 1 match, 1 mismatch
        ({"s": 0.0, "c": None}, None),  # no counted domain
        (MATCH, STRADDLE),  # slopes match, diff contains 0
        ({"s": -0.01, "c": -0.02}, STRADDLE),
    ],
)
def test_c4_inconclusive(slopes, sf):
    assert c4(slopes, sf)["verdict"] == INCONCLUSIVE


def test_c4_counts_only_domains_with_a_slope_and_a_kind():
    slopes = {"s": 0.0, "c": None, "c2": math.nan, "s2": -0.01, "probe": 0.5, "x": 1e-8}
    got = c4(slopes)
    assert got["verdict"] == SUPPORTED and got["slopes_matching_kind"] == "1/1"
    assert got["domains_not_counted"] == ["c", "c2", "s"]  # probe and x: no kind in the config


@pytest.mark.parametrize("n", [1, 2])
def test_c4_too_few_seeds(n):
    got = c4(MATCH, sf=plus(BASE, GAIN)[:n])
    assert got["verdict"] == INCONCLUSIVE and got["reason"].startswith(f"only n={n} seed") and FEW in got["reason"]
    assert got["structured_first_minus_joint"] is None
    assert c4({"s": 0.01, "c": -0.02}, joint=BASE[:2], sf=BASE[:2])["verdict"] == INCONCLUSIVE


def test_c4_unequal_seeds_and_missing_arms():
    assert c4(MATCH, sf=plus(BASE, GAIN) + [9.0])["structured_first_minus_joint"]["n"] == 3
    rl = [run(f) for f in BASE]
    assert "structured_first was not run" in judge({"rl_only": rl, "joint": rl})["C4"]["reason"]
    runs = {"rl_only": rl, "joint": rl, "structured_first": rl}
    assert "rl_only was not run" in judge(runs)["C4"]["reason"]


# ---- C5: execution then planning entropy --------------------------------------------------------


def staged_seed(exec_sign: int, plan_sign: int, points: int = 8, classes: bool = True, rl: bool = True) -> dict:
    """Two SFT steps, then ``points`` RL steps; entropy moves by 0.1 per step in the given direction."""
    steps = list(range(1, 3 + points))
    mu = [1.0, 1.0] + [0.0 if rl else 1.0] * points
    ex = [2.0, 2.0] + [1.0 + 0.1 * exec_sign * i for i in range(points)]
    pl = [1.0, 1.0] + [1.0 + 0.1 * plan_sign * i for i in range(points)]
    token_classes = {"execution": (steps, ex), "planning": (steps, pl)} if classes else None
    return run(classes=token_classes, mu=(steps, mu))


def c5(*seeds) -> dict:
    return judge({"staged": list(seeds)})["C5"]


def test_c5_supported():
    got = c5(*[staged_seed(-1, +1)] * 3)
    assert got["verdict"] == SUPPORTED and got["seeds_supporting"] == 3 and got["seeds_contradicting"] == 0
    assert got["execution_slope_first_half"] == [-0.1] * 3 and got["planning_slope_second_half"] == [0.1] * 3


@pytest.mark.parametrize("signs", [(+1, -1), (+1, +1), (-1, -1), (0, -1)])
def test_c5_not_supported_when_either_slope_is_reversed(signs):
    got = c5(*[staged_seed(*signs)] * 3)
    assert got["verdict"] == NOT_SUPPORTED and got["seeds_contradicting"] == 3


@pytest.mark.parametrize(
    "seeds",
    [
        [(-1, +1), (+1, -1), (0, +1)],  # 1 supports, 1 contradicts, 1 neither
        [(-1, +1), (-1, +1), (+1, -1), (+1, -1)],  # tie 2 : 2
        [(-1, +1), (-1, +1), (0, 0), (0, 0)],  # 2 of 4 support: not more than half
        [(0, 0)] * 3,  # flat: no sign (a fitted slope of ~1e-17 is read as 0)
    ],
)
def test_c5_inconclusive(seeds):
    got = c5(*[staged_seed(*s) for s in seeds])
    assert got["verdict"] == INCONCLUSIVE and got["seeds_with_token_classes"] == len(seeds)


def test_c5_counts_only_seeds_with_token_classes_and_an_rl_phase():
    good = [staged_seed(-1, +1)] * 2
    for other in (staged_seed(-1, +1, classes=False), staged_seed(-1, +1, rl=False), staged_seed(-1, +1, points=3)):
        got = c5(*good, other)
        assert got["verdict"] == INCONCLUSIVE and got["seeds_with_token_classes"] == 2
        assert got["reason"].startswith("only n=2 seeds with planning and execution tokens (of 3 staged seeds)")
        assert FEW in got["reason"]
    assert c5(staged_seed(-1, +1))["reason"].startswith("only n=1 seed ")
    got = judge({"rl_only": [run()]})["C5"]
    assert got["verdict"] == INCONCLUSIVE and "staged was not run" in got["reason"]


# ---- all together, and the Markdown they are printed in ----------------------------------------


def test_everything_supported_and_printed_with_n():
    rl = [run(0.55 + 0.01 * i, kl=0.2 + 0.01 * i, auc=0.25 - 0.01 * i, unchanged=u) for i, u in enumerate(RL_SPARSE)]
    runs = {
        "staged": [
            {**staged_seed(-1, +1), "final_mean": f, "kl_to_base": {"9": 0.9 + i}, "plasticity": {"auc": 0.01 - i}}
            for i, f in enumerate(BASE)
        ],
        "chord_mu": [run(f, kl=0.3, auc=0.2) for f in plus(BASE, GAIN)],
        "rl_only": rl,
        "joint": rl,
        "sft_only": [run(kl=1.0 + i, auc=-1.0 - i, unchanged=u) for i, u in enumerate(SFT_DENSE)],
        "structured_first": [run(f, kl=0.4, auc=0.15) for f in plus([r["final_mean"] for r in rl], GAIN)],
    }
    arms = {
        "staged": {"phases": [{"mean": {"disruption": {"start": 1}}}] * 3},
        "rl_only": {
            "entropy_slope": MATCH,
            "sparsity_unchanged": t_interval(RL_SPARSE).to_dict(),
            "rank_ratio": t_interval([0.99, 0.98, 0.99]).to_dict(),
        },
        "sft_only": {"sparsity_unchanged": t_interval(SFT_DENSE).to_dict()},
    }
    claims = judge(runs, arms, {"rl_only": 0.6})
    assert {c: v["verdict"] for c, v in claims.items()} == dict.fromkeys(claims, SUPPORTED)

    one = t_interval([0.4]).to_dict()
    summary = {
        "claims": claims,
        "arms": {
            "rl_only": {
                "start_mean": 0.5,
                "final_mean": t_interval([0.57, 0.59, 0.61]).to_dict(),
                "kl_to_base": None,
                "plasticity_auc": one,
                "sparsity_unchanged": one,
            }
        },
    }
    md = claims_markdown(summary)
    assert "0.590 [0.540, 0.640], n=3, t" in md
    assert "0.400, n=1, t, no interval" in md
    assert "chord_mu_minus_staged: 0.110 [" in md and "n=3, paired t" in md
    assert claims["C1"]["reason"] in md


def test_c2_needs_three_seeds_per_arm():
    runs = {arm: [run(kl=k + j, auc=-(k + j)) for j in (0.0, 0.5)] for k, arm in enumerate("abcd")}
    got = judge(runs)["C2"]
    assert got["verdict"] == INCONCLUSIVE and "only n=2 seeds" in got["reason"]  # 8 runs, but 2 seeds per arm
