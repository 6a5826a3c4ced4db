"""Procedural task generators: seeded, unlimited, with integer difficulty knobs.

Every row has ``question`` (a short lowercase instruction), ``answer`` (the reference, or one
valid sample for creative generators) and ``expert``: the demonstration, a correct answer in the
built-in model's own answer format. The model was pretrained on answers of which 10% are wrong,
and never on ``first_letter``: there the demonstrations carry knowledge it lacks (it starts at ~0
and RL alone finds no reward to learn from), elsewhere they are clean labels. (A worked-steps
demonstration — ``plan:``/``step:`` lines before the answer — moves the answer away from the
question, and the 1.8M-parameter model, whose skills are tied to that position, loses them
and cannot relearn them within a study's budget; see docs/world.md.)

Structured generators have one correct answer; creative ones accept many and carry a JSON-able
``constraint`` spec that ``check_constraint`` scores.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from spectrum_rl.errors import ConfigError, did_you_mean
from spectrum_rl.registry import Registry
from spectrum_rl.sources.base import RowDict
from spectrum_rl.sources.words import WORDS

LETTERS = string.ascii_lowercase


@dataclass(frozen=True)
class Generator:
    """A named row generator. ``defaults`` are its difficulty knobs, ``bounds`` their ranges;
    ``pretrained``: whether the built-in model's pretraining corpus includes it."""

    name: str
    kind: Literal["structured", "creative"]
    defaults: dict[str, int]
    bounds: dict[str, tuple[int, int]]
    build: Callable[..., RowDict]
    pretrained: bool = True

    def knobs(self, overrides: Mapping[str, Any]) -> dict[str, int]:
        """The defaults updated with ``overrides``, each checked against its range."""
        for key, value in overrides.items():
            field = f"source.difficulty.{key}"
            if key not in self.defaults:
                raise ConfigError(
                    f"unknown difficulty knob '{key}' for generator '{self.name}'"
                    f"{did_you_mean(key, self.defaults)}; valid knobs: "
                    f"{self.knob_help()}",
                    field=field,
                )
            lo, hi = self.bounds[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(
                    f"expected an integer in [{lo}, {hi}], found {value!r}; "
                    f"valid knobs for '{self.name}': {self.knob_help()}",
                    field=field,
                )
        return {**self.defaults, **overrides}

    def knob_help(self) -> str:
        """Each knob with its default and range, for messages and the reference."""
        return ", ".join(
            f"{k} (default {v}, range {self.bounds[k][0]}-{self.bounds[k][1]})" for k, v in self.defaults.items()
        )

    def make(self, rng: random.Random, **knobs: int) -> RowDict:
        """One row drawn from ``rng`` (same rng state and knobs give the same row)."""
        return self.build(rng, **self.knobs(knobs))


GENERATORS: Registry[Generator] = Registry("generator")
"""``source.generator`` name -> Generator. A new generator: one row function below with ``@generator``."""


def generator(
    name: str,
    kind: Literal["structured", "creative"],
    defaults: dict[str, int],
    bounds: dict[str, tuple[int, int]],
    *,
    pretrained: bool = True,
) -> Callable[[Callable[..., RowDict]], Generator]:
    """Decorator: register a row function ``(rng, **knobs) -> row`` as the generator ``name``."""

    def register(build: Callable[..., RowDict]) -> Generator:
        return GENERATORS.register(name)(Generator(name, kind, defaults, bounds, build, pretrained))

    return register


def _row(question: str, answer: str, **extra: Any) -> RowDict:
    return {"question": question, "answer": answer, "expert": answer, **extra}


@generator("addition", "structured", {"digits": 2}, {"digits": (1, 9)})
def _addition(rng: random.Random, digits: int) -> RowDict:
    a, b = (rng.randint(10 ** (digits - 1), 10**digits - 1) for _ in range(2))
    return _row(f"add: {a}+{b}", str(a + b))


@generator("sorting", "structured", {"length": 4}, {"length": (2, 26)})
def _sorting(rng: random.Random, length: int) -> RowDict:
    letters = "".join(rng.sample(LETTERS, length))
    return _row(f"sort: {letters}", "".join(sorted(letters)))


@generator("reversal", "structured", {"length": 4}, {"length": (2, 26)})
def _reversal(rng: random.Random, length: int) -> RowDict:
    letters = "".join(rng.choices(LETTERS, k=length))
    return _row(f"reverse: {letters}", letters[::-1])


def _letters(rng: random.Random, length: int, distinct: int) -> str:
    """``length`` random letters; with ``distinct``, none repeated. With repeats, 1 row in 26 has the
    asked letter's neighbour equal to it, so a model that answers the neighbour is right there: a
    floor of about 0.04 under the score of a rung it has not learned (docs/world.md)."""
    return "".join(rng.sample(LETTERS, length) if distinct else rng.choices(LETTERS, k=length))


LETTER_KNOBS = {"length": 4, "distinct": 0}, {"length": (1, 26), "distinct": (0, 1)}


# Not in the built-in model's pretraining corpus: it starts at ~0 and RL alone finds no
# reward to learn from, while its expert demonstrations teach it (claim C1's setting).
@generator("first_letter", "structured", *LETTER_KNOBS, pretrained=False)
def _first_letter(rng: random.Random, length: int, distinct: int) -> RowDict:
    letters = _letters(rng, length, distinct)
    return _row(f"first letter: {letters}", letters[0])


@generator("last_letter", "structured", *LETTER_KNOBS, pretrained=False)
def _last_letter(rng: random.Random, length: int, distinct: int) -> RowDict:
    letters = _letters(rng, length, distinct)
    return _row(f"last letter: {letters}", letters[-1])


# The same skill as last_letter one position further from the end: its position relative to the
# answer is fixed whatever the length, so what is learned at one length can carry to the next.
@generator("penultimate", "structured", {"length": 4}, {"length": (2, 26)}, pretrained=False)
def _penultimate(rng: random.Random, length: int) -> RowDict:
    letters = "".join(rng.choices(LETTERS, k=length))
    return _row(f"second last letter: {letters}", letters[-2])


# Two skills at once (first and last letter): a guess must hit both, so a rung the model has not
# learned passes about the square of what one letter would.
@generator("ends", "structured", {"length": 5}, {"length": (2, 26)}, pretrained=False)
def _ends(rng: random.Random, length: int) -> RowDict:
    letters = "".join(rng.choices(LETTERS, k=length))
    return _row(f"ends: {letters}", letters[0] + letters[-1])


def moved(word: str, by: Callable[[int], int]) -> str:
    """``word`` with its j-th letter (from 1) moved on ``by(j)`` places in the alphabet, wrapping."""
    return "".join(LETTERS[(LETTERS.index(c) + by(j)) % len(LETTERS)] for j, c in enumerate(word, 1))


# A ladder whose rungs teach in order: each position has its own rule (move on by the position), so
# length k + 1 asks for everything length k does plus one rule more, and a rung is right only when
# every letter is: a rung above the one being learned gives no reward to learn from (docs/world.md).
@generator("shift", "structured", {"length": 3}, {"length": (1, 26)}, pretrained=False)
def _shift(rng: random.Random, length: int) -> RowDict:
    word = "".join(rng.sample(LETTERS, length))
    return _row(f"shift: {word}", moved(word, lambda j: j))


def _letters_with_count(rng: random.Random, length: int, count: int) -> str:
    if count > length:
        raise ConfigError(f"count {count} is more than the length {length}", field="source.difficulty.count")
    return "".join(rng.choices(LETTERS, k=length))


# Multi-letter answers: a guess is right far more rarely than one letter out of the input's few,
# so a rung the model has not learned passes well under 5% of the time (the curriculum world).
@generator("prefix", "structured", {"length": 5, "count": 2}, {"length": (1, 26), "count": (1, 26)}, pretrained=False)
def _prefix(rng: random.Random, length: int, count: int) -> RowDict:
    letters = _letters_with_count(rng, length, count)
    return _row(f"first {count} letters: {letters}", letters[:count])


@generator("suffix", "structured", {"length": 5, "count": 2}, {"length": (1, 26), "count": (1, 26)}, pretrained=False)
def _suffix(rng: random.Random, length: int, count: int) -> RowDict:
    letters = _letters_with_count(rng, length, count)
    return _row(f"last {count} letters: {letters}", letters[-count:])


@generator("counting", "structured", {"length": 6, "letters": 3}, {"length": (2, 30), "letters": (2, 26)})
def _counting(rng: random.Random, length: int, letters: int) -> RowDict:
    alphabet = LETTERS[:letters]
    text = "".join(rng.choices(alphabet, k=length))
    target = rng.choice(alphabet)
    return _row(f"count {target}: {text}", str(text.count(target)))


_BY_INITIAL = {c: words for c in LETTERS if (words := [w for w in WORDS if w[0] == c])}


@generator("acrostic", "creative", {"length": 3}, {"length": (2, 10)})
def _acrostic(rng: random.Random, length: int) -> RowDict:
    word = "".join(rng.choices(sorted(_BY_INITIAL), k=length))
    picks = [rng.choice(_BY_INITIAL[c]) for c in word]
    return _row(f"acrostic: {word}", " ".join(picks), constraint={"type": "acrostic", "word": word})


def _fits_letter_words(word: str, letter: str, banned: list[str]) -> bool:
    return letter in word and not any(b in word for b in banned)


# One banned letter by default: with a single required letter there are only ~25 prompts,
# too few to hold out an eval set and still train.
@generator("letter_words", "creative", {"count": 3, "banned": 1}, {"count": (1, 8), "banned": (0, 3)})
def _letter_words(rng: random.Random, count: int, banned: int) -> RowDict:
    for _ in range(100):
        letter = rng.choice(LETTERS)
        avoid = sorted(rng.sample([c for c in LETTERS if c != letter], banned))
        pool = [w for w in WORDS if _fits_letter_words(w, letter, avoid)]
        if len(pool) >= count:
            break
    else:  # pragma: no cover - the bounds keep this out of reach
        raise ConfigError(f"no letter has {count} sample words", field="source.difficulty.count")
    rule = f"with {letter}" + (f", no {' or '.join(avoid)}" if avoid else "")
    picks = rng.sample(pool, count)
    return _row(
        f"words {rule}: {count}",
        " ".join(picks),
        constraint={"type": "letter_words", "letter": letter, "count": count, "banned": avoid},
    )


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,;]+", text.strip().lower()) if w]


def _score_acrostic(spec: Mapping[str, Any], words: list[str]) -> float:
    target = spec["word"]
    hits = sum(w.isalpha() and w[0] == c for c, w in zip(target, words))
    return hits / max(len(target), len(words))


def _score_letter_words(spec: Mapping[str, Any], words: list[str]) -> float:
    banned = spec.get("banned", [])
    valid = {w for w in words if w.isalpha() and _fits_letter_words(w, spec["letter"], banned)}
    return min(len(valid), spec["count"]) / max(spec["count"], len(words))


_CHECKERS: dict[str, Callable[[Mapping[str, Any], list[str]], float]] = {
    "acrostic": _score_acrostic,
    "letter_words": _score_letter_words,
}


def check_constraint(spec: Mapping[str, Any], text: str) -> float:
    """Fraction of a creative constraint that ``text`` (the extracted answer) satisfies.

    Words are split on whitespace/commas and lowercased; any alphabetic word counts, not only
    the built-in list. Extra, duplicate or invalid words lower the score, so 1.0 means exactly
    a valid answer.
    - ``acrostic`` {word}: word i starts with letter i of ``word``.
    - ``letter_words`` {letter, count, banned}: ``count`` distinct words that contain
      ``letter`` and none of ``banned``.
    """
    checker = _CHECKERS.get(spec.get("type", ""))
    if checker is None:
        raise ConfigError(
            f"unknown constraint type {spec.get('type')!r}; expected one of: {', '.join(_CHECKERS)}",
            field="constraint.type",
        )
    return checker(spec, _words(text))
