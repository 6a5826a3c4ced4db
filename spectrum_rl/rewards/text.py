"""Text helpers shared by reward components: answer extraction, normalisation, numbers, row fields,
and one-line error summaries."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from spectrum_rl.sources.base import Example

_ANSWER_TAG = re.compile(r"answer:", re.IGNORECASE)
_THINK_END = "</think>"  # a reasoning model's thinking ends here (Qwen3, DeepSeek-R1)
_BOXED = "\\boxed{"  # a final answer's marks (``marked_answer``); GSM8K's is a number after ####, so
_HASHES = re.compile(r"####[ \t]*([-+$.\d][^\n]*)")  # a markdown heading (#### Step 2) is not one
# A number: comma-grouped thousands (1,234.5) first, else plain digits; optional sign and decimals.
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")


def marked_answer(text: str) -> str | None:
    """The answer ``text`` marks as final, stripped: the contents of its last ``\\boxed{...}``
    (braces balanced: MATH's convention, and most chat models'), else of its last
    ``<answer>...</answer>`` (DeepSeek-R1's format), else the rest of the line after its last
    ``####`` followed by a number (GSM8K's); None when it marks none. Linear in the text."""
    start = text.rfind(_BOXED)
    if start >= 0:
        depth, first = 1, start + len(_BOXED)
        for i in range(first, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[first:i].strip()
    close = text.rfind("</answer>")
    if (opened := text.rfind("<answer>", 0, max(close, 0))) >= 0:
        return text[opened + len("<answer>") : close].strip()
    last = deque(_HASHES.finditer(text), maxlen=1)
    return last[0].group(1).strip() if last else None


def extract_answer(text: str) -> str:
    """The answer part of a completion, read after its reasoning (the text after the last
    ``</think>``, when it closes one).

    The answer it marks as final (``marked_answer``: ``\\boxed{...}``, ``<answer>`` or ``####``),
    else the rest of the line after the last ``answer:`` (any case), else the first non-empty line.
    Surrounding whitespace is stripped.
    """
    text = text[text.rfind(_THINK_END) + len(_THINK_END) :] if _THINK_END in text else text
    marked = marked_answer(text)
    if marked is not None:
        return marked
    parts = _ANSWER_TAG.split(text)
    if len(parts) > 1:
        return (parts[-1].splitlines() or [""])[0].strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def answer_text(completion: str, extract: bool) -> str:
    """``extract_answer(completion)`` when ``extract`` is set, else the completion unchanged."""
    return extract_answer(completion) if extract else completion


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, strip, and drop one trailing period."""
    return " ".join(text.lower().split()).removesuffix(".").rstrip()


def last_number(text: str) -> float | None:
    """The last number in ``text`` (``-3``, ``2.5``, ``1,234``), or None when there is none."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def row_field(example: Example, name: str) -> Any:
    """A row column of ``example``; ``"answer"`` means ``example.answer``, or the list of accepted
    answers when the row gives several (``example.answers``).

    Raises ValueError when the row has no such field (naming the available ones) or it is null.
    """
    if name == "answer" and example.answer is not None:
        return example.reference
    if name not in example.fields:
        raise ValueError(f"row has no field '{name}' (available: {', '.join(sorted(example.fields)) or 'none'})")
    if example.fields[name] is None:
        raise ValueError(f"row field '{name}' is null")
    return example.fields[name]


def references(example: Example, name: str) -> list[str]:
    """The reference text(s) in row field ``name``: a string, or a list of strings."""
    value = row_field(example, name)
    refs = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if not refs:
        raise ValueError(f"row field '{name}' is an empty list")
    return refs


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: every character that is not printable (control
    characters such as ANSI escapes and carriage returns, line breaks, bidirectional overrides,
    lone surrogates) is shown as its escape (``\\x1b``, ``\\n``, ``\\u202e``, ``\\ud800``), never
    interpreted. Model output reaches messages this way: through errors its code raised."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def error_summary(exc: BaseException) -> str:
    """``TypeName: first line of the message``, for one-line error reports."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
