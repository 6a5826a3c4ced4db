"""Helpers shared by generators and sources: stable seed derivation and "did you mean" hints."""
from __future__ import annotations

import difflib
import hashlib
from typing import Iterable


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from ``parts`` that is stable across processes (unlike ``hash()``).

    31 bits keeps it valid for libraries that add an index to the seed or feed it to numpy.
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A hint like ``; did you mean 'addition'?`` (empty when nothing is close)."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?" if close else ""
