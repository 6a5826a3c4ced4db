"""Best training order (subset DP vs brute force, heuristic, ties, errors), the order query's
standard errors, filter and interval, and GEM metrics."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from spectrum_rl.analysis.probe import probe_stderr, recommend_order, score_stderr
from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.continual import continual_metrics, normalised_transfer
from spectrum_rl.scheduler.order import best_order, order_score, pairwise_weights
from spectrum_rl.scheduler.plan import load_transfer
from tests.test_scheduler import make_config


def _instance(D: int, seed: int, with_prereqs: bool):
    rng = np.random.default_rng(seed)
    names = [f"d{i}" for i in range(D)]
    T = rng.normal(0.0, 0.2, (D, D))
    kinds = {n: str(rng.choice(["structured", "creative"])) for n in names}
    prereqs: dict[str, list[str]] = {}
    if with_prereqs:  # edges along a random hidden order: acyclic
        hidden = rng.permutation(D)
        for a, b in itertools.combinations(range(D), 2):
            if rng.random() < 0.25:
                prereqs.setdefault(names[hidden[b]], []).append(names[hidden[a]])
    return names, T, kinds, prereqs


def _valid(order: list[str], prereqs: dict[str, list[str]]) -> bool:
    pos = {n: i for i, n in enumerate(order)}
    return all(pos[p] < pos[d] for d, ps in prereqs.items() for p in ps)


def _random_valid_order(names, prereqs, rng) -> list[str]:
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and all(p in order for p in prereqs.get(n, []))]
        order.append(ready[rng.integers(len(ready))])
    return order


@pytest.mark.parametrize("with_prereqs", [False, True])
@pytest.mark.parametrize("D", range(1, 8))
def test_exact_matches_brute_force(D, with_prereqs):
    for seed in range(4):
        names, T, kinds, prereqs = _instance(D, seed, with_prereqs)
        forward_weight = [0.0, 0.5, 1.0, 2.0][seed]
        w = pairwise_weights(T, [kinds[n] for n in names], forward_weight=forward_weight)
        brute = max(
            order_score(p, w) for p in itertools.permutations(range(D)) if _valid([names[i] for i in p], prereqs)
        )
        result = best_order(names, T, kinds, prereqs, forward_weight=forward_weight)
        assert result.exact
        assert sorted(result.order) == names
        assert _valid(result.order, prereqs)
        assert result.score == pytest.approx(brute, abs=1e-9)
        assert result.score == pytest.approx(order_score([names.index(n) for n in result.order], w))


def test_joint_score_is_mean_over_orders():
    names, T, kinds, _ = _instance(5, 0, False)
    w = pairwise_weights(T, [kinds[n] for n in names], forward_weight=0.3)
    mean = np.mean([order_score(p, w) for p in itertools.permutations(range(5))])
    assert best_order(names, T, kinds, {}, forward_weight=0.3).joint_score == pytest.approx(mean)


@pytest.mark.parametrize("with_prereqs", [False, True])
def test_heuristic_respects_prerequisites_and_beats_random_orders(with_prereqs):
    rng = np.random.default_rng(0)
    for seed in range(10):
        names, T, kinds, prereqs = _instance(7, seed, with_prereqs)
        w = pairwise_weights(T, [kinds[n] for n in names], forward_weight=0.5)
        result = best_order(names, T, kinds, prereqs, forward_weight=0.5, exact_limit=0)
        assert not result.exact
        assert sorted(result.order) == names and _valid(result.order, prereqs)
        random_best = max(
            order_score([names.index(n) for n in _random_valid_order(names, prereqs, rng)], w) for _ in range(5)
        )
        assert result.score >= random_best - 1e-12
        assert result.score <= best_order(names, T, kinds, prereqs, forward_weight=0.5).score + 1e-9


def test_structured_before_creative_breaks_ties():
    names = ["poem", "sort", "story", "add"]
    kinds = {"poem": "creative", "sort": "structured", "story": "creative", "add": "structured"}
    result = best_order(names, np.zeros((4, 4)), kinds, {})
    assert result.order == ["sort", "add", "poem", "story"]  # then lexicographic by index
    assert result.score - result.joint_score == pytest.approx(0.02)
    assert set(result.explanations.values()) == {
        "no transfer: position set by the kind prior (structured before creative) only"
    }


def test_exact_ties_prefer_smallest_index_order():
    names = ["c", "b", "a"]
    result = best_order(names, np.zeros((3, 3)), {}, {"c": ["a"]})
    assert result.order == ["b", "a", "c"]
    assert result.explanations["a"] == "prerequisite of c; no transfer: position set by prerequisites only"
    assert result.explanations["b"] == "no transfer: any position is as good (ties keep the given order)"


def test_explanation_names_the_transfer_with_its_standard_error():
    T = np.zeros((2, 2))
    T[1, 0] = 0.3  # training "late" helps "early", forward transfer discounted
    result = best_order(["early", "late"], T, {}, {}, forward_weight=0.0)
    assert result.order == ["early", "late"]
    assert result.explanations["early"] == "training late raises it by +0.30"
    assert result.explanations["late"] == "training it raises early by +0.30"
    result = best_order(["early", "late"], T, {}, {}, stderr=np.full((2, 2), 0.04))
    assert result.explanations["late"] == "training it raises early by +0.30 ± 0.08 (2 SE)"
    result = best_order(["early", "late"], T, {}, {}, forward_weight=1.0)  # the sum of transfer is fixed
    quiet = "its transfer does not depend on the order: any position is as good (ties keep the given order)"
    assert result.explanations["early"] == quiet


def test_explanation_cites_the_two_largest_transfers_then_counts_the_rest():
    T = np.zeros((4, 4))
    T[1:, 0] = [0.2, 0.5, 0.3]  # every later domain raises the first
    result = best_order(["a", "b", "c", "d"], T, {}, {})
    assert result.order[0] == "a"
    assert result.explanations["a"] == "training c raises it by +0.50; training d raises it by +0.30; and 1 more"


def test_explanation_says_when_a_prerequisite_overrules_the_transfer():
    T = np.zeros((2, 2))
    T[0, 1] = -0.4  # training x after y would undo y's progress, but y needs x first
    result = best_order(["y", "x"], T, {}, {"y": ["x"]})
    assert result.order == ["x", "y"]
    assert result.explanations["x"] == "prerequisite of y; overruled: training y lowers it by -0.40"


@pytest.mark.parametrize("exact_limit", [16, 0])
def test_cycle_is_a_config_error(exact_limit):
    names = ["a", "b", "c", "d"]
    with pytest.raises(ConfigError) as err:
        best_order(
            names, np.zeros((4, 4)), {}, {"a": ["c"], "b": ["a"], "c": ["b"], "d": ["a"]}, exact_limit=exact_limit
        )
    assert err.value.field == "domains"
    assert "cycle" in err.value.message
    assert all(n in err.value.message for n in "abc") and "d" not in err.value.message


def test_unknown_prerequisite_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        best_order(["sorting", "addition"], np.zeros((2, 2)), {}, {"addition": ["sortng"]})
    assert err.value.field == "domains"
    assert "'sortng'" in err.value.message and "did you mean 'sorting'" in err.value.message


def test_continual_metrics_hand_computed():
    R = np.array([[0.5, 0.2, 0.1], [0.4, 0.6, 0.3], [0.3, 0.5, 0.7]])
    b = np.array([0.1, 0.1, 0.2])
    m = continual_metrics(R, b)
    assert m["ACC"] == pytest.approx((0.3 + 0.5 + 0.7) / 3)
    assert m["BWT"] == pytest.approx(((0.3 - 0.5) + (0.5 - 0.6)) / 2)
    assert m["FWT"] == pytest.approx(((0.2 - 0.1) + (0.3 - 0.2)) / 2)
    assert continual_metrics(np.array([[0.4]]), np.array([0.1])) == {"ACC": 0.4, "BWT": 0.0, "FWT": 0.0}


def test_normalised_transfer_floors_small_scores():
    change = normalised_transfer({"a": 0.5, "b": 0.0, "c": -0.2}, {"a": 0.6, "b": 0.01, "c": -0.1})
    assert change == pytest.approx({"a": 0.2, "b": 0.2, "c": 0.5})
    assert normalised_transfer({"a": 0.5}, {"a": 0.6}, scale=1.0) == pytest.approx({"a": 0.1})


def _nested(matrix, names):
    return {a: dict(zip(names, map(float, row))) for a, row in zip(names, matrix)}


def test_probe_standard_errors_are_binomial_on_the_eval_sizes():
    assert score_stderr(0.5, 50) == pytest.approx(math.sqrt(0.25 / 50))
    assert score_stderr(0.0, 20) == pytest.approx(math.sqrt(0.025 * 0.975 / 20))  # p clipped to 1/(2n)
    assert score_stderr(1.0, 20) == pytest.approx(score_stderr(0.0, 20))
    names = ["a", "b"]
    before = {"a": 0.5, "b": 0.0}
    after = {"a": {"a": 0.7, "b": 0.1}, "b": {"a": 0.4, "b": 1.0}}
    A, b = probe_stderr(before, after, {"a": 50, "b": 20}, names)
    se = np.sqrt(A**2 + b**2)
    se_a, se_b0 = math.sqrt(0.25 / 50), math.sqrt(0.025 * 0.975 / 20)
    assert se[0, 0] == pytest.approx(math.hypot(se_a, math.sqrt(0.7 * 0.3 / 50)) / 0.5)
    assert se[0, 1] == pytest.approx(math.hypot(se_b0, math.sqrt(0.1 * 0.9 / 20)) / 0.05)  # floor 0.05
    assert se[1, 1] == pytest.approx(math.hypot(se_b0, se_b0) / 0.05)  # 1.0 clipped to 1 - 1/(2n)
    assert b == pytest.approx([se_a / 0.5, se_b0 / 0.05])


def test_transfers_within_two_standard_errors_predict_no_gain_over_joint():
    config = make_config(domains=[("s1", "structured", []), ("s2", "structured", []), ("s3", "structured", [])])
    names = config.domain_names
    T = np.array([[0.1, 0.15, -0.12], [0.05, 0.5, 0.1], [-0.1, 0.0, 0.1]])  # only s2 on itself is certain
    record = {"transfer": _nested(T, names), "stderr": _nested(np.full((3, 3), 0.1), names), "source": "probe"}
    out = recommend_order(config, record)
    assert out["beats_joint"] is False
    assert out["transfer_used"] == _nested(np.diag([0.0, 0.5, 0.0]), names)  # which orders nothing
    assert out["transfer"] == _nested(T, names) and out["transfer_stderr"] == _nested(np.full((3, 3), 0.1), names)
    # each transfer counted as 0 is still an estimate with its noise: |c_ij| = 1/4 off the diagonal,
    # se 0.1 each, so the gain's SE is 0.25 * sqrt(6 * 0.1^2) / 3 (a [0, 0] interval would be false certainty)
    gain_se = 0.25 * math.sqrt(6 * 0.1**2) / 3
    predicted = out["predicted_gain"]
    assert predicted["mean"] == 0.0 and predicted["stderr"] == pytest.approx(gain_se, abs=1e-4)
    assert predicted["low"] == pytest.approx(-1.96 * gain_se, abs=1e-3) and predicted["high"] == -predicted["low"]
    assert out["summary"].startswith("no order is predicted to beat joint training: predicted gain +0.000 relative")
    assert "transfers within 2 SE counted as 0" in out["summary"]
    assert all(why.startswith("no transfer beyond 2 SE") for why in out["rationale"].values())
    assert out["vs"] == "joint (uniform random order)"


def test_one_certain_transfer_beats_joint_by_the_hand_computed_gain():
    config = make_config(domains=[("d0", "structured", []), ("d1", "structured", []), ("d2", "structured", [])])
    names = config.domain_names
    T = np.array([[0.3, 0.05, -0.1], [0.6, 0.2, 0.0], [0.1, -0.05, 0.0]])
    se = np.full((3, 3), 0.1)
    se[1, 0] = 0.05  # training d1 raises d0 by 0.6 ± 0.1 (2 SE): the one entry beyond 2 SE
    record = {"transfer": _nested(T, names), "stderr": _nested(se, names), "eval_n": dict.fromkeys(names, 50)}
    out = recommend_order(config, {**record, "probe_steps": 10})
    assert out["order"] == ["d0", "d1", "d2"]  # d0 before d1; d2 at its tie-broken place
    # for a before b the order earns 0.5 * (1 - 0.5) * (T[b, a] - T[a, b]) over a random order; a
    # record without the probe's scores stays in T's units, averaged over the 3 domains; the error
    # counts every off-diagonal estimate (|c_ij| = 1/4 each): five at se 0.1 and the used one at 0.05
    gain, gain_se = 0.25 * 0.6 / 3, 0.25 * math.sqrt(5 * 0.1**2 + 0.05**2) / 3
    predicted = out["predicted_gain"]
    assert predicted["unit"] == "relative" and predicted["mean"] == pytest.approx(gain, abs=1e-4)
    assert predicted["stderr"] == pytest.approx(gain_se, abs=1e-4)
    lo, hi = predicted["low"], predicted["high"]
    assert lo == pytest.approx(gain - 1.96 * gain_se, abs=1e-3) and hi == pytest.approx(gain + 1.96 * gain_se, abs=1e-3)
    assert lo > 0 and out["beats_joint"] is True
    assert out["summary"] == (
        "predicted gain over joint training: +0.050 relative transfer units [+0.013, +0.087] (95% normal "
        "interval from the probe's standard errors; n = 50 eval prompts per domain, 10 probe steps x 1 seed; "
        "transfers within 2 SE counted as 0; joint = a uniformly random order)"
    )
    assert out["rationale"]["d0"] == "training d1 raises it by +0.60 ± 0.10 (2 SE)"
    assert out["rationale"]["d2"] == "no transfer beyond 2 SE: any position is as good (ties keep the given order)"
    assert out["eval_n"] == dict.fromkeys(names, 50) and out["probe_steps"] == 10


def test_the_gain_error_counts_each_domains_score_before_training_once():
    """T[b][a] and T[c][a] share before_a: their errors add in the gain, not in quadrature."""
    config = make_config(domains=[("a", "structured", []), ("b", "structured", []), ("c", "structured", [])])
    names = config.domain_names
    before = dict.fromkeys(names, 0.5)
    after = {i: dict(before) for i in names}
    after["b"]["a"] = after["c"]["a"] = 0.8  # training b or c raises a by 0.6 (relative)
    eval_n = dict.fromkeys(names, 50)
    A, b = probe_stderr(before, after, eval_n, names)
    T = {i: normalised_transfer(before, after[i]) for i in names}
    record = {"transfer": T, "stderr": _nested(np.sqrt(A**2 + b**2), names), "eval_n": eval_n}
    out = recommend_order(config, {**record, "before": before, "after": after, "probe_steps": 5})
    # in held-out mean units: each transfer is 0.6 x s_a = 0.3 of a's score, c = 0.25, over 3 domains
    assert out["order"] == ["a", "b", "c"] and out["predicted_gain"]["mean"] == pytest.approx(0.05, abs=1e-4)
    assert out["predicted_gain"]["unit"] == "held_out_mean"
    after_se, before_se = math.sqrt(0.8 * 0.2 / 50), math.sqrt(0.25 / 50)  # score units
    # every off-diagonal entry counts (|c| = 0.25): the two raised ones with after_se, the four
    # unchanged ones with an after-score at 0.5; column a's shared before-error enters with
    # sum_i c_ia = 0.5 and column c's with -0.5 (column b's cancel): in the sum, not in quadrature
    expected = math.sqrt(2 * (0.25 * after_se) ** 2 + 4 * (0.25 * before_se) ** 2 + 2 * (0.5 * before_se) ** 2) / 3
    assert out["predicted_gain"]["stderr"] == pytest.approx(expected, abs=1e-4)
    independent = recommend_order(config, record)["predicted_gain"]  # no scores: entries independent
    assert independent["unit"] == "relative" and independent["stderr"] * 0.5 < expected


@pytest.mark.parametrize("forward_weight", [0.0, 0.5, 1.0, 2.0])
def test_gain_coefficients_reproduce_the_gain_over_joint(forward_weight):
    for seed in range(5):
        names, T, kinds, prereqs = _instance(6, seed, with_prereqs=seed % 2 == 1)
        kinds_list = [kinds[n] for n in names]
        result = best_order(names, T, kinds, prereqs, forward_weight=forward_weight)
        idx = [names.index(n) for n in result.order]
        prior = pairwise_weights(np.zeros_like(T), kinds_list, forward_weight)  # the gain's constant
        constant = order_score(idx, prior) - 0.5 * prior.sum()
        gain = float((result.gain_coefficients * T).sum()) + constant
        assert gain == pytest.approx(result.score - result.joint_score, abs=1e-12)
        assert np.all(np.diag(result.gain_coefficients) == 0)


def test_a_record_without_standard_errors_uses_every_transfer_as_measured():
    config = make_config(domains=[("s1", "structured", []), ("c1", "creative", [])])
    names = config.domain_names
    T = np.array([[0.0, -0.2], [0.01, 0.0]])  # an old transfer.json: transfer only
    out = recommend_order(config, {"transfer": _nested(T, names)})
    assert out["transfer_used"] == out["transfer"] and out["transfer_stderr"] is None
    assert out["predicted_gain"]["low"] is None and out["predicted_gain"]["stderr"] is None
    assert out["beats_joint"] is None
    assert out["predicted_gain"]["mean"] == pytest.approx(0.25 * (0.2 + 0.01) / 2, abs=1e-4)  # no kind prior
    assert "no standard errors: every transfer is used as measured" in out["summary"]
    assert out["rationale"]["s1"] == "training it lowers c1 by -0.20; training c1 raises it by +0.01"


def test_load_transfer_round_trip_with_standard_errors(tmp_path):
    T = np.array([[0.1, -0.2], [0.3, 0.0]])
    se = np.array([[0.05, 0.01], [0.02, 0.03]])
    path = tmp_path / "transfer.json"
    path.write_text(json.dumps({"transfer": _nested(T, ["a", "b"]), "stderr": _nested(se, ["a", "b"])}))
    got, got_se = load_transfer(path, ["b", "a"])  # reordered to the config's names
    assert np.array_equal(got, T[::-1, ::-1]) and np.array_equal(got_se, se[::-1, ::-1])
    path.write_text(json.dumps({"transfer": _nested(T, ["a", "b"])}))  # from before standard errors
    got, got_se = load_transfer(path, ["a", "b"])
    assert np.array_equal(got, T) and got_se is None
    path.write_text(json.dumps({"transfer": _nested(T, ["a", "b"]), "stderr": {"a": {"a": 0.1}}}))
    with pytest.raises(ConfigError) as err:
        load_transfer(path, ["a", "b"])
    assert err.value.field == "scheduler.transfer_file"
