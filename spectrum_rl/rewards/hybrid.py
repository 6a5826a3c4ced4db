"""A domain's reward: the weighted sum of its components, with a per-component error policy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spectrum_rl.errors import ConfigError, RewardError
from spectrum_rl.rewards.base import RewardComponent, Scores
from spectrum_rl.rewards.specs import RewardComponentSpec
from spectrum_rl.rewards.text import error_summary
from spectrum_rl.rewards.timeout import call_with_timeout
from spectrum_rl.sources.base import Example


@dataclass
class RewardResult:
    """Scores of one group of G completions.

    total: weighted sum of the component scores, shape [G] (0 where ``valid`` is False).
    parts: each component's unweighted scores by log name, shape [G] (0 where a score failed).
    valid: False for samples dropped by an ``on_error: skip`` component.
    errors: number of failed samples per component name (0 when none).
    """

    total: np.ndarray
    parts: dict[str, np.ndarray]
    valid: np.ndarray
    errors: dict[str, int]


def _unique_names(names: Sequence[str]) -> list[str]:
    """Names for logs: repeated names get ``_1``, ``_2``... (skipping names already taken)."""
    counts, taken, next_index = Counter(names), set(names), Counter()
    out = []
    for name in names:
        if counts[name] > 1:
            next_index[name] += 1
            while f"{name}_{next_index[name]}" in taken:
                next_index[name] += 1
            name = f"{name}_{next_index[name]}"
            taken.add(name)
        out.append(name)
    return out


def _as_scores(values: Sequence[float], g: int) -> np.ndarray:
    """Check that a component returned ``g`` real numbers; return them as float64."""
    array = np.asarray(values)
    if array.shape != (g,):
        raise ValueError(f"returned shape {array.shape}, expected ({g},): one score per completion")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"returned non-numeric scores (dtype {array.dtype})")
    return array.astype(np.float64)


class HybridReward:
    """Σ_k weight_k · score_k over a domain's components.

    A component fails on a sample when it raises or overruns ``timeout_s`` (all samples fail),
    returns the wrong number of scores or non-numbers (all samples), or returns NaN/inf (that
    sample). Its ``on_error`` then
    decides: ``fail`` raises RewardError, ``zero`` scores the sample 0, ``skip`` marks it invalid.
    A ConfigError (e.g. a model that cannot be loaded) always propagates. Samples a component reports
    as crashed (:class:`~spectrum_rl.rewards.base.Scores`) score 0 and are counted as errors, whatever
    ``on_error`` says.
    """

    def __init__(self, domain: str, components: Sequence[RewardComponent]) -> None:
        self.domain = domain
        self.components = list(components)
        self.names = _unique_names([c.name for c in self.components])

    @property
    def primary(self) -> str:
        """The component with the largest weight (the first listed on ties): the task's own
        measure, e.g. exact match, beside shaping terms such as format or length. Held-out scores
        use it alone, so they read as a rate in [0, 1] and average like with like across domains."""
        weights = [c.spec.weight for c in self.components]
        return self.names[weights.index(max(weights))]

    def describe(self) -> str:
        """A one-line summary such as ``1*exact_match + 0.2*format``."""
        return " + ".join(f"{c.spec.weight:g}*{name}" for name, c in zip(self.names, self.components))

    def prefetch(self, groups: Sequence[tuple[Sequence[str], Example]]) -> None:
        """Hand a step's groups to the components that score remotely (they send them concurrently)."""
        for component in self.components:
            component.prefetch(groups)

    def events(self) -> dict[str, int]:
        """``<component>/<class>`` -> count of each component's own failure classes since the last call."""
        return {f"{name}/{kind}": n for name, c in zip(self.names, self.components) for kind, n in c.events().items()}

    def score(self, completions: Sequence[str], example: Example) -> RewardResult:
        """Score one group of completions of ``example``."""
        g = len(completions)
        total, valid = np.zeros(g), np.ones(g, dtype=bool)
        parts, errors = {}, {}
        for name, component in zip(self.names, self.components):
            scores, failed, crashed, sample, reason = self._run(component, completions, example)
            if failed.any() and component.spec.on_error == "fail":
                raise RewardError(self.domain, name, sample, reason)
            if component.spec.on_error == "skip":
                valid &= ~failed
            scores[failed] = 0.0
            parts[name], errors[name] = scores, int((failed | crashed).sum())
            total += component.spec.weight * scores
        total[~valid] = 0.0
        return RewardResult(total=total, parts=parts, valid=valid, errors=errors)

    @staticmethod
    def _run(
        component: RewardComponent, completions: Sequence[str], example: Example
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, str]:
        """(scores, failed mask, crashed mask (see Scores), first failed sample or -1 for all, reason)."""
        g = len(completions)
        crashed = np.zeros(g, dtype=bool)
        try:
            scored = call_with_timeout(lambda: component.score(completions, example), component.spec.timeout_s)
            if isinstance(scored, Scores):
                crashed = np.asarray(scored.crashed, dtype=bool).reshape(g)
                scored = scored.values
            scores = _as_scores(scored, g)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code and models may raise anything
            return (
                np.zeros(g),
                np.ones(g, dtype=bool),
                np.zeros(g, dtype=bool),
                -1,
                f"all samples: {error_summary(exc)}",
            )
        scores[crashed] = 0.0
        failed = ~np.isfinite(scores)
        if not failed.any():
            return scores, failed, crashed, -1, ""
        sample = int(np.argmax(failed))
        return scores, failed, crashed, sample, f"returned {scores[sample]}"


def build_hybrid(domain: str, specs: Sequence[RewardComponentSpec], base_dir: Path) -> HybridReward:
    """Build each component spec; ConfigErrors are nested under ``reward[j].``."""
    components = []
    for j, spec in enumerate(specs):
        try:
            components.append(spec.build(base_dir))
        except ConfigError as err:
            raise err.under(f"reward[{j}].") from None
    return HybridReward(domain, components)
