"""Text-overlap components: chrF similarity to a reference, and group novelty (distinct-n)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from spectrum_rl.rewards.base import REWARDS, RewardComponent, RewardSpec
from spectrum_rl.rewards.text import answer_text, references
from spectrum_rl.sources.base import Example


@REWARDS.register("similarity")
class SimilaritySpec(RewardSpec):
    """`similarity`: chrF between the answer and the reference(s), in [0, 1]."""

    field: str = Field("answer", description="Row field holding the reference: a string or a list of strings.")
    extract: bool = Field(True, description="Score the extracted answer instead of the whole completion.")

    def build(self, base_dir: Path) -> RewardComponent:
        return Similarity(self)


class Similarity(RewardComponent):
    """Character n-gram F-score, chrF (Popović, 2015), as computed by sacrebleu's ``sentence_chrf``."""

    spec: SimilaritySpec

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        from sacrebleu import sentence_chrf

        refs = references(example, self.spec.field)
        return [sentence_chrf(answer_text(c, self.spec.extract), refs).score / 100 for c in completions]


@REWARDS.register("diversity")
class DiversitySpec(RewardSpec):
    """`diversity`: per completion, the fraction of its distinct n-grams no other completion of the
    group contains."""

    n: int = Field(2, ge=1, description="n-gram order.")
    unit: Literal["word", "char"] = Field("word", description="n-grams over words or over characters.")

    def build(self, base_dir: Path) -> RewardComponent:
        return Diversity(self)


class Diversity(RewardComponent):
    """Group novelty built on distinct-n (Li et al., 2016, "A Diversity-Promoting Objective Function
    for Neural Conversation Models"): the share of a completion's distinct n-grams that appear in no
    other completion of its group. Identical completions score 0, disjoint ones 1, an empty one 0,
    and a lone completion 1. Text is lowercased with whitespace collapsed; a text shorter than n
    units counts as one n-gram of its own length.
    """

    spec: DiversitySpec

    def _ngrams(self, text: str) -> set[tuple[str, ...]]:
        text = " ".join(text.lower().split())
        units = list(text) if self.spec.unit == "char" else text.split()
        n = min(self.spec.n, len(units))
        return {tuple(units[i : i + n]) for i in range(len(units) - n + 1)} if units else set()

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        grams = [self._ngrams(c) for c in completions]
        counts = Counter(g for gs in grams for g in gs)
        return [sum(counts[g] == 1 for g in gs) / len(gs) if gs else 0.0 for gs in grams]
