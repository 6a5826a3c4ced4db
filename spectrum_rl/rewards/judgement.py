"""The trusted judge's verdicts: judgements evaluated in this process, over plain values.

:mod:`spectrum_rl.rewards.splitting` splits a code test into sandbox steps and judgements. A
judgement is an expression whose *holes* (:func:`hole_name`) stand for the values the sandbox
computed; :mod:`spectrum_rl.rewards.values` decodes those into plain data, and :func:`holds`
evaluates the judgement over them. No object of the code's is ever called or compared here.

**What the judge evaluates itself**: literals; operators (arithmetic, comparisons, ``and``/``or``/
``not``, ``in``, ``is``); conditional expressions; subscripts of plain values; the builtins in
``SAFE_FUNCTIONS``, the names in ``MATH`` (``math.isclose``, ...), the methods in ``SAFE_METHODS`` on
plain values; comprehensions. Everything else is a hole. The same evaluator, with no holes,
computes the values a test's set-up and loops bind judge-side (:func:`constant`).

**Size guards** keep hostile values from making the judge slow: operations whose result would be
huge are refused (``x ** y``, ``s * n``, ``range``, ``str.join``, ...), a judgement evaluates at
most ``JUDGE_STEPS`` expression nodes, and the clock is checked as they go. A refused
operation makes the assert fail, with the reason.

**I/O tests** (``{"input": ..., "output": ...}``): the sandbox returns the program's stdout; a
test passes when its lines, trailing white space and trailing empty lines removed, equal the
expected output's (:func:`same_output`).
"""

from __future__ import annotations

import ast
import builtins
import math
import operator
from collections.abc import Callable, Iterator, Sequence

from spectrum_rl.rewards.values import check_clock, decode

MAX_ITEMS = 10_000_000  # elements (or characters) of a value the judge builds
MAX_POW_BITS = 100_000
JUDGE_STEPS = 2_000_000  # expression nodes the judge evaluates for one judgement (one assert)

SAFE_FUNCTIONS: dict[str, Callable] = {
    name: getattr(builtins, name)
    for name in (
        "abs all any bool bytes chr complex dict divmod enumerate float frozenset hex bin oct int isinstance len "
        "list max min ord pow range repr reversed round set sorted str sum tuple type zip"
    ).split()
}
MATH = {
    name: getattr(math, name)
    for name in (
        "isclose isnan isinf isfinite fabs floor ceil trunc sqrt exp log log2 log10 gcd hypot pi e tau inf nan"
    ).split()
}
_TEXT = (
    "lower upper strip lstrip rstrip split rsplit splitlines startswith endswith count find rfind index rindex "
    "join replace isdigit isalpha isalnum isspace islower isupper isnumeric isdecimal istitle title capitalize "
    "casefold swapcase partition rpartition removeprefix removesuffix"
).split()
_SETS = "issubset issuperset isdisjoint union intersection difference symmetric_difference".split()
SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(_TEXT + ["encode"]),
    bytes: frozenset(_TEXT + ["decode", "hex"]),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    dict: frozenset({"keys", "values", "items", "get"}),
    set: frozenset(_SETS),
    frozenset: frozenset(_SETS),
    int: frozenset({"bit_length"}),
    float: frozenset({"is_integer"}),
}
METHOD_NAMES = frozenset().union(*SAFE_METHODS.values())
_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.LShift: operator.lshift,
    ast.RShift: operator.rshift, ast.BitOr: operator.or_, ast.BitXor: operator.xor, ast.BitAnd: operator.and_,
}  # fmt: skip
_UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
_HOLE = "\0hole"  # prefix of the Name that stands for a hole (not an identifier: never clashes)


def hole_name(index: int) -> ast.Name:
    """The Name that stands, in a judgement, for the value of sandbox step ``index``."""
    return ast.Name(f"{_HOLE}{index}", ast.Load())


class _Refused(Exception):
    """The judge will not compute this (unsupported, or too large): the assert does not hold."""


class UnrolledComprehension(ast.expr):
    """An unrolled comprehension: ``items`` are (conditions, element) per iteration; the judge keeps
    the elements whose conditions hold, lazily for a generator (``kind`` "iter")."""

    _fields = ("kind", "items")

    def __init__(self, kind: str, items: list) -> None:
        super().__init__()
        self.kind, self.items = kind, items


NOT_CONSTANT = object()


def constant(node: ast.expr) -> object:
    """The value of ``node`` when the judge can compute it without the sandbox (literals, safe
    builtins, math, comprehensions over those), else NOT_CONSTANT."""
    try:
        return _Judge(()).value(node, {})
    except Exception:  # noqa: BLE001 - _Refused, or anything the judge cannot compute
        return NOT_CONSTANT


def bounded(values: object, limit: int) -> Iterator:
    """The first ``limit`` items of ``values``: a hostile iterable is never drained whole."""
    for i, value in enumerate(values):  # type: ignore[call-overload]
        if i >= limit:
            return
        yield value


class _Judge:
    """Evaluates a judgement over plain values. ``holes[i]`` is the reply to step i: ``{"v": value}``
    or ``{"e": error}``; a hole's error is raised only when the judgement reaches it (as Python's
    ``and``/``or`` would not evaluate it otherwise)."""

    def __init__(self, holes: Sequence[object], deadline: float | None = None) -> None:
        self.holes = holes
        self.deadline = deadline
        self.steps = JUDGE_STEPS
        self.decoded: dict[int, object] = {}

    def value(self, node: ast.AST, scope: dict[str, object]) -> object:
        self.steps -= 1
        if self.steps < 0:
            raise _Refused("the judgement takes too long")
        if self.steps % 256 == 0:
            check_clock(self.deadline)
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise _Refused(f"the judge does not evaluate {type(node).__name__}")
        return method(node, scope)

    def _Constant(self, node: ast.Constant, scope: dict) -> object:
        return node.value

    def _Name(self, node: ast.Name, scope: dict) -> object:
        if node.id in scope:
            return scope[node.id]
        if node.id.startswith(_HOLE):
            return self.hole(int(node.id[len(_HOLE) :]))
        if node.id in SAFE_FUNCTIONS:
            return SAFE_FUNCTIONS[node.id]
        raise _Refused(f"unknown name {node.id}")

    def hole(self, index: int) -> object:
        if index not in self.decoded:
            reply = self.holes[index] if index < len(self.holes) else None
            if type(reply) is dict and "v" in reply:
                try:
                    self.decoded[index] = decode(reply["v"], self.deadline)
                except ValueError as exc:
                    self.decoded[index] = _Refused(f"the sandbox sent {exc}")
            else:
                error = reply.get("e") if type(reply) is dict else None
                self.decoded[index] = _Refused(str(error)[:300] if error else "no value")
        value = self.decoded[index]
        if isinstance(value, _Refused):
            raise value
        return value

    def _Attribute(self, node: ast.Attribute, scope: dict) -> object:
        if isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr in MATH:
            return MATH[node.attr]
        if isinstance(node.value, ast.Name) and node.value.id in SAFE_FUNCTIONS:
            owner = SAFE_FUNCTIONS[node.value.id]
            if owner in SAFE_METHODS and node.attr in SAFE_METHODS[owner]:  # e.g. key=str.lower
                return getattr(owner, node.attr)
        raise _Refused(f"attribute {node.attr}")

    def _List(self, node: ast.List, scope: dict) -> object:
        return self.items(node.elts, scope)

    def _Tuple(self, node: ast.Tuple, scope: dict) -> object:
        return tuple(self.items(node.elts, scope))

    def _Set(self, node: ast.Set, scope: dict) -> object:
        return set(self.items(node.elts, scope))

    def _Dict(self, node: ast.Dict, scope: dict) -> object:
        out: dict = {}
        for key, value in zip(node.keys, node.values):
            if key is None:
                out.update(self.value(value, scope))  # type: ignore[call-overload]
            else:
                out[self.value(key, scope)] = self.value(value, scope)
        return out

    def items(self, nodes: Sequence[ast.expr], scope: dict) -> list:
        out: list = []
        for node in nodes:
            if isinstance(node, ast.Starred):
                out.extend(bounded(self.value(node.value, scope), MAX_ITEMS))
            else:
                out.append(self.value(node, scope))
        return out

    def _UnaryOp(self, node: ast.UnaryOp, scope: dict) -> object:
        return _UNARY[type(node.op)](self.value(node.operand, scope))

    def _BinOp(self, node: ast.BinOp, scope: dict) -> object:
        left, right = self.value(node.left, scope), self.value(node.right, scope)
        _guard_binary(node.op, left, right)
        return _BINARY[type(node.op)](left, right)

    def _BoolOp(self, node: ast.BoolOp, scope: dict) -> object:
        result: object = None
        for operand in node.values:
            result = self.value(operand, scope)
            if bool(result) != isinstance(node.op, ast.And):
                return result
        return result

    def _Compare(self, node: ast.Compare, scope: dict) -> object:
        left = self.value(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.value(comparator, scope)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp, scope: dict) -> object:
        return self.value(node.body if self.value(node.test, scope) else node.orelse, scope)

    def _JoinedStr(self, node: ast.JoinedStr, scope: dict) -> object:
        return "".join(str(self.value(part, scope)) for part in node.values)

    def _FormattedValue(self, node: ast.FormattedValue, scope: dict) -> object:
        value = self.value(node.value, scope)
        value = {115: str, 114: repr, 97: ascii}.get(node.conversion, lambda v: v)(value)
        spec = "" if node.format_spec is None else str(self.value(node.format_spec, scope))
        if any(len(run) > 4 for run in "".join(c if c.isdigit() else " " for c in spec).split()):
            raise _Refused("a format width too large to compute")
        return format(value, spec)

    def _Subscript(self, node: ast.Subscript, scope: dict) -> object:
        return self.value(node.value, scope)[self.value(node.slice, scope)]  # type: ignore[index]

    def _Slice(self, node: ast.Slice, scope: dict) -> object:
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if p is None else self.value(p, scope) for p in parts))

    def _Call(self, node: ast.Call, scope: dict) -> object:
        args = self.items(node.args, scope)
        kwargs: dict = {}
        for keyword in node.keywords:
            value = self.value(keyword.value, scope)
            kwargs.update(value if keyword.arg is None else {keyword.arg: value})  # type: ignore[arg-type]
        func = node.func
        if isinstance(func, ast.Name) and func.id in SAFE_FUNCTIONS and func.id not in scope:
            _guard_call(func.id, args, kwargs)
            return SAFE_FUNCTIONS[func.id](*args, **kwargs)
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id == "math" and func.attr in MATH:
                return MATH[func.attr](*args, **kwargs)
            receiver = self.value(func.value, scope)
            if func.attr in SAFE_METHODS.get(type(receiver), ()):
                _guard_method(receiver, func.attr, args)
                return getattr(receiver, func.attr)(*args, **kwargs)
            raise _Refused(f"a {type(receiver).__name__} has no method {func.attr} the judge calls")
        raise _Refused("a call the judge does not make")

    def _comprehension(self, node: ast.expr, scope: dict) -> object:
        def rows(generators: list[ast.comprehension], inner: dict) -> Iterator[dict]:
            if not generators:
                yield inner
                return
            first = generators[0]
            for item in bounded(self.value(first.iter, inner), MAX_ITEMS):
                here = dict(inner)
                _assign(first.target, item, here)
                if all(self.value(c, here) for c in first.ifs):
                    yield from rows(generators[1:], here)

        if isinstance(node, ast.DictComp):
            return {self.value(node.key, s): self.value(node.value, s) for s in rows(node.generators, dict(scope))}
        values = (self.value(node.elt, s) for s in rows(node.generators, dict(scope)))
        if isinstance(node, ast.GeneratorExp):
            return values
        return list(values) if isinstance(node, ast.ListComp) else set(values)

    _ListComp = _SetComp = _GeneratorExp = _DictComp = _comprehension

    def _UnrolledComprehension(self, node: UnrolledComprehension, scope: dict) -> object:
        def kept() -> Iterator:
            for conditions, value in node.items:
                if all(self.value(c, scope) for c in conditions):
                    yield (
                        tuple(self.value(v, scope) for v in value)
                        if isinstance(value, tuple)
                        else self.value(value, scope)
                    )

        if node.kind == "iter":
            return kept()
        return {"list": list, "set": set, "dict": dict}[node.kind](kept())


def _assign(target: ast.expr, value: object, scope: dict) -> None:
    if isinstance(target, ast.Name):
        scope[target.id] = value
        return
    items = list(bounded(value, MAX_ITEMS))
    if not isinstance(target, (ast.Tuple, ast.List)) or len(items) != len(target.elts):
        raise _Refused("a comprehension target that does not unpack")
    for t, v in zip(target.elts, items):
        _assign(t, v, scope)


def _size(value: object) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def _guard_binary(op: ast.operator, left: object, right: object) -> None:
    """Refuse operations whose result would be huge (the operands may come from hostile code)."""
    if isinstance(op, ast.Pow) and type(left) is int and type(right) is int and right > 0 and abs(left) > 1:
        if right * left.bit_length() > MAX_POW_BITS:
            raise _Refused("a power too large to compute")
    if isinstance(op, ast.Mult):
        for seq, times in ((left, right), (right, left)):
            if isinstance(times, int) and _size(seq) * times > MAX_ITEMS:
                raise _Refused("a repetition too large to compute")
    if isinstance(op, ast.LShift) and isinstance(right, int) and right > MAX_POW_BITS:
        raise _Refused("a shift too large to compute")
    if isinstance(op, ast.Mod) and isinstance(left, (str, bytes)) and "*" in str(left):
        raise _Refused("%-formatting with a computed width")


def _guard_call(name: str, args: list, kwargs: dict) -> None:
    if name in ("range", "bytes") and sum(isinstance(a, int) and abs(a) > MAX_ITEMS for a in args):
        raise _Refused(f"{name}() too large")
    if name == "pow" and len(args) == 2:
        _guard_binary(ast.Pow(), *args)
    if name == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > 10_000:
        raise _Refused("round() to too many digits")
    if name == "type" and len(args) != 1:
        raise _Refused("type() with more than one argument")
    if name == "sum" and len(args) == 2 and not isinstance(args[1], (int, float, complex)):
        raise _Refused("sum() with a non-numeric start")


def _guard_method(receiver: object, name: str, args: list) -> None:
    if name == "join":
        parts = list(bounded(args[0], MAX_ITEMS + 1)) if args else []
        args[0:1] = [parts]
        if len(receiver) * len(parts) + sum(_size(p) for p in parts) > MAX_ITEMS:  # type: ignore[arg-type]
            raise _Refused("a join too large to compute")
    if name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        occurrences = receiver.count(old) if old else len(receiver) + 1  # type: ignore[attr-defined]
        if _size(receiver) + occurrences * _size(new) > MAX_ITEMS:
            raise _Refused("a replace too large to compute")


def holds(judgement: ast.expr, replies: Sequence[object], deadline: float | None = None) -> tuple[bool, str]:
    """(whether the judgement is true over the sandbox's replies, a reason when not); raises
    :class:`~spectrum_rl.rewards.values.Unjudgeable` for values shaped to slow the judge down and
    once ``time.monotonic()`` passes ``deadline``."""
    try:
        return (True, "") if _Judge(replies, deadline).value(judgement, {}) else (False, "does not hold")
    except _Refused as exc:
        return False, str(exc)
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError, MemoryError, AttributeError) as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


def same_output(got: str, expected: str) -> bool:
    """Program output equals the expected output, up to trailing white space and trailing empty lines."""

    def lines(text: str) -> list[str]:
        out = [line.rstrip() for line in text.splitlines()]
        while out and not out[-1]:
            out.pop()
        return out

    return lines(got) == lines(expected)
