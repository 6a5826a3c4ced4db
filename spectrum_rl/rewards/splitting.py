"""The trusted judge of code tests: what the sandbox computes, and what only this process decides.

A test ``assert add(2, 3) == 5`` is split into a *hole*, ``add(2, 3)``, that the sandboxed code
evaluates, and a *judgement*, ``<hole> == 5``, that this process evaluates over the hole's value
(:mod:`spectrum_rl.rewards.judgement`). Values come back as plain data (None, bool, int, float,
str, bytes, complex, and lists, tuples, sets, frozensets and dicts of them; iterators the code
returns arrive consumed; :mod:`spectrum_rl.rewards.values`). So:

- the sandbox never sees the expected value ``5``;
- no object the code defined is ever compared: an ``add`` returning an object whose ``__eq__`` is
  always true fails, because such an object is not plain data;
- a code that tampers with the runner can only lie about *its own* values, which it cannot fit to
  expected values it never sees.

This module does the splitting. What the judge evaluates itself (operators, safe builtins,
``math``, methods of plain values, comprehensions) is listed in
:mod:`~spectrum_rl.rewards.judgement`; everything else is a hole: a call of the solution's
functions, an attribute, a name the solution defined.

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
be read. Write such tests with the call in the assert (``assert f(3) == 9``) or as I/O tests
(:func:`~spectrum_rl.rewards.judgement.same_output`).
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from spectrum_rl.rewards.judgement import (
    MATH,
    METHOD_NAMES,
    NOT_CONSTANT,
    SAFE_FUNCTIONS,
    SAFE_METHODS,
    UnrolledComprehension,
    bounded,
    constant,
    hole_name,
)

MAX_UNROLL = 1000  # iterations of an unrolled loop or comprehension


class Unverifiable(Exception):
    """The judge cannot split this test soundly; the message says why."""


class _NeedsUnroll(Exception):
    """A hole would depend on a comprehension's variable: unroll the comprehension."""


@dataclass(frozen=True)
class SplitTest:
    """One test, split. ``steps`` go to the sandbox in order (``("exec", statements)`` or
    ``("eval", expression)``); ``asserts`` are judgements whose holes name the eval steps they take
    their values from. ``unverifiable`` is the reason the test cannot be judged ("" when it can)."""

    steps: tuple[tuple[str, str], ...] = ()
    asserts: tuple[ast.expr, ...] = ()
    unverifiable: str = ""


@lru_cache(maxsize=4096)
def split_test(test: str) -> SplitTest:
    """Split one assert-style test (Python source) into sandbox steps and judgements."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return SplitTest(unverifiable=f"the test does not parse ({type(exc).__name__})")
    splitter = _Splitter()
    try:
        splitter.statements(tree.body)
        if not splitter.asserts:
            raise Unverifiable("the test has no assert the judge can check")
    except Unverifiable as exc:
        return SplitTest(unverifiable=str(exc))
    except RecursionError:
        return SplitTest(unverifiable="the test is nested too deeply")
    return SplitTest(tuple(splitter.steps), tuple(splitter.asserts))


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


class _Splitter:
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
            if value is not NOT_CONSTANT and _is_plain(value):
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
                return hole_name(index)
        self.steps.append(("eval", source))
        return hole_name(len(self.steps) - 1)

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
        elif isinstance(func, ast.Attribute) and func.attr in METHOD_NAMES:
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
            if any(k is not NOT_CONSTANT and not k for k in known):
                continue
            conds = [c for c, k in zip(conds, known) if k is NOT_CONSTANT]
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


def _iterations(target: ast.expr, iterable: ast.expr) -> list[dict[str, ast.expr]]:
    """One name -> literal mapping per iteration of ``for target in iterable`` (judge-computed)."""
    values = constant(iterable)
    if values is NOT_CONSTANT:
        raise Unverifiable("a loop over a value computed in the sandbox")
    try:
        values = list(bounded(values, MAX_UNROLL + 1))
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
