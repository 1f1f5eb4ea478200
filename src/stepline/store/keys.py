"""How long a value drawn from events may be where a store keeps it in an index entry.

Keys evaluated from event data (idempotency, concurrency, throttle, rate limit, singleton,
debounce and batch keys), a sender's event id kept for de-duplication, and the value a wait's
or a ``cancel_on``'s equality is indexed under are the users' data, of any length. A B-tree
entry is not: PostgreSQL refuses one over ~2.7 kB (SQLSTATE 54000, "index row size exceeds
btree maximum"), so a long key made a send or a pass commit fail there while SQLite kept it.
Every store keeps the same bounded form instead (Inngest's server hashes its keys too): a key
longer than ``KEY_CHARS`` characters is kept as its SHA-256 digest, and a wait or matcher
whose indexed value is longer is stored without an index entry (found by evaluating its
expression against each event of its name, as an expression without an equality is).
"""

from __future__ import annotations

import hashlib
from typing import Final

# at most 4 bytes a character in UTF-8: 1 kB, with the app and function ids next to it in a
# key, well under PostgreSQL's B-tree entry limit (2,704 bytes)
KEY_CHARS: Final = 256
_DIGEST_PREFIX: Final = "\x1esha256:"  # \x1e (a record separator) keeps typed keys apart


def stored_key(value: str) -> str:
    """``value`` as a store keeps it in a key column: itself when at most ``KEY_CHARS`` long,
    else its SHA-256 digest (hex, prefixed): equal values give equal keys, distinct ones
    distinct keys (up to SHA-256 collisions)."""
    if len(value) <= KEY_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return _DIGEST_PREFIX + digest


def indexed(keys: tuple[tuple[str, str], ...]) -> tuple[str | None, str | None]:
    """The (path, value) a wait or matcher with equality ``keys`` is indexed under: the first
    one, or (None, None) (not indexed) when there is none, its value is longer than
    ``KEY_CHARS``, or it holds a NUL (a literal's: PostgreSQL's text cannot hold one, and no
    event's value can equal it as CEL sees values, cut at their first NUL)."""
    if not keys or len(keys[0][1]) > KEY_CHARS or "\x00" in keys[0][1]:
        return None, None
    return keys[0]
