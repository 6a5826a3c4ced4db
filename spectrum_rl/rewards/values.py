"""Values from the code sandbox, decoded in time linear in the reply and under the judge's clock.

The runner (:mod:`spectrum_rl.rewards._sandbox_runner`) sends what the code computed as tagged
JSON. That data is hostile, and the judge that reads it runs in the trainer's process, so:

- **size**: a value holds at most ``MAX_NODES`` containers and elements (the runner's own cap), and
  decoding checks the judge's deadline as it goes (:class:`JudgeTimeout`);
- **big integers**: ints beyond ``JSON_INT_BITS`` travel as hex (``{"int": "-1f"}``), which neither
  side's int/str conversion limit applies to; ``MAX_INT_BITS`` bounds them;
- **hash collisions**: CPython randomises the hash of ``str`` but not of numbers
  (``hash(k * (2**61 - 1)) == 0`` for every int k) nor of the tuples built from them, so a set of n
  distinct values sharing one hash costs O(n²) to build or compare: 100,000 of them held the judge
  for 70 s. Before a set, frozenset or dict is built, and over every hashable part of a decoded
  value (the judge may build a set from a list: ``set(f(x)) == {...}``), more than
  ``MAX_COLLISIONS`` distinct values sharing one hash make the sample unjudgeable
  (:func:`check_hashes`, O(n log n)): it is ``crashed``, which ``reward_errors/`` counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from spectrum_rl.rewards._sandbox_runner import MAX_INT_BITS, MAX_NODES

MAX_DEPTH = 200  # nesting of a decoded value
MAX_COLLISIONS = 32  # distinct values allowed to share one hash (honest data: a handful at most)
_CLOCK_EVERY = 1024  # nodes decoded between two looks at the clock


class Unjudgeable(Exception):
    """What came back cannot be judged within bounds: values shaped to slow the judge down, or a
    judgement past its deadline. The sample is ``crashed`` (counted in ``reward_errors/``), alone."""


class JudgeTimeout(Unjudgeable):
    """Judging one completion ran past its deadline."""


class Iterated:
    """An iterator the code returned, consumed in the sandbox: iterable here, equal to nothing else
    (as a generator is not equal to a list)."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self) -> Iterator:
        return iter(self.items)


def check_clock(deadline: float | None) -> None:
    """:class:`JudgeTimeout` once ``deadline`` (``time.monotonic()``; None: none) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise JudgeTimeout("judging took too long")


def check_hashes(items: Sequence[object], deadline: float | None = None) -> None:
    """:class:`Unjudgeable` when more than ``MAX_COLLISIONS`` distinct hashable ``items`` share one hash.

    Sorting the hashes finds the runs of equal hashes without a hash table (which is what the
    collisions would slow down); within a long run each item is compared with at most
    ``MAX_COLLISIONS`` representatives, so equal values repeated (``[1] * 10**5``) pass in linear time."""
    keyed = []
    for i, item in enumerate(items):
        try:
            keyed.append((hash(item), i))
        except TypeError:  # an unhashable value (a tuple holding a list) never enters a set
            continue
    keyed.sort()
    start = 0
    while start < len(keyed):
        end = start
        while end < len(keyed) and keyed[end][0] == keyed[start][0]:
            end += 1
        if end - start > MAX_COLLISIONS:
            distinct: list[object] = []
            for _, i in keyed[start:end]:
                if not any(items[i] == seen for seen in distinct):
                    distinct.append(items[i])
                    if len(distinct) > MAX_COLLISIONS:
                        raise Unjudgeable(f"values with more than {MAX_COLLISIONS} distinct parts sharing one hash")
            check_clock(deadline)
        start = end


class _Decoder:
    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.nodes = 0
        self.hashable: list[object] = []  # every decoded part that a set or dict could hold

    def value(self, data: object, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ValueError("value too large")
        if self.nodes % _CLOCK_EVERY == 0:
            check_clock(self.deadline)
        kind = type(data)
        if data is None or kind in (bool, int, float, str):
            self.hashable.append(data)
            return data
        if kind is not dict or len(data) != 1:  # type: ignore[arg-type]
            raise ValueError("not plain data")
        ((tag, body),) = data.items()  # type: ignore[attr-defined]
        out = self._tagged(tag, body, depth)
        if type(out) in (tuple, frozenset, bytes, complex, int):
            self.hashable.append(out)
        return out

    def _tagged(self, tag: object, body: object, depth: int) -> object:
        if tag == "int" and type(body) is str and len(body) <= MAX_INT_BITS // 4 + 2:
            return int(body, 16)
        if tag == "bytes" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "complex" and type(body) is list and len(body) == 2 and all(type(x) in (int, float) for x in body):
            return complex(*body)
        if type(body) is not list:
            raise ValueError("not plain data")
        if tag == "dict":
            if not all(type(p) is list and len(p) == 2 for p in body):
                raise ValueError("not plain data")
            keys = [self.value(k, depth + 1) for k, _ in body]
            values = [self.value(v, depth + 1) for _, v in body]
            return self._build(dict, list(zip(keys, values)), keys)
        build = _CONTAINERS.get(tag)  # type: ignore[arg-type]
        if build is None:
            raise ValueError("not plain data")
        items = [self.value(item, depth + 1) for item in body]
        return self._build(build, items, items) if tag in ("set", "frozenset") else build(items)

    def _build(self, build: Callable[[list], object], items: list, keys: list) -> object:
        check_hashes(keys, self.deadline)
        try:
            return build(items)
        except TypeError as exc:  # an unhashable set element or dict key
            raise ValueError(str(exc)) from None


_CONTAINERS: dict[str, Callable[[list], object]] = {
    "list": list,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "iter": Iterated,
}


def decode(data: object, deadline: float | None = None) -> object:
    """A sandbox value (see :mod:`spectrum_rl.rewards._sandbox_runner`) as a Python value.

    ValueError when it is not well-formed plain data or larger than the runner's caps;
    :class:`Unjudgeable` when shaped to make sets slow (module docstring) or past ``deadline``."""
    decoder = _Decoder(deadline)
    value = decoder.value(data, 0)
    check_hashes(decoder.hashable, deadline)
    return value
