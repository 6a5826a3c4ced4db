"""Shares and whole items: a mixture's weights normalised, and a step's whole prompts or
demonstrations split by fractional shares so that the mixture is met over time (``Credit``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def normalise(w: Mapping[str, float]) -> dict[str, float]:
    """Weights scaled to sum to 1 (uniform when they sum to 0)."""
    total = sum(w.values())
    return {k: v / total for k, v in w.items()} if total > 0 else {k: 1 / len(w) for k in w}


class Credit:
    """Whole items per domain, step after step, so that the mixture is met over time (deficit counters).

    A step's share of a domain, ``weight * total``, is rarely whole: rounded afresh each step, 8
    prompts over 6 equal domains would give the same two domains 2 and the rest 1 forever, and a
    2% floor (0.16 of a prompt) would round to 0 forever. Instead each domain keeps ``credit[d]``,
    its shares so far minus the items it got. Each step, over the domains with weight > 0,
    ``want[d] = credit[d] + weight[d] * total``; each gets ``floor(want[d])`` (at least 0), the
    items left go one each to the largest ``want[d] - given[d]`` (ties: ``names`` order), and
    ``credit[d] = want[d] - given[d]``. The step's total is exact and each credit stays within an
    item of 0 (a little more just after domains drop out and return), so over any window a
    domain's count differs from the sum of its per-step shares by less than about 2, for fixed and
    time-varying mixtures alike (a 2% domain of 8 prompts gets its first within 7 steps).
    Deterministic: the credit is the whole state (``state_dict``), so a resumed run allocates as an
    uninterrupted one.

    A domain with weight 0 gets nothing and its credit is left as it was: its share that step is 0,
    so no debt or credit builds up while it is out, and it returns with the remainder (about an
    item at most) it left with, which cannot make a burst. Resetting that remainder instead would
    forgive it, and keeping the total exact would push it onto the other domains; every change of
    mixture would then shift counts by up to an item, a drift that grows with the changes.
    Kept, every domain's count is always the sum of its shares minus its credit.
    """

    def __init__(self, credit: Mapping[str, float] | None = None) -> None:
        self.credit: dict[str, float] = dict(credit or {})

    def allocate(self, mixture: Mapping[str, float], total: int, names: Sequence[str] | None = None) -> dict[str, int]:
        """Split ``total`` items over ``names`` (default: the mixture's) by weight (normalised over
        the positive ones) and update the credit; every name is in the answer, 0 if its weight is 0."""
        names = list(names or mixture)
        weight = {n: mixture.get(n, 0.0) for n in names if mixture.get(n, 0.0) > 0}
        if not weight:
            return dict.fromkeys(names, 0)
        norm = sum(weight.values())
        want = {n: self.credit.get(n, 0.0) + w / norm * total for n, w in weight.items()}
        given = {n: max(0, math.floor(v)) for n, v in want.items()}
        order = {n: i for i, n in enumerate(names)}

        def owed(n: str) -> float:  # rounded, so that equal shares tie (then names order decides)
            return round(want[n] - given[n], 9)

        while (left := total - sum(given.values())) > 0:  # one pass, unless credits are far below 0
            for n in sorted(weight, key=lambda n: (-owed(n), order[n]))[:left]:
                given[n] += 1
        for _ in range(-left):  # the floors overshoot (credits below 0 elsewhere): the least owed give back
            n = min((n for n in weight if given[n] > 0), key=lambda n: (owed(n), -order[n]))
            given[n] -= 1
        self.credit.update({n: want[n] - given[n] for n in weight})
        return {n: given.get(n, 0) for n in names}

    def state_dict(self) -> dict[str, float]:
        return dict(self.credit)

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.credit = {n: float(c) for n, c in state.items()}


def allocate(mixture: Mapping[str, float], total: int, names: Sequence[str] | None = None) -> dict[str, int]:
    """One step's split of ``total`` items by weight, with no credit carried in or out: largest
    remainder, deterministic. Across steps use a ``Credit``, which meets the mixture over time."""
    return Credit().allocate(mixture, total, names)
