"""The trusted judge (spectrum_rl.rewards.splitting and .judgement) on its own: how tests are split,
and how plain values from the sandbox are judged. No sandbox runs here: replies are written by hand, as hostile
code could write them."""

from __future__ import annotations

import ast
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spectrum_rl.rewards._sandbox_runner import encode
from spectrum_rl.rewards.judgement import holds, same_output
from spectrum_rl.rewards.splitting import split_test
from spectrum_rl.rewards.values import decode


def judged(test: str, *values: object) -> tuple[bool, str]:
    """Judge a one-assert test whose eval steps return ``values`` (exec steps succeed)."""
    split = split_test(test)
    assert not split.unverifiable, split.unverifiable
    supplied = iter(values)
    replies = [None if kind == "exec" else {"v": encode(next(supplied), [10**6])} for kind, _ in split.steps]
    results = [holds(a, replies) for a in split.asserts]
    return all(ok for ok, _ in results), "; ".join(why for _, why in results)


def steps(test: str) -> list[tuple[str, str]]:
    split = split_test(test)
    assert not split.unverifiable, split.unverifiable
    return list(split.steps)


def test_the_sandbox_gets_the_call_and_never_the_expected_value():
    assert steps("assert add(2, 3) == 5") == [("eval", "add(2, 3)")]
    assert steps("assert abs(f(1.5) - 0.123456) < 1e-6") == [("eval", "f(1.5)")]
    assert steps("assert math.isclose(f(2), 3.14159, rel_tol=1e-3)") == [("eval", "f(2)")]
    assert steps("assert sorted(f([3, 1])) == [1, 3]") == [("eval", "f([3, 1])")]
    assert steps("assert f(2).strip().lower() == 'abc'") == [("eval", "f(2)")]
    expected = [1, 2, 3]
    assert steps(f"x = [3, 1, 2]\nexpected = {expected}\nassert f(x) == expected") == [("eval", "f([3, 1, 2])")]
    for test in ("assert f(1) == 'secret-1'", "y = 'secret-1'\nassert f(1) == y", "assert f(1) in {'secret-1'}"):
        assert all("secret" not in source for _, source in steps(test))


def test_values_are_compared_here_with_python_semantics():
    assert judged("assert add(2, 3) == 5", 5) == (True, "")
    assert judged("assert add(2, 3) == 5", 6) == (False, "does not hold")
    assert judged("assert f(1) == (1, 2)", [1, 2])[0] is False  # a list is not a tuple
    assert judged("assert f(1) == 1.0", 1)[0] and judged("assert f(1) == 1", True)[0]  # as in Python
    assert judged("assert f(1) is None", None)[0] and not judged("assert f(1) is not None", None)[0]
    assert judged("assert not is_prime(8)", False)[0] and not judged("assert not is_prime(8)", 0.5)[0]
    assert judged("assert abs(f(1.5) - 0.5) < 1e-6", 0.5000001)[0]
    assert judged("assert math.isclose(f(2), 3.14, rel_tol=1e-3)", 3.1415)[0]
    assert judged("from math import isclose as near\nassert near(f(2), 3.0)", 3.0)[0]
    assert judged("assert set(f(1)) == {1, 2}", [2, 1, 2])[0]
    assert judged("assert isinstance(f(1), list) and len(f(1)) == 2", [0, 0])[0]
    assert judged("assert type(f(1)) == int", 3)[0] and not judged("assert type(f(1)) == int", True)[0]
    assert judged("assert sorted(f(1), key=str.lower) == ['a', 'B']", ["B", "a"])[0]
    assert judged("assert '-'.join(f(1)) == 'a-b'", ["a", "b"])[0]
    assert steps("assert f(1)[1:] == 'bc'") == [("eval", "f(1)[1:]")]  # the container may be the code's own type
    assert judged("assert f'{f(2):>3}' == '  4'", 4)[0]
    assert (
        judged("assert all(x > 0 for x in f(3))", [1, 2])[0] and not judged("assert all(x > 0 for x in f(3))", [0])[0]
    )
    assert judged("assert list(f(3)) == [0, 1]", range(2).__iter__())[0]  # an iterator, consumed in the sandbox
    assert not judged("assert f(3) == [0, 1]", iter([0, 1]))[0]  # ... is not equal to a list, as in Python


def test_loops_comprehensions_and_check_functions_are_unrolled():
    assert steps("for i in range(3):\n    assert f(i) == i * i") == [("eval", f"f({i})") for i in range(3)]
    assert judged("for i in range(3):\n    assert f(i) == i * i", 0, 1, 4)[0]
    assert not judged("for i in range(3):\n    assert f(i) == i * i", 0, 1, 5)[0]
    assert judged("assert all(f(i) == i * i for i in range(3))", 0, 1, 4)[0]
    assert judged("assert [f(i) for i in range(3) if i] == [1, 4]", 1, 4)[0]
    assert judged("assert {i: f(i) for i in 'ab'} == {'a': 1, 'b': 2}", 1, 2)[0]
    human_eval = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(5) == 6\n\ncheck(inc)"
    assert steps(human_eval) == [("eval", "inc(1)"), ("eval", "inc(5)")]
    assert judged(human_eval, 2, 6)[0] and not judged(human_eval, 2, 7)[0]
    leetcode = "obj = Solution()\nassert obj.twoSum([2, 7], 9) == [0, 1]"
    assert steps(leetcode) == [("exec", "obj = Solution()"), ("eval", "obj.twoSum([2, 7], 9)")]
    assert judged("r = f(3)\nassert r == 9", 9)[0]  # a name bound to the solution's result


def test_a_hole_error_counts_only_where_python_would_reach_it():
    split = split_test("assert f(1) is None or f(2) == 3")
    replies = [{"v": None}, {"e": "ZeroDivisionError: division by zero"}]
    assert holds(split.asserts[0], replies) == (True, "")
    assert holds(split.asserts[0], [{"v": 1}, replies[1]]) == (False, "ZeroDivisionError: division by zero")


@pytest.mark.parametrize(
    ("test", "reason"),
    [
        ("if True:\n    assert f(1)", "inside a if"),
        ("f(1) == 2", "no assert"),
        ("def f(:", "does not parse"),
        ("import random\nx = random.randint(0, 9)\nassert f(x) == x + 1", "reads 'x'"),
        ("def is_sorted(v):\n    return v == sorted(v)\nassert is_sorted(f([2, 1]))", "calls 'is_sorted'"),
        ("import numpy as np\nassert np.allclose(f(1), [1.0])", "calls 'np'"),
        ("for i in f(3):\n    assert g(i)", "computed in the sandbox"),
        ("assert f(1) == (lambda: 2)()", "cannot compute"),
        ("for i in range(5000):\n    assert f(i)", "more than 1000"),
    ],
)
def test_tests_the_judge_cannot_check_soundly_are_unverifiable(test, reason):
    assert reason in split_test(test).unverifiable


@pytest.mark.parametrize(
    "test",
    [
        "assert 2 ** f(1) > 0",
        "assert 'x' * f(1) == ''",
        "assert [0] * f(1) == []",
        "assert 1 << f(1) > 0",
        "assert list(range(f(1))) == []",
        "assert round(1, f(1)) == 1",
        "assert ','.join(f(1)) == ''",
        "assert f(1).replace('', 'x' * 1000) == ''",
        "assert '%*d' % (f(1), 1) == ''",
        "assert f'{1:{f(1)}}' == ''",
    ],
)
def test_hostile_values_cannot_make_the_judge_slow(test):
    start = time.monotonic()
    ok, why = judged(test, 10**9 if "join" not in test and "replace" not in test else ["a" * 1000] * 10**4)
    assert not ok and why and time.monotonic() - start < 2


def test_decoding_accepts_only_plain_data():
    value = {"list": [1, {"tuple": [2.5, "x"]}, {"set": [{"frozenset": [1]}]}, {"dict": [[{"tuple": []}, None]]}]}
    assert decode(value) == [1, (2.5, "x"), {frozenset({1})}, {(): None}]
    assert decode({"bytes": "6869"}) == b"hi" and decode({"complex": [1, 2]}) == 1 + 2j
    deep: object = 0
    for _ in range(300):
        deep = {"list": [deep]}
    for bad in ({"object": "x"}, {"set": [{"list": []}]}, {"dict": [[{"list": []}, 1]]}, {"a": 1, "b": 2}, deep):
        with pytest.raises(ValueError):
            decode(bad)


class _Hostile:
    def __eq__(self, other: object) -> bool:
        return True


def test_the_runner_encodes_only_exact_plain_types():
    for value in (_Hostile(), type("Int", (int,), {})(3), object(), print):
        with pytest.raises(TypeError, match="not plain data"):
            encode(value, [100])
    with pytest.raises(ValueError, match="too large"):
        encode(list(range(50)), [10])
    with pytest.raises(ValueError, match="too large"):
        encode(1 << 40_000, [10])


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
        | st.frozensets(st.integers() | st.text(max_size=3), max_size=3)
    ),
    max_leaves=20,
)


def typed(value: object) -> object:
    """``value`` with every element's exact type spelled out (sets in a fixed order)."""
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted((typed(v) for v in value), key=repr))
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, value)


@given(plain)
def test_plain_values_survive_the_round_trip_with_their_types(value):
    back = decode(json.loads(json.dumps(encode(value, [10**6]))))
    assert back == value and typed(back) == typed(value)


def test_same_output_ignores_only_trailing_white_space():
    assert same_output("3  \n\n\n", "3")
    assert same_output("a\r\nb", "a\nb")
    assert not same_output(" 3", "3") and not same_output("3\n\n4", "3\n4")


def test_splits_are_cached_and_judgements_name_their_holes():
    assert split_test("assert f(1) == 2") is split_test("assert f(1) == 2")
    (judgement,) = split_test("assert f(1) == 2").asserts
    assert ast.unparse(judgement) == "\0hole0 == 2"
