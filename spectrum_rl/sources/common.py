"""Helpers shared by generators and sources: stable seed derivation."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from ``parts`` that is stable across processes (unlike ``hash()``).

    31 bits keeps it valid for libraries that add an index to the seed or feed it to numpy.
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31
