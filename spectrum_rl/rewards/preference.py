"""A small learned preference model: Bradley–Terry over hashed character n-grams."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from pydantic import Field

from spectrum_rl.errors import ConfigError
from spectrum_rl.rewards.base import REWARDS, RewardComponent, RewardSpec
from spectrum_rl.rewards.text import answer_text
from spectrum_rl.sources.base import Example
from spectrum_rl.sources.builtin import GENERATORS, LETTERS

Pair = tuple[str, str]
BUILTIN_PAIRS_PER_GENERATOR = 150
BUILTIN_SEED = 0
INVERSE_REGULARIZATION = 10.0  # LogisticRegression's C; 1.0 fits the built-in pairs at only 88%


@REWARDS.register("preference_model")
class PreferenceModelSpec(RewardSpec):
    """`preference_model`: P(completion is preferred), from a Bradley–Terry model fit at build time."""

    pairs: str | None = Field(
        None,
        description="JSONL file of preference pairs, one object per line with "
        "`chosen` and `rejected` texts (an optional `prompt` is ignored: the scorer "
        "sees completions only); relative to the config file's folder. null = "
        "built-in pairs from the creative generators.",
    )
    features: int = Field(2**14, ge=16, le=2**24, description="Hashed feature dimension.")
    extract: bool = Field(True, description="Score the extracted answer instead of the whole completion.")

    def build(self, base_dir: Path) -> RewardComponent:
        if self.pairs is None:
            return PreferenceModel(self, _fit(None, 0, self.features))
        path = base_dir / Path(self.pairs).expanduser()
        if not path.is_file():
            raise ConfigError(f"pairs file not found: {path}", field="pairs")
        return PreferenceModel(self, _fit(str(path), path.stat().st_mtime_ns, self.features))


def _vectorizer(features: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer="char_wb", ngram_range=(1, 3), n_features=features, alternate_sign=False, norm="l2"
    )


@cache
def _fit(path: str | None, mtime_ns: int, features: int) -> tuple[np.ndarray, float]:
    """A Bradley–Terry model P(a > b) = sigmoid(w·(x_a - x_b)), fit by logistic regression without
    intercept on both orientations of every pair. Returns ``w`` and the mean strength w·x of the
    training texts (strengths are only defined up to a constant). Cached per file version."""
    from scipy.sparse import vstack
    from sklearn.linear_model import LogisticRegression

    pairs = builtin_pairs() if path is None else load_pairs(Path(path))
    vec = _vectorizer(features)
    chosen, rejected = (vec.transform(texts) for texts in zip(*pairs))
    diff = chosen - rejected
    y = np.r_[np.ones(len(pairs)), np.zeros(len(pairs))]
    model = LogisticRegression(fit_intercept=False, C=INVERSE_REGULARIZATION, max_iter=1000)
    weights = model.fit(vstack([diff, -diff]), y).coef_[0]
    return weights, float(np.mean(vstack([chosen, rejected]) @ weights))


def load_pairs(path: Path) -> list[Pair]:
    """(chosen, rejected) pairs from a JSONL file; ConfigError(field="pairs") naming the bad line."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: invalid JSON ({exc.msg})", field="pairs") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: expected an object with 'chosen' and 'rejected'", field="pairs")
        for key in ("chosen", "rejected"):
            if not isinstance(row.get(key), str):
                problem = "is missing" if key not in row else "must be a string"
                raise ConfigError(f"{path}:{number}: key '{key}' {problem}", field="pairs")
        pairs.append((row["chosen"], row["rejected"]))
    if not pairs:
        raise ConfigError(f"{path}: no preference pairs", field="pairs")
    return pairs


def builtin_pairs() -> list[Pair]:
    """Deterministic pairs from the built-in creative generators: chosen = the row's valid sample
    answer, rejected = the same answer corrupted (a repeated word, a wrong first letter, or the
    last word dropped), cycling through the corruptions."""

    def repeat(words: list[str], rng: random.Random) -> list[str]:
        i = rng.randrange(1, len(words))
        return words[:i] + [words[i - 1]] + words[i + 1 :]

    def wrong_initial(words: list[str], rng: random.Random) -> list[str]:
        i = rng.randrange(len(words))
        initial = rng.choice(LETTERS.replace(words[i][0], ""))
        return words[:i] + [initial + words[i][1:]] + words[i + 1 :]

    def truncate(words: list[str], rng: random.Random) -> list[str]:
        return words[:-1]

    rng = random.Random(BUILTIN_SEED)
    corruptions = (repeat, wrong_initial, truncate)
    pairs = []
    for gen in (g for _, g in GENERATORS.items() if g.kind == "creative"):
        for i in range(BUILTIN_PAIRS_PER_GENERATOR):
            words = gen.make(rng)["answer"].split()
            if len(words) > 1:
                pairs.append((" ".join(words), " ".join(corruptions[i % len(corruptions)](words, rng))))
    return pairs


class PreferenceModel(RewardComponent):
    """Reward = sigmoid(w·x(completion) - b): under the Bradley–Terry model (Bradley & Terry, 1952),
    the probability that the completion is preferred to a text of average strength b (the mean
    over the training texts). w is learned from preference pairs as in reward modelling for RLHF
    (Ouyang et al., 2022), here over hashed character 1–3-grams (word-bounded, l2-normalised)
    instead of a network. Without the centring by b every score would sit near 1, since features
    shared by all texts (spaces, common letters) take arbitrary weight.
    """

    spec: PreferenceModelSpec

    def __init__(self, spec: PreferenceModelSpec, fit: tuple[np.ndarray, float]) -> None:
        super().__init__(spec)
        self.weights, self.offset = fit
        self._vec = _vectorizer(spec.features)

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        x = self._vec.transform([answer_text(c, self.spec.extract) for c in completions])
        return (1.0 / (1.0 + np.exp(self.offset - x @ self.weights))).tolist()
