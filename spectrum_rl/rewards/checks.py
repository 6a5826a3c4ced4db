"""The trusted judge of code tests: what the sandbox computes, and what only this process decides.

A test ``assert add(2, 3) == 5`` is split into a *hole*, ``add(2, 3)``, that the sandboxed code
evaluates, and a *judgement*, ``<hole> == 5``, that this process evaluates over the hole's value.
Values come back as plain data (None, bool, int, float, str, bytes, complex, and lists, tuples,
sets, frozensets and dicts of them; iterators the code returns arrive consumed). So:

- the sandbox never sees the expected value ``5``;
- no object the code defined is ever compared: an ``add`` returning an object whose ``__eq__`` is
  always true fails, because such an object is not plain data;
- a code that tampers with the runner can only lie about *its own* values, which it cannot fit to
  expected values it never sees.

**What the judge evaluates itself**: literals; operators (arithmetic, comparisons, ``and``/``or``/
``not``, ``in``, ``is``); conditional expressions; subscripts of plain values; the builtins in
``SAFE_FUNCTIONS``, the names in ``MATH`` (``math.isclose``, ...), the methods in ``SAFE_METHODS`` on
plain values; comprehensions. Size guards keep hostile values from making the judge slow
(``x ** y``, ``s * n``, ``range``, ``str.join``, ...). Everything else is a hole: a call of the
solution's functions, an attribute, a name the solution defined.

**Statements**: an ``assert`` is judged. A set-up statement runs in the sandbox, except ``NAME = <a
value the judge can compute>``, which the judge keeps and substitutes (the sandbox never sees it).
``for NAME in <a value the judge can compute>:`` around asserts is unrolled, and so is a
comprehension whose element needs the loop variable inside a hole. A function the test defines
with asserts in it and then calls (HumanEval's ``def check(candidate)`` + ``check(f)``) is inlined.
A test passes when its set-up ran, it has at least one assert, and every assert holds.

**Unverifiable tests** count as failed, with the reason: an assert inside ``if``/``while``/``try``/
``with``; a loop over a value computed in the sandbox; a hole that calls a function or module the
*test* defined or imported (its verdict, e.g. ``is_sorted(f(x))`` or ``np.allclose(f(x), y)``,
would be computed where the code can forge it); or a hole that reads data the test's set-up
computed in the sandbox (``x = random.randint(...)`` ... ``== x + 1``: the judge would take ``x``
on the code's word). Names bound to the solution's results (``r = f(3)``; ``obj = Solution()``) may
be read. Write such tests with the call in the assert (``assert f(3) == 9``) or as I/O tests.

**I/O tests** (``{"input": ..., "output": ...}``): the sandbox returns the program's stdout; a
test passes when its lines, trailing white space and trailing empty lines removed, equal the
expected output's.
"""

from __future__ import annotations

import ast
import builtins
import copy
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from spectrum_rl.rewards.values import check_clock, decode

MAX_UNROLL = 1000  # iterations of an unrolled loop or comprehension
MAX_ITEMS = 10_000_000  # elements (or characters) of a value the judge builds
MAX_POW_BITS = 100_000
JUDGE_STEPS = 2_000_000  # expression nodes the judge evaluates for one test

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
_METHOD_NAMES = frozenset().union(*SAFE_METHODS.values())
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


class Unverifiable(Exception):
    """The judge cannot split this test soundly; the message says why."""


class _Refused(Exception):
    """The judge will not compute this (unsupported, or too large): the assert does not hold."""


class _NeedsUnroll(Exception):
    """A hole would depend on a comprehension's variable: unroll the comprehension."""


# --- plans ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One test, split. ``steps`` go to the sandbox in order (``("exec", statements)`` or
    ``("eval", expression)``); ``asserts`` are judgements whose holes name the eval steps they take
    their values from. ``unverifiable`` is the reason the test cannot be judged ("" when it can)."""

    steps: tuple[tuple[str, str], ...] = ()
    asserts: tuple[ast.expr, ...] = ()
    unverifiable: str = ""


@lru_cache(maxsize=4096)
def plan(test: str) -> Plan:
    """Split one assert-style test (Python source) into sandbox steps and judgements."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return Plan(unverifiable=f"the test does not parse ({type(exc).__name__})")
    planner = _Planner()
    try:
        planner.statements(tree.body)
        if not planner.asserts:
            raise Unverifiable("the test has no assert the judge can check")
    except Unverifiable as exc:
        return Plan(unverifiable=str(exc))
    except RecursionError:
        return Plan(unverifiable="the test is nested too deeply")
    return Plan(tuple(planner.steps), tuple(planner.asserts))


def _bound_names(stmt: ast.stmt) -> set[str]:
    """Names a statement binds at the test's top level (not inside functions or classes it defines)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    names, todo = set(), [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)) or node is stmt:
            todo.extend(ast.iter_child_nodes(node))
    return names


def _root(node: ast.expr) -> str | None:
    """The name an attribute/subscript/call chain starts from (``np`` in ``np.linalg.norm(x)[0]``)."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _free_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


class _Substitute(ast.NodeTransformer):
    """Replace loaded names by expressions (copies), respecting names rebound by comprehensions and lambdas."""

    def __init__(self, mapping: dict[str, ast.expr]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.mapping:
            return copy.deepcopy(self.mapping[node.id])
        return node

    def _scoped(self, node: ast.AST, bound: set[str]) -> ast.AST:
        inner = {k: v for k, v in self.mapping.items() if k not in bound}
        return _Substitute(inner).generic_visit(node) if inner != self.mapping else self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return self._scoped(node, {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)})

    def _comprehension(self, node: ast.AST) -> ast.AST:
        bound = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        return self._scoped(node, bound)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension


def substitute(node: ast.AST, mapping: dict[str, ast.expr]) -> ast.AST:
    return _Substitute(mapping).visit(copy.deepcopy(node)) if mapping else node


def literal(value: object) -> ast.expr:
    """An expression that evaluates to ``value`` (plain data), for substitution into tests."""
    if type(value) in (list, tuple):
        elts = [literal(v) for v in value]
        return ast.List(elts, ast.Load()) if type(value) is list else ast.Tuple(elts, ast.Load())
    if type(value) in (set, frozenset):
        display = ast.Set([literal(v) for v in value]) if value else ast.Call(ast.Name("set", ast.Load()), [], [])
        if type(value) is set:
            return display
        return ast.Call(ast.Name("frozenset", ast.Load()), [display] if value else [], [])
    if type(value) is dict:
        return ast.Dict([literal(k) for k in value], [literal(v) for v in value.values()])
    if value is None or type(value) in (bool, int, float, str, bytes, complex):
        return ast.Constant(value)
    raise TypeError(f"not plain data: {type(value).__name__}")


class _Planner:
    """Walks a test's statements, building sandbox steps and judgements (see the module docstring)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []
        self.asserts: list[ast.expr] = []
        self.constants: dict[str, ast.expr] = {}  # judge-side names, substituted as literals
        self.data: set[str] = set()  # names the test binds in the sandbox (modules, helpers, data)
        self.answers: set[str] = set()  # ... of which these hold the solution's results
        self.functions: dict[str, ast.FunctionDef] = {}  # test functions with asserts, inlined where called

    def statements(self, body: Sequence[ast.stmt]) -> None:
        for stmt in body:
            self.statement(substitute(stmt, self.constants))

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assert):
            self.asserts.append(self.split(stmt.test, frozenset()))
        elif isinstance(stmt, ast.FunctionDef) and _has_assert(stmt):
            self.functions[stmt.name] = stmt
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and _root(stmt.value) in self.functions:
            self.inline(stmt.value)
        elif isinstance(stmt, ast.For) and _has_assert(stmt):
            self.unroll_loop(stmt)
        elif _has_assert(stmt):
            raise Unverifiable(f"an assert inside a {type(stmt).__name__.lower()} statement")
        elif not self.math_import(stmt):
            self.setup(stmt)

    def math_import(self, stmt: ast.stmt) -> bool:
        """``import math [as m]`` / ``from math import isclose [as c]``: the judge uses its own math
        (the names become ``math.X`` in what follows); the sandbox imports math for its own steps."""
        if isinstance(stmt, ast.Import) and all(a.name == "math" for a in stmt.names):
            aliases = {a.asname: ast.Name("math", ast.Load()) for a in stmt.names if a.asname}
        elif isinstance(stmt, ast.ImportFrom) and stmt.module == "math" and not stmt.level:
            if not all(a.name in MATH for a in stmt.names):
                return False
            aliases = {a.asname or a.name: _math(a.name) for a in stmt.names}
        else:
            return False
        self.steps.append(("exec", "import math"))
        for name, node in aliases.items():
            self.constants[name] = node
            self.data.discard(name)
        return True

    def setup(self, stmt: ast.stmt) -> None:
        """A statement for the sandbox, or a constant the judge keeps."""
        names = _bound_names(stmt)
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            value = constant(stmt.value)
            if value is not _NOT_CONSTANT and _is_plain(value):
                self.constants[name] = literal(value)
                self.data.discard(name)
                self.answers.discard(name)
                return
            if self.valid_hole(stmt.value):  # the solution's result: may be read back as a value
                self.steps.append(("exec", ast.unparse(stmt)))
                self.constants.pop(name, None)
                self.data.add(name)
                self.answers.add(name)
                return
        self.steps.append(("exec", ast.unparse(stmt)))
        for name in names:
            self.constants.pop(name, None)
            self.answers.discard(name)
        self.data |= names

    def inline(self, call: ast.Call) -> None:
        """A call of a test function with asserts: its body, parameters replaced by the arguments."""
        fn = self.functions[call.func.id] if isinstance(call.func, ast.Name) else None
        if fn is None or fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs:
            raise Unverifiable("a call of a test function the judge cannot inline")
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        defaults = dict(zip(params[len(params) - len(fn.args.defaults) :], fn.args.defaults))
        given = dict(zip(params, call.args)) | {k.arg: k.value for k in call.keywords if k.arg}
        if len(call.args) > len(params) or set(given) - set(params) or set(params) - set(given) - set(defaults):
            raise Unverifiable(f"a call of {fn.name} that does not match its parameters")
        body = [substitute(s, {p: given.get(p, defaults.get(p)) for p in params}) for s in fn.body]
        if any(isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom)) for s in body for n in ast.walk(s)):
            raise Unverifiable(f"{fn.name} returns early")
        self.statements(body)

    def unroll_loop(self, stmt: ast.For) -> None:
        if stmt.orelse or any(isinstance(n, (ast.Break, ast.Continue)) for n in ast.walk(stmt)):
            raise Unverifiable("a loop with break/continue/else around asserts")
        for binding in _iterations(stmt.target, stmt.iter):
            self.statements([substitute(s, binding) for s in stmt.body])

    def valid_hole(self, node: ast.expr) -> bool:
        """Whether the judge may take ``node``'s value from the sandbox: it reads no name the test
        bound there except the solution's results (names inside call arguments are inputs)."""
        return not (_read_names(node) & (self.data - self.answers))

    def hole(self, node: ast.expr, bound: frozenset[str]) -> ast.expr:
        """An eval step for ``node``; the Name that stands for its value in the judgement."""
        if _free_names(node) & bound:
            raise _NeedsUnroll
        if not _read_names(node):  # nothing of the solution's in it: the value would be the sandbox's word
            raise Unverifiable(f"the judge cannot compute `{ast.unparse(node)[:60]}` itself")
        if not self.valid_hole(node):
            root = sorted(_read_names(node) & (self.data - self.answers))[0]
            if isinstance(node, ast.Call) and root == _root(node):
                raise Unverifiable(
                    f"the assert calls '{root}', which the test defines or imports: its verdict would be "
                    "computed inside the sandbox"
                )
            raise Unverifiable(f"the assert reads '{root}', a value the test's set-up computed inside the sandbox")
        source = ast.unparse(node)
        for index in range(len(self.steps) - 1, -1, -1):  # the same value since the last set-up step
            if self.steps[index][0] == "exec":
                break
            if self.steps[index][1] == source:
                return ast.Name(f"{_HOLE}{index}", ast.Load())
        self.steps.append(("eval", source))
        return ast.Name(f"{_HOLE}{len(self.steps) - 1}", ast.Load())

    def split(self, node: ast.expr, bound: frozenset[str]) -> ast.expr:
        """``node`` with every part the judge cannot evaluate replaced by a hole."""
        if isinstance(node, ast.Constant):
            return node
        if isinstance(node, ast.Name):
            if node.id in bound or node.id in SAFE_FUNCTIONS or node.id == "math":
                return node
            return self.hole(node, bound)
        if isinstance(node, ast.Attribute) and _judged_attribute(node, bound):
            return node
        if isinstance(node, ast.Subscript):
            mark = len(self.steps)
            value = self.split(node.value, bound)
            if len(self.steps) > mark:  # the container comes from the sandbox (maybe the solution's
                del self.steps[mark:]  # own type): take the element from there
                return self.hole(node, bound)
            return ast.Subscript(value, self.split(node.slice, bound), ast.Load())
        if isinstance(node, ast.Call):
            return self._call(node, bound)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return self._comprehension(node, bound)
        if isinstance(node, _JUDGED):
            return self._rebuild(node, bound)
        return self.hole(node, bound)

    def _call(self, node: ast.Call, bound: frozenset[str]) -> ast.expr:
        """A call of a safe builtin, a math function or a safe method is the judge's (its receiver
        and arguments are split); any other call is a hole."""
        func = node.func
        if isinstance(func, ast.Name) and func.id in SAFE_FUNCTIONS and func.id not in bound:
            new_func: ast.expr = func
        elif isinstance(func, ast.Attribute) and _judged_attribute(func, bound):
            new_func = func
        elif isinstance(func, ast.Attribute) and func.attr in _METHOD_NAMES:
            new_func = ast.Attribute(self.split(func.value, bound), func.attr, ast.Load())
        else:
            return self.hole(node, bound)
        args = [self.split(a, bound) for a in node.args]
        return ast.Call(new_func, args, [ast.keyword(k.arg, self.split(k.value, bound)) for k in node.keywords])

    def _rebuild(self, node: ast.AST, bound: frozenset[str]) -> ast.AST:
        """A copy of ``node`` with its sub-expressions split (its own kind the judge evaluates)."""
        new = copy.copy(node)
        for name, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                setattr(new, name, self.split(value, bound))
            elif isinstance(value, list):
                setattr(new, name, [self._part(v, bound) for v in value])
        return new

    def _part(self, value: object, bound: frozenset[str]) -> object:
        if isinstance(value, ast.expr):
            return self.split(value, bound)
        if isinstance(value, ast.keyword):
            return ast.keyword(value.arg, self.split(value.value, bound))
        return value  # operators, None keys of ``{**d}``

    def _comprehension(self, node: ast.expr, bound: frozenset[str]) -> ast.expr:
        targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        if any(g.is_async or not isinstance(g.target, (ast.Name, ast.Tuple, ast.List)) for g in node.generators):
            return self.hole(node, bound)
        mark = len(self.steps)
        try:
            inner = bound | targets
            generators = [
                ast.comprehension(g.target, self.split(g.iter, inner), [self.split(c, inner) for c in g.ifs], 0)
                for g in node.generators
            ]
            new = copy.copy(node)
            new.generators = generators
            for name in ("elt", "key", "value"):
                if hasattr(node, name):
                    setattr(new, name, self.split(getattr(node, name), inner))
            return new
        except _NeedsUnroll:
            del self.steps[mark:]
            return self._unrolled(node, bound)

    def _unrolled(self, node: ast.expr, bound: frozenset[str]) -> ast.expr:
        """The comprehension as a display of its iterations (their iterables must be judge-computable)."""
        rows: list[tuple[list[ast.expr], ast.expr | tuple[ast.expr, ast.expr]]] = []

        def walk(generators: list[ast.comprehension], mapping: dict[str, ast.expr]) -> None:
            if not generators:
                if isinstance(node, ast.DictComp):
                    rows.append((conditions[:], (substitute(node.key, mapping), substitute(node.value, mapping))))
                else:
                    rows.append((conditions[:], substitute(node.elt, mapping)))
                return
            first, rest = generators[0], generators[1:]
            for binding in _iterations(first.target, substitute(first.iter, mapping)):
                scope = mapping | binding
                conditions.extend(substitute(c, scope) for c in first.ifs)
                walk(rest, scope)
                del conditions[len(conditions) - len(first.ifs) :]
                if len(rows) > MAX_UNROLL:
                    raise Unverifiable(f"a comprehension of more than {MAX_UNROLL} iterations around a hole")

        conditions: list[ast.expr] = []
        walk(node.generators, {})
        kind = {ast.ListComp: "list", ast.SetComp: "set", ast.GeneratorExp: "iter", ast.DictComp: "dict"}[type(node)]
        items = []
        for conds, value in rows:
            known = [constant(c) for c in conds]  # conditions the judge settles now need no sandbox work
            if any(k is not _NOT_CONSTANT and not k for k in known):
                continue
            conds = [c for c, k in zip(conds, known) if k is _NOT_CONSTANT]
            split_value = (
                tuple(self.split(v, bound) for v in value) if isinstance(value, tuple) else self.split(value, bound)
            )
            items.append(([self.split(c, bound) for c in conds], split_value))
        return UnrolledComprehension(kind, items)


def _math(name: str) -> ast.expr:
    return ast.Attribute(ast.Name("math", ast.Load()), name, ast.Load())


def _judged_attribute(node: ast.Attribute, bound: frozenset[str]) -> bool:
    """``math.pi``, ``math.isclose``, ``str.lower``: attributes the judge resolves itself."""
    if not isinstance(node.value, ast.Name) or node.value.id in bound:
        return False
    if node.value.id == "math":
        return node.attr in MATH
    owner = SAFE_FUNCTIONS.get(node.value.id)
    return owner in SAFE_METHODS and node.attr in SAFE_METHODS[owner]  # type: ignore[operator]


def _read_names(node: ast.expr) -> set[str]:
    """Names an expression reads as values, not counting those only passed as call arguments."""
    names, todo = set(), [node]
    while todo:
        current = todo.pop()
        if isinstance(current, ast.Name):
            names.add(current.id)
        elif isinstance(current, ast.Call):
            todo.append(current.func)
        else:
            todo.extend(n for n in ast.iter_child_nodes(current) if isinstance(n, ast.expr))
    return names


def _is_plain(value: object) -> bool:
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes, complex):
        return True
    if kind is dict:
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())  # type: ignore[attr-defined]
    return kind in (list, tuple, set, frozenset) and all(_is_plain(v) for v in value)  # type: ignore[attr-defined]


_JUDGED = (
    ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Starred, ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp,
    ast.Slice, ast.JoinedStr, ast.FormattedValue,
)  # fmt: skip


class UnrolledComprehension(ast.expr):
    """An unrolled comprehension: ``items`` are (conditions, element) per iteration; the judge keeps
    the elements whose conditions hold, lazily for a generator (``kind`` "iter")."""

    _fields = ("kind", "items")

    def __init__(self, kind: str, items: list) -> None:
        super().__init__()
        self.kind, self.items = kind, items


_NOT_CONSTANT = object()


def constant(node: ast.expr) -> object:
    """The value of ``node`` when the judge can compute it without the sandbox (literals, safe
    builtins, math, comprehensions over those), else _NOT_CONSTANT."""
    try:
        return _Judge(()).value(node, {})
    except Exception:  # noqa: BLE001 - _Refused, or anything the judge cannot compute
        return _NOT_CONSTANT


def _iterations(target: ast.expr, iterable: ast.expr) -> list[dict[str, ast.expr]]:
    """One name -> literal mapping per iteration of ``for target in iterable`` (judge-computed)."""
    values = constant(iterable)
    if values is _NOT_CONSTANT:
        raise Unverifiable("a loop over a value computed in the sandbox")
    try:
        values = list(_bounded(values, MAX_UNROLL + 1))
    except TypeError as exc:
        raise Unverifiable(f"a loop over a value that is not iterable ({exc})") from None
    if len(values) > MAX_UNROLL:
        raise Unverifiable(f"a loop of more than {MAX_UNROLL} iterations around asserts")
    out = []
    for value in values:
        binding: dict[str, ast.expr] = {}
        _bind(target, value, binding)
        out.append(binding)
    return out


def _bounded(values: object, limit: int) -> Iterator:
    for i, value in enumerate(values):  # type: ignore[call-overload]
        if i >= limit:
            return
        yield value


def _bind(target: ast.expr, value: object, out: dict[str, ast.expr]) -> None:
    if isinstance(target, ast.Name):
        if not _is_plain(value):
            raise Unverifiable(f"a loop over values of type {type(value).__name__}")
        out[target.id] = literal(value)
    elif isinstance(target, (ast.Tuple, ast.List)):
        items = list(value)  # type: ignore[call-overload]
        if len(items) != len(target.elts):
            raise Unverifiable("a loop whose values do not unpack into its target")
        for t, v in zip(target.elts, items):
            _bind(t, v, out)
    else:
        raise Unverifiable("a loop target other than names")


# --- the judge -----------------------------------------------------------------------------------


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
                out.extend(_bounded(self.value(node.value, scope), MAX_ITEMS))
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
            for item in _bounded(self.value(first.iter, inner), MAX_ITEMS):
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
    items = list(_bounded(value, MAX_ITEMS))
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
        parts = list(_bounded(args[0], MAX_ITEMS + 1)) if args else []
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
