"""Best training order (subset DP vs brute force, heuristic, ties, errors) and GEM metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.continual import continual_metrics, normalised_transfer
from spectrum_rl.scheduler.order import best_order, order_score, pairwise_weights


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
    assert all(line == "structured before creative" for line in result.explanations.values())


def test_exact_ties_prefer_smallest_index_order():
    names = ["c", "b", "a"]
    result = best_order(names, np.zeros((3, 3)), {}, {"c": ["a"]})
    assert result.order == ["b", "a", "c"]
    assert result.explanations["a"] == "prerequisite of c; little transfer either way"


def test_explanation_names_the_transfer():
    T = np.zeros((2, 2))
    T[1, 0] = 0.3  # training "late" helps "early", forward transfer discounted
    result = best_order(["early", "late"], T, {}, {}, forward_weight=0.0)
    assert result.order == ["early", "late"]
    assert result.explanations["early"] == "later domains help it (+0.30)"
    assert result.explanations["late"] == "helps earlier domains (+0.30)"


@pytest.mark.parametrize("exact_limit", [16, 0])
def test_cycle_is_a_config_error(exact_limit):
    names = ["a", "b", "c", "d"]
    with pytest.raises(ConfigError) as err:
        best_order(
            names, np.zeros((4, 4)), {}, {"a": ["c"], "b": ["a"], "c": ["b"], "d": ["a"]}, exact_limit=exact_limit
        )
    assert err.value.field == "tasks"
    assert "cycle" in err.value.message
    assert all(n in err.value.message for n in "abc") and "d" not in err.value.message


def test_unknown_prerequisite_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        best_order(["sorting", "addition"], np.zeros((2, 2)), {}, {"addition": ["sortng"]})
    assert err.value.field == "tasks"
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
