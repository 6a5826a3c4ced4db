"""Best training order of domains from a probed transfer matrix, under hard prerequisites.

``T[i, j]`` is the normalised change of domain j's held-out score after a short probe of training
on domain i alone (positive = i helps j). Training in order pi earns, for every ordered pair
(a before b), the pairwise weight

    w[a, b] = T[b, a] + forward_weight * T[a, b]
              + kind_bonus * [kind(a) = structured and kind(b) = creative]

i.e. backward transfer (training the later b afterwards helps or hurts the earlier a), forward
transfer (the earlier a helps the later b), and the Omni-Thinker prior "structured before
creative" (arXiv:2507.14783, C4 in docs/design.md) as a small tie-breaker. The objective
``score(pi) = sum_{a before b} w[a, b]`` is a linear-ordering problem (NP-hard in general), so:

- D <= exact_limit: exact dynamic programming over subsets (Held-Karp, 1962). With S the set
  already trained, ``g(S) = max_{k not in S, prereq(k) in S} G[S, k] + g(S + {k})``, ``g(all) = 0``,
  where ``G[S, k] = sum_{i in S} w[i, k]``. O(2^D D) time and memory.
- otherwise: two constructions (greedy insertion in topological order; greedy front by net
  preference), each improved by local search over moves of one domain (adjacent swaps
  included) that carry along the domains that must stay on its side, until no move improves;
  the better order wins. Prerequisites hold throughout.

A uniformly random order earns each pair in one of its two orientations with probability 1/2, so
joint (unordered) training is scored ``0.5 * sum_{a != b} w[a, b]``; the predicted gain of the
order is ``score - joint_score``. For a fixed order that gain is affine in T (the kind prior is
its constant), ``gain = sum_{i, j} c[i, j] T[i, j] + gain(T = 0)``, which is what carries the
standard errors of T into the gain's (`OrderResult.gain_coefficients`).

Only the antisymmetric part ``w[a, b] - w[b, a] = (1 - forward_weight) (T[b, a] - T[a, b]) +
kind terms`` depends on the order. With ``forward_weight = 1`` the transfer part vanishes (under
additive transfer every order ends at the same scores; BWT + FWT is order-invariant) and only
prerequisites and the kind prior shape the order; ``forward_weight < 1`` discounts forward
transfer (the later domain is trained to its own level anyway) and favours orders that protect
earlier domains from forgetting. The default 0.5 counts forward transfer at half weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from spectrum_rl.errors import ConfigError, did_you_mean
from spectrum_rl.scheduler.graph import find_cycle, prerequisite_graph

_TIE_TOL = 1e-9  # scores within this (times the scale of w) count as ties
_CITED = 2  # transfers cited per domain in its explanation (then how many more)


@dataclass(frozen=True)
class OrderResult:
    """order: domain names in training order; score: objective of that order; exact: found by
    the subset DP (else heuristic); joint_score: expected score of a random order (the
    predicted gain over joint training is ``score - joint_score``); explanations: one line per
    domain saying why it sits where it does; gain_coefficients: ``c`` [D, D] in ``names`` order
    with ``score - joint_score = sum_{i, j} c[i, j] T[i, j] + gain(T = 0)`` for every T and this
    order (`gain_coefficients`)."""

    order: list[str]
    score: float
    exact: bool
    joint_score: float
    explanations: dict[str, str]
    gain_coefficients: np.ndarray


def pairwise_weights(
    T: np.ndarray, kinds_list: Sequence[str], forward_weight: float = 0.5, kind_bonus: float = 0.01
) -> np.ndarray:
    """``w[a, b] = T[b, a] + forward_weight * T[a, b] + kind_bonus * [a structured, b creative]``,
    zero diagonal: the value of training a before b (backward + forward transfer + Omni-Thinker
    prior, arXiv:2507.14783)."""
    T = np.asarray(T, dtype=float)
    structured = np.array([k == "structured" for k in kinds_list])
    creative = np.array([k == "creative" for k in kinds_list])
    w = T.T + forward_weight * T + kind_bonus * np.outer(structured, creative)
    np.fill_diagonal(w, 0.0)
    return w


def order_score(order: Sequence[int], w: np.ndarray) -> float:
    """``sum_{p < q} w[order[p], order[q]]``: the value of training in this order."""
    idx = np.asarray(order, dtype=int)
    return float(np.triu(w[np.ix_(idx, idx)], 1).sum())


def gain_coefficients(order: Sequence[int], forward_weight: float = 0.5) -> np.ndarray:
    """``c = g^T + forward_weight * g`` (zero diagonal), ``g[a, b] = [a before b] - 1/2`` for
    ``a != b``: the gain ``order_score(order, w) - 0.5 * sum w = sum_{a, b} g[a, b] w[a, b]`` of a
    fixed order is linear in w, and w is ``L(T) + prior`` with ``L(T) = T^T + forward_weight * T``,
    so ``gain = <g, L(T)> + gain(T = 0) = <L(g), T> + gain(T = 0)`` (L is its own adjoint):
    ``c = L(g)``, which is `pairwise_weights` of g without the kind prior."""
    position = np.argsort(np.asarray(order, dtype=int))
    g = (position[:, None] < position[None, :]) - 0.5
    return pairwise_weights(g, [""] * len(g), forward_weight, kind_bonus=0.0)


def significant_transfer(T: np.ndarray, stderr: np.ndarray) -> np.ndarray:
    """``T[i, j] if |T[i, j]| >= 2 stderr[i, j] else 0``: only the transfers the data determine
    (beyond two standard errors of 0) are used; the rest count as none."""
    T = np.asarray(T, dtype=float)
    return np.where(np.abs(T) >= 2 * np.asarray(stderr, dtype=float), T, 0.0)


def best_order(
    names: list[str],
    T: np.ndarray,
    kinds: Mapping[str, str],
    prerequisites: Mapping[str, Sequence[str]],
    *,
    stderr: np.ndarray | None = None,
    forward_weight: float = 0.5,
    kind_bonus: float = 0.01,
    exact_limit: int = 16,
) -> OrderResult:
    """The order of ``names`` maximising ``sum_{a before b} w[a, b]`` (see module docstring)
    subject to every domain coming after its prerequisites. Exact (subset DP) for
    ``len(names) <= exact_limit``, else greedy insertion + local search. Exact ties go to the
    lexicographically smallest order of indices. Domains missing from ``kinds`` get no kind bonus.
    ``stderr``: the standard errors of T, cited beside each transfer in the explanations (T is
    used as given: filter it first, `significant_transfer`).

    Raises ConfigError (field ``tasks``) for unknown prerequisite names or a prerequisite cycle.
    """
    D = len(names)
    T = np.asarray(T, dtype=float)
    if T.shape != (D, D):
        raise ValueError(f"transfer matrix has shape {T.shape}, expected ({D}, {D})")
    pre = _prerequisite_masks(names, prerequisites)
    kinds_list = [kinds.get(n, "") for n in names]
    w = pairwise_weights(T, kinds_list, forward_weight, kind_bonus)
    exact = D <= exact_limit
    idx = _exact_order(w, pre) if exact else _heuristic_order(w, pre)
    return OrderResult(
        order=[names[i] for i in idx],
        score=order_score(idx, w),
        exact=exact,
        joint_score=0.5 * float(w.sum()),
        explanations=_explain(idx, names, kinds_list, T, stderr, pre, forward_weight),
        gain_coefficients=gain_coefficients(idx, forward_weight),
    )


def _prerequisite_masks(names: list[str], prerequisites: Mapping[str, Sequence[str]]) -> list[int]:
    """Bitmask of each domain's prerequisites (bit i = names[i]); ConfigError if invalid."""
    index = {n: i for i, n in enumerate(names)}
    for domain, prereqs in prerequisites.items():
        for name in [domain, *prereqs]:
            if name not in index:
                raise ConfigError(
                    f"unknown domain '{name}' in the prerequisites of '{domain}'" + did_you_mean(name, names),
                    field="domains",
                )
    cycle = find_cycle(prerequisites)
    if cycle:
        raise ConfigError("prerequisite cycle: " + " -> ".join([*cycle, cycle[0]]), field="domains")
    masks = [0] * len(names)
    for domain, prereqs in prerequisites.items():
        for p in prereqs:
            masks[index[domain]] |= 1 << index[p]
    return masks


def _exact_order(w: np.ndarray, pre: list[int]) -> list[int]:
    """Held-Karp DP over subsets, vectorised per popcount layer, from the full set down."""
    D = len(w)
    n = 1 << D
    G = np.zeros((n, D))  # G[S, k] = sum_{i in S} w[i, k]
    for b in range(D):  # subsets with top bit b = subsets below + b
        G[1 << b : 2 << b] = G[: 1 << b] + w[b]
    subsets = np.arange(n)
    popcount = np.zeros(n, dtype=np.int64)
    for b in range(D):
        popcount += (subsets >> b) & 1
    bits = 1 << np.arange(D)
    pre = np.asarray(pre, dtype=np.int64)
    tol = _TIE_TOL * max(1.0, float(np.abs(w).sum()))
    g = np.zeros(n)
    choice = np.zeros(n, dtype=np.int64)  # smallest k attaining g(S) (within tol)
    for c in range(D - 1, -1, -1):
        S = subsets[popcount == c][:, None]  # [n_c, 1]
        allowed = ((S & bits) == 0) & ((S & pre) == pre)
        cand = np.where(allowed, G[S[:, 0]] + g[S | bits], -np.inf)
        best = cand.max(axis=1)
        g[S[:, 0]] = best
        choice[S[:, 0]] = np.argmax(cand >= (best - tol)[:, None], axis=1)
    order, S = [], 0
    for _ in range(D):
        k = int(choice[S])
        order.append(k)
        S |= 1 << k
    return order


def _heuristic_order(w: np.ndarray, pre: list[int]) -> list[int]:
    """Local search from two constructions (greedy insertion, greedy front); the better wins."""
    starts = (_greedy_insertion(w, pre), _greedy_front(w, pre))
    return max((_local_search(o, w, pre) for o in starts), key=lambda o: order_score(o, w))


def _greedy_front(w: np.ndarray, pre: list[int]) -> list[int]:
    """Build the order front to back, each time taking the ready domain (prerequisites placed)
    with the largest net preference ``sum_{j unplaced} (w[k, j] - w[j, k])``."""
    d = w - w.T
    order: list[int] = []
    placed = 0
    for _ in range(len(w)):
        rest = [j for j in range(len(w)) if not placed >> j & 1]
        ready = [k for k in rest if pre[k] & ~placed == 0]
        k = max(ready, key=lambda k: d[k, rest].sum())
        order.append(k)
        placed |= 1 << k
    return order


def _greedy_insertion(w: np.ndarray, pre: list[int]) -> list[int]:
    """Insert domains in topological order, each at its best slot after its prerequisites:
    inserting k at slot p of o gains ``sum_{r < p} w[o_r, k] + sum_{r >= p} w[k, o_r]``."""
    graph = prerequisite_graph({k: [i for i in range(len(w)) if pre[k] >> i & 1] for k in range(len(w))})
    order: list[int] = []
    for k in nx.lexicographical_topological_sort(graph):
        first = 1 + max((r for r, i in enumerate(order) if pre[k] >> i & 1), default=-1)
        before = np.concatenate([[0.0], np.cumsum(w[order, k])])  # slot p: sum_{r<p}
        after = np.concatenate([np.cumsum(w[k, order][::-1])[::-1], [0.0]])  # slot p: sum_{r>=p}
        gain = (before + after)[first:]
        order.insert(first + int(np.argmax(gain)), k)
    return order


def _local_search(order: list[int], w: np.ndarray, pre: list[int]) -> list[int]:
    """Best-improvement local search until no move gains. A move takes the domain x at p to slot
    q and carries along the domains in between that must stay on its side (its prerequisites
    when moving earlier, its dependents when moving later), keeping every relative order inside
    each group, so prerequisites always hold. With ``d = w - w^T``, each domain y passed over
    changes the score by ``sum_{m carried} d[m, y]`` (moving earlier) or ``d[y, m]`` (later)."""
    d = w - w.T
    tol = _TIE_TOL * max(1.0, float(np.abs(w).sum()))
    while True:
        best_delta, best_move = tol, None
        for p, x in enumerate(order):
            for step in (-1, 1):
                carried, mask, delta = [x], pre[x] if step < 0 else 1 << x, 0.0
                for q in range(p + step, -1 if step < 0 else len(order), step):
                    y = order[q]
                    if (mask >> y & 1) if step < 0 else (pre[y] & mask):
                        carried.append(y)
                        mask |= pre[y] if step < 0 else 1 << y
                        continue
                    delta -= step * d[carried, y].sum()
                    if delta > best_delta:
                        best_delta, best_move = delta, (p, q, set(carried))
        if best_move is None:
            return order
        p, q, carried = best_move
        lo, hi = min(p, q), max(p, q) + 1
        moving = [y for y in order[lo:hi] if y in carried]
        staying = [y for y in order[lo:hi] if y not in carried]
        order[lo:hi] = moving + staying if q < p else staying + moving


def _explain(
    order: list[int],
    names: list[str],
    kinds: list[str],
    T: np.ndarray,
    stderr: np.ndarray | None,
    pre: list[int],
    forward_weight: float,
) -> dict[str, str]:
    """One line per domain on why it sits where it does, citing only nonzero entries of T (the
    used ones), each with ``± 2 stderr`` when given. Training a before b rather than after it
    earns ``w[a, b] - w[b, a] = (1 - forward_weight) (T[b, a] - T[a, b]) + kind terms``, so an
    entry ``T[x, y]`` argues for x after y when ``(1 - forward_weight) T[x, y] > 0`` and for x
    before y when it is < 0. A domain's line names the domains it is a prerequisite of, then the
    entries involving it that argue for where it sits (largest first; ``_CITED`` of them, then how
    many more) and the largest that argues against it ("overruled": by prerequisites or by other
    pairs). With no entry arguing either way, its position is set by prerequisites and the kind
    prior (structured before creative) only, or, with neither, any position is as good."""
    position = {a: p for p, a in enumerate(order)}
    explanations = {}
    for p, a in enumerate(order):
        before, after = order[:p], order[p + 1 :]
        pros, cons = [], []
        for b in before + after:
            for x, y in ((a, b), (b, a)):
                side = (1.0 - forward_weight) * T[x, y] * (1 if position[x] > position[y] else -1)
                if side:
                    (pros if side > 0 else cons).append((-abs(T[x, y]), x, y))
        parts = [_cite(x, y, a, names, T, stderr) for _, x, y in sorted(pros)[:_CITED]]
        if len(pros) > _CITED:
            parts.append(f"and {len(pros) - _CITED} more")
        if cons:
            parts.append("overruled: " + _cite(*min(cons)[1:], a, names, T, stderr))
        if not parts:
            parts.append(_quiet(a, before, after, kinds, T, stderr, pre))
        dependents = [names[b] for b in after if pre[b] >> a & 1]
        if dependents:
            parts.insert(0, f"prerequisite of {', '.join(dependents)}")
        explanations[names[a]] = "; ".join(parts)
    return explanations


def _cite(x: int, y: int, a: int, names: list[str], T: np.ndarray, stderr: np.ndarray | None) -> str:
    """``T[x, y]`` as seen from domain a, e.g. "training it raises sorting by +0.31 ± 0.08 (2 SE)"."""
    subject = "training it" if x == a else f"training {names[x]}"
    target = "it" if y == a else names[y]
    spread = "" if stderr is None else f" ± {2 * stderr[x, y]:.2f} (2 SE)"
    return f"{subject} {'raises' if T[x, y] > 0 else 'lowers'} {target} by {T[x, y]:+.2f}{spread}"


def _quiet(
    a: int,
    before: list[int],
    after: list[int],
    kinds: list[str],
    T: np.ndarray,
    stderr: np.ndarray | None,
    pre: list[int],
) -> str:
    """The line of a domain no transfer places: what does (prerequisites, the kind prior) or nothing."""
    others = before + after
    if np.any(T[a, others]) or np.any(T[others, a]):
        why = "its transfer does not depend on the order"  # forward_weight = 1: only the sum counts
    else:
        why = "no transfer beyond 2 SE" if stderr is not None else "no transfer"
    setters = []
    if pre[a] or any(pre[b] >> a & 1 for b in after):
        setters.append("prerequisites")
    if (kinds[a] == "structured" and any(kinds[b] == "creative" for b in after)) or (
        kinds[a] == "creative" and any(kinds[i] == "structured" for i in before)
    ):
        setters.append("the kind prior (structured before creative)")
    if not setters:
        return f"{why}: any position is as good (ties keep the given order)"
    return f"{why}: position set by {' and '.join(setters)} only"
