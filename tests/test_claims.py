"""The claim rules (study/claims/) on synthetic study numbers: every branch of every rule,
including ties, a single seed and two seeds. Pure dicts, no training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spectrum_rl.analysis.stats import spearman, spearman_permutation_p, t_interval
from spectrum_rl.study.claims import judge_claims
from spectrum_rl.study.claims.disruption import EQUIVALENCE_MARGIN
from spectrum_rl.study.claims.plasticity import mean_within_spearman, stratified_spearman_permutation_p
from spectrum_rl.study.claims.sparsity import MIN_KAPPA
from spectrum_rl.study.claims.verdicts import ALPHA, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from spectrum_rl.study.comparisons import compare_family
from spectrum_rl.study.report import claims_markdown

KINDS = {"s": "structured", "s2": "structured", "c": "creative", "c2": "creative"}
PAIRS = [("chord_mu", "staged"), ("structured_first", "joint")]
# 8 seeds: the sign-flip test's smallest p is 2/2^8 = 0.0078, so a steady gain survives Holm over
# the family (3 seeds never can: 2/2^3 = 0.25)
BASE = [0.2, 0.5, 0.8, 0.3, 0.6, 0.4, 0.7, 0.35]  # seeds differ a lot: only a paired comparison sees a steady gain
GAIN = [0.10, 0.12, 0.11, 0.13, 0.09, 0.11, 0.12, 0.10]  # mean 0.11, positive in every seed
FEW = "at least 3 are needed for evidence"


def run(final=0.5, kl=0.1, auc=0.2, unchanged=0.5, classes=None, mu=None, entropy=None, blind=None) -> dict:
    return {
        "final_mean": final,
        "final": {"s": final},
        "kl_to_base": {"0": 0.0, "10": kl},
        "plasticity": {"auc": auc},
        "sparsity": {"unchanged_fraction": unchanged},
        "entropy": entropy or {},
        "blind": blind or {},
        "entropy_class": classes or {},
        "mu": mu or ([], []),
    }


def family_of(runs) -> dict:
    return compare_family(runs, [(a, b) for a, b in PAIRS if runs.get(a) and runs.get(b)])


def judge(runs, arms=None, overlap=None, family=None) -> dict:
    claims = judge_claims(runs, arms or {}, overlap or {}, KINDS, family_of(runs) if family is None else family)
    for c in claims.values():  # every claim: a verdict, its rule and why; valid JSON (no NaN)
        assert c["verdict"] in {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE} and c["rule"] and c["reason"]
    json.dumps(claims, allow_nan=False)
    return claims


def plus(xs, ds):
    return [x + d for x, d in zip(xs, ds)]


def test_nothing_run_is_inconclusive_everywhere():
    claims = judge({}, family={})
    assert set(claims) == {"C1", "C2", "C3", "C4", "C5"}
    assert all(c["verdict"] == INCONCLUSIVE for c in claims.values())
    assert "not run" in claims["C1"]["reason"] and "not run" in claims["C5"]["reason"]


# ---- C1: staged disruption and chord_mu - staged (family, Holm) --------------------------------


def c1(staged, chord, disrupted, family=None) -> dict:
    runs = {"staged": [run(f) for f in staged], "chord_mu": [run(f) for f in chord]}
    phases = [{"mean": {"disruption": {"start": 10, "end": 20} if d else None}} for d in disrupted]
    return judge(runs, {"staged": {"phases": phases}}, family=family)["C1"]


def test_c1_supported_paired_by_seed():
    got = c1(BASE, plus(BASE, GAIN), [True] * 5 + [False] * 3)
    assert got["verdict"] == SUPPORTED and got["staged_disruption_seeds"] == "5/8"
    diff = got["chord_mu_minus_staged"]
    assert diff["mean"] == pytest.approx(0.11) and diff["n"] == 8 and diff["excludes_0"]
    # a family of 1: Holm leaves the paired t-test's p as it is
    assert diff["p"] < 0.001 and diff["p_holm"] == diff["p"] and "paired t-test" in diff["method"]
    assert diff["adjusted"]["ci_low"] > 0 and "above 0" in got["reason"] and "Holm p" in got["reason"]
    # Unpaired, the seed-to-seed spread (0.2 .. 0.8) would swamp the 0.11 gain.
    assert t_interval(BASE).hi > t_interval(plus(BASE, GAIN)).lo


@pytest.mark.parametrize(
    ("gain", "words"),
    [
        ([-g for g in GAIN], "below 0 after adjustment"),
        ([0.001, -0.002, 0.0005, 0.002, -0.001, 0.0015, -0.0005, 0.001], "within"),  # straddles 0, inside the margin
        ([0.005, 0.006, 0.007, 0.006, 0.005, 0.007, 0.006, 0.005], "within"),  # above 0 but surely below the margin
    ],
)
def test_c1_not_supported(gain, words):
    got = c1(BASE, plus(BASE, gain), [True] * 8)
    assert got["verdict"] == NOT_SUPPORTED and words in got["reason"]
    assert got["equivalence_margin"] == EQUIVALENCE_MARGIN


def test_c1_no_disruption_is_inconclusive_not_a_refutation():
    got = c1(BASE, plus(BASE, GAIN), [False] * 8)
    assert got["verdict"] == INCONCLUSIVE and "no staged seed (0/8)" in got["reason"]
    assert "not evidence of none" in got["reason"] and "sensitivity" in got["reason"]


@pytest.mark.parametrize(
    ("gain", "disrupted", "words"),
    [
        ([0.15, -0.10, 0.05], [True] * 3, "0 not excluded"),  # 3 seeds
        (GAIN, [True] * 3 + [False] * 5, "only 3/8"),  # the difference is above 0: the disruption decides
        ([0.15, -0.10, 0.05], [False, True, False], "not excluded after adjustment; staged disrupted in only 1/3"),
        (GAIN, [True] * 4 + [False] * 4, "only 4/8"),  # a tie is not most
    ],
)
def test_c1_inconclusive(gain, disrupted, words):
    base = BASE[: len(gain)]
    got = c1(base, plus(base, gain), disrupted)
    assert got["verdict"] == INCONCLUSIVE and words in got["reason"]
    if gain == GAIN:
        assert got["chord_mu_minus_staged"]["excludes_0"] and "0 not excluded" not in got["reason"]


def test_c1_reads_the_adjusted_comparison():
    # 6 seeds: the paired t-test's raw p = 0.035, above 0 alone, but Holm over two such pairs: 0.07
    base, gain = BASE[:6], [-0.01, 0.24, 0.22, 0.20, 0.09, 0.02]
    assert c1(base, plus(base, gain), [True] * 6)["verdict"] == SUPPORTED
    runs = {
        "staged": [run(f) for f in base],
        "chord_mu": [run(f) for f in plus(base, gain)],
        "joint": [run(f) for f in base],
        "structured_first": [run(f) for f in plus(base, gain)],
    }
    got = c1(base, plus(base, gain), [True] * 6, family=family_of(runs))
    entry = got["chord_mu_minus_staged"]
    assert entry["p"] == pytest.approx(0.0349, abs=1e-4) and entry["p_holm"] == pytest.approx(2 * entry["p"], abs=1e-6)
    assert entry["p"] < ALPHA <= entry["p_holm"] and not entry["excludes_0"]
    assert got["verdict"] == INCONCLUSIVE and "0 not excluded" in got["reason"]


@pytest.mark.parametrize("n", [1, 2])
def test_c1_too_few_seeds(n):
    got = c1(BASE[:n], plus(BASE, GAIN)[:n], [True] * n)
    assert got["verdict"] == INCONCLUSIVE
    assert got["reason"].startswith(f"only n={n} seed") and FEW in got["reason"]
    assert got["chord_mu_minus_staged"] is None
    assert "only n=2 seeds; at least 3 are needed for evidence" in c1(BASE, BASE[:2], [True] * 8)["reason"]


def test_c1_pairs_over_the_common_seeds():
    # staged ran 9 seeds, chord_mu 8: seeds 0-7 are compared; seed 8 (a wild 5.0) is not.
    got = c1(BASE + [5.0], plus(BASE, GAIN), [True] * 9)
    assert got["verdict"] == SUPPORTED and got["chord_mu_minus_staged"]["n"] == 8


def test_c1_missing_arm_comparison_or_value():
    staged = [run(f) for f in BASE]
    phases = {"staged": {"phases": [{"mean": {"disruption": {"start": 1}}}] * 8}}
    assert "chord_mu was not run" in judge({"staged": staged}, phases)["C1"]["reason"]
    assert "staged was not run" in judge({"staged": staged, "chord_mu": staged})["C1"]["reason"]
    got = c1(BASE, plus(BASE, GAIN), [True] * 8, family={})
    assert got["verdict"] == INCONCLUSIVE and "no chord_mu - staged" in got["reason"]
    chord = plus(BASE, GAIN)
    chord[1] = math.nan
    got = c1(BASE, chord, [True] * 8)  # a missing score: no test, no interval
    assert got["verdict"] == INCONCLUSIVE and "no adjusted interval" in got["reason"]


# ---- C2: KL to base vs plasticity, arms as the unit ---------------------------------------------


def c2_runs(kl_means, auc_means, within=-1, seeds=3) -> dict:
    """Arm k's run j: KL = kl_means[k] + 0.01 j, AUC = auc_means[k] + within_k * 0.01 j (within_k: +1
    runs ordered with KL, -1 anti-ordered, 0 constant AUC)."""
    signs = within if isinstance(within, list) else [within] * len(kl_means)
    return {
        f"arm{k}": [run(kl=x + 0.01 * j, auc=y + w * 0.01 * j) for j in range(seeds)]
        for k, (x, y, w) in enumerate(zip(kl_means, auc_means, signs))
    }


def c2(*args, **kwargs) -> dict:
    return judge(c2_runs(*args, **kwargs))["C2"]


SIX = list(range(6))


def test_c2_supported_and_not_supported_by_sign():
    got = c2(SIX, [-v for v in SIX])
    assert got["verdict"] == SUPPORTED and got["between_arm_rho"] == -1.0 and got["within_arm_mean_rho"] == -1.0
    assert got["between_arm_p"] < 0.01 and got["within_arm_p"] < 0.01 and got["arms"] == 6 and got["runs"] == 18
    got = c2(SIX, SIX, within=+1)
    assert got["verdict"] == NOT_SUPPORTED and got["between_arm_rho"] == 1.0 and "drift more" in got["reason"]


def test_c2_between_arm_association_alone_is_a_simpsons_pattern():
    # Arm means: less KL, more plasticity. Inside every arm: the reverse.
    runs = c2_runs([10 * k for k in SIX], [-10 * k for k in SIX], within=+1)
    kl = [r["kl_to_base"]["10"] for seeds in runs.values() for r in seeds]
    auc = [r["plasticity"]["auc"] for seeds in runs.values() for r in seeds]
    assert spearman(kl, auc) < -0.9 and spearman_permutation_p(kl, auc) < ALPHA  # pooled runs: "supported"
    got = judge(runs)["C2"]
    assert got["verdict"] == INCONCLUSIVE and "Simpson's pattern" in got["reason"]
    assert got["between_arm_rho"] == -1.0 and got["within_arm_mean_rho"] == 1.0 and got["within_arm_p"] < ALPHA


def test_c2_weak_between_arm_rho_over_many_arms_is_not_supported():
    x = list(range(10))
    y = [(2 * i + 4) % 10 for i in x]  # rho = -0.25: weak
    assert abs(spearman(x, y)) < 0.3 and spearman_permutation_p(x, y) > ALPHA
    got = c2(x, y, within=[+1, -1] * 5)  # no association inside arms either (mean rho 0)
    assert got["verdict"] == NOT_SUPPORTED and "|rho| < 0.3" in got["reason"]
    got = c2(x, y, within=-1)  # ... unless the runs inside arms show the claim
    assert got["verdict"] == INCONCLUSIVE and got["within_arm_p"] < ALPHA


@pytest.mark.parametrize(
    ("kl", "auc", "within", "words"),
    [
        (SIX[:5], [-v for v in SIX[:5]], -1, "only 5 arms"),
        (list(range(8)), [(3 * i) % 8 for i in range(8)], +1, "no decisive branch"),  # rho = 0.43, p = 0.30
        ([1.0] * 6, SIX, -1, "undefined"),
        (SIX, [-v for v in SIX], 0, "within-arm association is undefined"),
    ],
)
def test_c2_inconclusive(kl, auc, within, words):
    got = c2(kl, auc, within=within)
    assert got["verdict"] == INCONCLUSIVE and words in got["reason"]


def test_c2_leaves_out_joint_arms_with_few_seeds_and_missing_numbers():
    runs = c2_runs(SIX, [-v for v in SIX])
    runs["joint"] = runs["arm0"]  # a copy of rl_only: not a seventh arm
    runs["short"] = [run(kl=9, auc=9), run(kl=9, auc=9)]
    runs["arm5"][0]["kl_to_base"] = {}  # arm5 keeps 2 runs with both numbers: left out
    got = judge(runs)["C2"]
    assert got["arms"] == 5 and got["arms_left_out"] == ["arm5", "short"] and got["verdict"] == INCONCLUSIVE
    assert "at least 3 seeds per arm" in got["reason"]


def test_stratified_permutation_p():
    ordered = [([0, 1, 2, 3], [0, 1, 2, 3])] * 4
    assert mean_within_spearman(ordered) == 1.0 and stratified_spearman_permutation_p(ordered) < 0.001
    mixed = ordered[:2] + [([0, 1, 2, 3], [3, 2, 1, 0])] * 2 + [([0, 1, 2], [5, 5, 5])]  # last: undefined
    assert mean_within_spearman(mixed) == 0.0 and stratified_spearman_permutation_p(mixed) == 1.0
    assert math.isnan(stratified_spearman_permutation_p([([0, 1, 2], [1, 1, 1])]))


# ---- C3: update sparsity -----------------------------------------------------------------------


RL_SPARSE, SFT_DENSE = [0.80, 0.82, 0.81, 0.79, 0.83, 0.80], [0.10, 0.12, 0.11, 0.10, 0.13, 0.12]
PAIR_OVERLAP = [0.6, 0.62, 0.58]


def c3(rl=RL_SPARSE, sft=SFT_DENSE, rank=0.99, overlap=PAIR_OVERLAP, per_seed=True) -> dict:
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
    return judge(runs, arms, {"rl_only": overlap, "sft_only": [0.95]})["C3"]


def test_c3_supported():
    got = c3()
    assert got["verdict"] == SUPPORTED
    assert got["overlap_chance"][0] == pytest.approx(0.19) and got["overlap_kappa"][0] == pytest.approx(
        0.41 / 0.81, 1e-3
    )
    assert got["overlap_kappa_interval"]["n"] == 3 and got["overlap_kappa_interval"]["ci_low"] >= MIN_KAPPA
    assert got["rl_minus_sft_unchanged"]["mean"] == pytest.approx(0.695) and got["rl_minus_sft_unchanged"]["n"] == 6


@pytest.mark.parametrize(
    ("rl", "sft", "words"),
    [
        ([0.07, 0.08, 0.09], [0.01, 0.02, 0.015], "entirely outside"),  # what the study measures today
        ([0.97, 0.98, 0.99], [0.10, 0.12, 0.11], "entirely outside"),  # sparser than the band
        (RL_SPARSE, [0.90, 0.91, 0.92, 0.90, 0.93, 0.91], "denser than sft_only"),
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
        ({"overlap": [0.2, 0.21, 0.19]}, "seed-pair kappa = +0.0"),  # overlap ~ chance (0.19)
        ({"overlap": [0.3, 0.6, 0.9]}, "lower bound >= 0.1"),  # kappa mean 0.5, but the interval reaches below 0.1
        ({"overlap": [None, None, None]}, "no pair"),
        ({"per_seed": False}, "no pair"),  # per-seed sparsity not recorded: no chance, no kappa
    ],
)
def test_c3_inconclusive(kwargs, words):
    got = c3(**kwargs)
    assert got["verdict"] == INCONCLUSIVE and words in got["reason"] and got["reason"].startswith("not met")


@pytest.mark.parametrize(
    ("rl", "overlap", "pairs"),
    [
        (RL_SPARSE, [0.6, 0.6], 2),  # two pairs measured
        (RL_SPARSE[:5], PAIR_OVERLAP, 2),  # five seeds: the third pair has no second seed
        (RL_SPARSE, 0.6, 1),  # one overlap (seeds 0 and 1) as a bare number
    ],
)
def test_c3_kappa_needs_three_pairs(rl, overlap, pairs):
    got = c3(rl=rl, overlap=overlap)
    assert got["verdict"] == INCONCLUSIVE and f"only {pairs} pair" in got["reason"]


@pytest.mark.parametrize("n", [1, 2])
def test_c3_too_few_seeds_even_when_outside_the_band(n):
    got = c3([0.07, 0.08][:n], [0.01, 0.02][:n])
    assert got["verdict"] == INCONCLUSIVE and got["reason"].startswith(f"only n={n} seed") and FEW in got["reason"]
    assert got["rl_minus_sft_unchanged"] is None


def test_c3_unequal_seeds_and_missing_arm():
    assert c3(sft=SFT_DENSE[:4])["rl_minus_sft_unchanged"]["n"] == 4
    runs = {"rl_only": [run(unchanged=u) for u in RL_SPARSE]}
    got = judge(runs, {"rl_only": {"sparsity_unchanged": t_interval(RL_SPARSE).to_dict()}})["C3"]
    assert got["verdict"] == INCONCLUSIVE and "sft_only was not run" in got["reason"]


# ---- C4: entropy slope sign by kind, structured_first - joint ---------------------------------


def rl_seed(k: int, domains: dict, final: float, **kw) -> dict:
    """Seed k of rl_only: per domain (slope, blind), slope a number (seed k gets it x (0.9 + 0.1 k))
    or a per-seed list; 6 steps of entropy and of blind fraction."""
    steps = list(range(6))
    entropy, blind = {}, {}
    for d, (s, b) in domains.items():
        s = s[k] if isinstance(s, list) else s * (0.9 + 0.1 * k)
        entropy[d] = (steps, [1.0 + s * i for i in steps])
        if b is not None:
            blind[d] = (steps, [b] * 6)
    return run(final, entropy=entropy, blind=blind, **kw)


def c4(domains, sf=None, joint=BASE, family=None) -> dict:
    rl = [rl_seed(k, domains, f) for k, f in enumerate(joint)]
    sf = plus(joint, GAIN) if sf is None else sf
    runs = {"rl_only": rl, "joint": rl, "structured_first": [run(f) for f in sf]}
    return judge(runs, family=family)["C4"]


MATCH = {"s": (-0.01, 0.0), "c": (0.02, 0.1)}
REVERSED = {"s": (0.01, 0.0), "c": (-0.02, 0.0)}
TIE = {"s": (-0.01, 0.0), "c": (-0.02, 0.0)}
WORSE = plus(BASE, [-g for g in GAIN])
STRADDLE = plus(BASE, [0.15, -0.10, 0.05, -0.08, 0.12, -0.06, 0.02, -0.04])  # sign-flip p = 0.84


def test_c4_supported():
    got = c4(MATCH)
    assert got["verdict"] == SUPPORTED and got["slopes_matching_kind"] == "2/2"
    assert got["entropy_slope_rl_only"]["s"]["ci_high"] < 0 and got["blind_fraction_rl_only"]["c"] == 0.1
    assert got["structured_first_minus_joint"]["mean"] == pytest.approx(0.11)
    assert got["structured_first_minus_joint"]["excludes_0"]


def test_c4_counts_only_domains_with_rl_signal_and_a_clear_slope():
    domains = MATCH | {
        "s2": (0.5, 1.0),  # steep and reversed, but every group was blind: no RL signal
        "c2": ([-0.05, 0.04, -0.01, 0.03, -0.04, 0.02, -0.03, 0.01], 0.0),  # reversed on average, interval contains 0
        "probe": (0.5, 0.0),  # no kind
    }
    got = c4(domains)
    assert got["verdict"] == SUPPORTED and got["slopes_matching_kind"] == "2/2"
    assert "blind 1.0 >= 0.9" in got["domains"]["s2"] and got["domains"]["s2"].startswith("not counted")
    assert got["domains"]["c2"] == "not counted: slope interval contains 0"
    assert got["domains"]["s"].startswith("counted") and "probe" not in got["domains"]
    got = c4({"s": (-0.01, None), "c": (0.02, 0.0)})  # no blind record: RL signal not shown
    assert got["slopes_matching_kind"] == "1/1" and "no record of blind groups" in got["domains"]["s"]
    assert "no entropy series" in got["domains"]["s2"]


@pytest.mark.parametrize(
    ("domains", "sf"),
    [
        (MATCH, WORSE),  # diff below 0
        (REVERSED, None),  # both slopes reversed
        (REVERSED | {"s2": (-0.01, 0.0)}, None),  # 2 of 3 reversed
        (TIE, WORSE),  # slope tie, diff below 0
        ({"s": (0.0, 0.0)}, WORSE),  # no counted domain, diff below 0
        (REVERSED, STRADDLE),  # slopes reversed, diff undecided
    ],
)
def test_c4_not_supported(domains, sf):
    assert c4(domains, sf)["verdict"] == NOT_SUPPORTED


@pytest.mark.parametrize(
    ("domains", "sf"),
    [
        (TIE, None),  # tie: 1 match, 1 mismatch
        ({"s": (0.0, 0.0), "c": (0.02, 0.95)}, None),  # none counted: flat, and blind
        (MATCH, STRADDLE),  # slopes match, diff contains 0
        (TIE, STRADDLE),
    ],
)
def test_c4_inconclusive(domains, sf):
    assert c4(domains, sf)["verdict"] == INCONCLUSIVE


def test_c4_without_the_family_comparison():
    got = c4(MATCH, family={})
    assert got["verdict"] == INCONCLUSIVE and "no structured_first - joint" in got["reason"]


@pytest.mark.parametrize("n", [1, 2])
def test_c4_too_few_seeds(n):
    got = c4(MATCH, sf=plus(BASE, GAIN)[:n])
    assert got["verdict"] == INCONCLUSIVE and got["reason"].startswith(f"only n={n} seed") and FEW in got["reason"]
    assert got["structured_first_minus_joint"] is None
    got = c4(REVERSED, joint=BASE[:2], sf=BASE[:2])
    assert got["verdict"] == INCONCLUSIVE and "slope over only 2 seeds" in got["domains"]["s"]


def test_c4_unequal_seeds_and_missing_arms():
    assert c4(MATCH, sf=plus(BASE, GAIN) + [9.0])["structured_first_minus_joint"]["n"] == 8
    rl = [run(f) for f in BASE]
    assert "structured_first was not run" in judge({"rl_only": rl, "joint": rl})["C4"]["reason"]
    assert "rl_only was not run" in judge({"joint": rl, "structured_first": rl})["C4"]["reason"]


# ---- C5: execution then planning entropy --------------------------------------------------------


def staged_seed(exec_sign: int, plan_sign: int, points: int = 8, classes: bool = True, rl: bool = True, **kw) -> dict:
    """Two SFT steps, then ``points`` RL steps; entropy moves by 0.1 per step in the given direction."""
    steps = list(range(1, 3 + points))
    mu = [1.0, 1.0] + [0.0 if rl else 1.0] * points
    ex = [2.0, 2.0] + [1.0 + 0.1 * exec_sign * i for i in range(points)]
    pl = [1.0, 1.0] + [1.0 + 0.1 * plan_sign * i for i in range(points)]
    token_classes = {"execution": (steps, ex), "planning": (steps, pl)} if classes else None
    return run(classes=token_classes, mu=(steps, mu), **kw)


def c5(*seeds) -> dict:
    return judge({"staged": list(seeds)})["C5"]


def test_c5_supported():
    got = c5(*[staged_seed(-1, +1)] * 3)  # P(X >= 3 | 3, 1/4) = 1/64
    assert (
        got["verdict"] == SUPPORTED
        and got["seeds_supporting"] == 3
        and got["p_support"] == pytest.approx(1 / 64, abs=1e-4)
    )
    assert got["execution_slope_first_half"] == [-0.1] * 3 and got["planning_slope_second_half"] == [0.1] * 3


@pytest.mark.parametrize("signs", [(+1, -1), (+1, +1), (-1, -1), (0, -1)])
def test_c5_not_supported_when_many_seeds_contradict(signs):
    got = c5(*[staged_seed(*signs)] * 12)  # P(X >= 12 | 12, 3/4) = 0.032
    assert got["verdict"] == NOT_SUPPORTED and got["seeds_contradicting"] == 12 and got["p_contradict"] < ALPHA


@pytest.mark.parametrize(
    "seeds",
    [
        [(+1, -1)] * 5,  # all contradict, but 3/4 of random seeds would: P = 0.24
        [(-1, +1), (+1, -1), (0, +1)],  # 1 supports, 1 contradicts, 1 neither
        [(-1, +1), (-1, +1), (+1, -1), (+1, -1)],  # 2 of 4 support: P = 0.26
        [(0, 0)] * 3,  # flat: no sign (a fitted slope of ~1e-17 is read as 0)
    ],
)
def test_c5_inconclusive(seeds):
    got = c5(*[staged_seed(*s) for s in seeds])
    assert got["verdict"] == INCONCLUSIVE and got["seeds_with_token_classes"] == len(seeds)
    assert "neither below 0.05" in got["reason"]


def test_c5_random_signs_are_rarely_decided():
    rng = np.random.default_rng(0)
    seeds = {(e, p): staged_seed(e, p) for e in (-1, 1) for p in (-1, 1)}
    verdicts = [
        judge_claims({"staged": [seeds[tuple(s)] for s in rng.choice([-1, 1], size=(5, 2))]}, {}, {}, KINDS, {})["C5"][
            "verdict"
        ]
        for _ in range(2000)
    ]
    assert verdicts.count(NOT_SUPPORTED) / 2000 < 0.1  # the old majority rule: ~90%
    assert verdicts.count(SUPPORTED) / 2000 < ALPHA  # P(>= 4 of 5 support) = 1.6%


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
    def drift(k, j):  # C2: arm k drifts k and keeps plasticity -k; runs inside arms likewise
        return {"kl": k + 0.01 * j, "auc": -k - 0.01 * j}

    rl_sparse, sft_dense = RL_SPARSE + [0.81, 0.82], SFT_DENSE + [0.11, 0.12]  # 8 seeds, like BASE and GAIN
    rl = [rl_seed(j, MATCH, 0.55 + 0.01 * j, unchanged=u, **drift(2, j)) for j, u in enumerate(rl_sparse)]
    runs = {
        "staged": [staged_seed(-1, +1, final=f, **drift(0, j)) for j, f in enumerate(BASE)],
        "chord_mu": [run(f, **drift(1, j)) for j, f in enumerate(plus(BASE, GAIN))],
        "rl_only": rl,
        "joint": rl,
        "sft_only": [run(unchanged=u, **drift(3, j)) for j, u in enumerate(sft_dense)],
        "structured_first": [
            run(r["final_mean"] + g, **drift(4, j)) for j, (r, g) in enumerate(zip(rl, GAIN, strict=True))
        ],
        "gate": [run(**drift(5, j)) for j in range(3)],
    }
    arms = {
        "staged": {"phases": [{"mean": {"disruption": {"start": 1}}}] * 8},
        "rl_only": {
            "sparsity_unchanged": t_interval(rl_sparse).to_dict(),
            "rank_ratio": t_interval([0.99, 0.98, 0.99]).to_dict(),
        },
        "sft_only": {"sparsity_unchanged": t_interval(sft_dense).to_dict()},
    }
    claims = judge(runs, arms, {"rl_only": PAIR_OVERLAP})
    assert {c: v["verdict"] for c, v in claims.items()} == dict.fromkeys(claims, SUPPORTED)

    md = claims_markdown({"claims": claims, "arms": {}})
    assert "chord_mu_minus_staged: 0.110 [" in md and "n=8, paired t" in md
    assert claims["C1"]["reason"] in md and claims["C2"]["reason"] in md


def test_c2_is_not_measurable_when_the_probe_moves_nothing():
    """AUC 0 in every run (the probe domain never learned): C2 says so instead of testing noise."""
    got = c2(SIX, [0.0] * 6, within=0)
    assert got["verdict"] == INCONCLUSIVE and got["reason"].startswith("not measurable here")
