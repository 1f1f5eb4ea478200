"""Time-ordered unique ids (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32).

Ids made in one process are strictly increasing, even within one millisecond (the random part
is incremented, as monotonic ULIDs do), so runs created together keep their order in the queue.
"""

from __future__ import annotations

import os
import threading
import time

# Crockford's base32 alphabet is ascending in ASCII, so the text sorts like the number and ids
# sort by creation time. The 128-bit value is written as 26 characters of 5 bits (130 bits, the
# last two zero, as base32 of its 16 bytes would be), two characters (10 bits) per table lookup.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_RANDOM_BITS = 80
_BITS30 = (1 << 30) - 1
_lock = threading.Lock()
_last_in: dict[int, int] = {}  # millisecond -> last id value issued in it (a few recent ones)
# Random bytes read from the OS in blocks (one getrandom call per 409 ids instead of one per id:
# the call was a third of an id's cost, and an event that cancels a run makes three ids)
_ENTROPY_BLOCK = 4090
_entropy = b""
_entropy_at = 0


def _forget_entropy() -> None:
    """A forked child must not reuse its parent's unread bytes, nor step on from the last id its
    parent made in a millisecond (either way both would make the same ids)."""
    global _entropy, _entropy_at, _lock
    _entropy, _entropy_at, _lock = b"", 0, threading.Lock()
    _last_in.clear()


os.register_at_fork(after_in_child=_forget_entropy)


def new_id(at: float | None = None) -> str:
    """A 26-character id that sorts by creation time (``at`` in epoch seconds, default now)."""
    global _entropy, _entropy_at
    millis = int((time.time() if at is None else at) * 1000) & ((1 << 48) - 1)
    with _lock:
        if _entropy_at >= len(_entropy):
            _entropy, _entropy_at = os.urandom(_ENTROPY_BLOCK), 0
        random_part = int.from_bytes(_entropy[_entropy_at : _entropy_at + 10], "big")
        _entropy_at += 10
        value = (millis << _RANDOM_BITS) | random_part
        last = _last_in.get(millis)
        if last is not None and value <= last:
            value = last + 1
        _last_in[millis] = value
        if len(_last_in) > 64:
            del _last_in[next(iter(_last_in))]
    return _encode(value)


def new_ids(count: int, at: float | None = None) -> list[str]:
    """``count`` strictly increasing ids of the time ``at``, as a monotonic ULID generator
    makes them within a millisecond: the first as ``new_id(at)`` would make it, each next one
    the one before plus one (one lock, one look-up of the millisecond's last id and 10 bytes of
    entropy for them all: a batch of events, the events announcing a batch of cancellations).
    Two processes' batches of one millisecond overlap only if their first ids are fewer than
    ``count`` apart out of 2**80."""
    global _entropy, _entropy_at
    if count <= 0:
        return []
    millis = int((time.time() if at is None else at) * 1000) & ((1 << 48) - 1)
    with _lock:
        if _entropy_at >= len(_entropy):
            _entropy, _entropy_at = os.urandom(_ENTROPY_BLOCK), 0
        value = (millis << _RANDOM_BITS) | int.from_bytes(
            _entropy[_entropy_at : _entropy_at + 10], "big"
        )
        _entropy_at += 10
        last = _last_in.get(millis)
        first = value if last is None or value > last else last + 1
        _last_in[millis] = first + count - 1
        if len(_last_in) > 64:
            del _last_in[next(iter(_last_in))]
    if count == 1:  # (an event sent: its one id, without the run's encoding)
        return [_encode(first)]
    return _encode_run(first, count)


def _encode_run(first: int, count: int) -> list[str]:
    """``_encode`` of ``first`` and the ``count - 1`` values after it. A value's last two
    characters are its low 8 bits (shifted) and the 24 before them the rest: the values of a
    run that share all but their low 8 bits (up to 256) have the text of the first one's 24
    characters, encoded once, and two characters each from the table."""
    p, texts = _PAIRS, []
    value, end = first, first + count
    while value < end:
        low, stop = value & 255, min(end, (value | 255) + 1)
        head = _encode(value)[:24]
        texts += [head + p[bits << 2] for bits in range(low, low + stop - value)]
        value = stop
    return texts


def _encode(value: int) -> str:
    """The 26-character Crockford base32 text of a 128-bit value (a run of 13 lookups: this is
    on the path of every event and run)."""
    v, p = value << 2, _PAIRS
    return (
        p[v >> 120] + p[(v >> 110) & 1023] + p[(v >> 100) & 1023] + p[(v >> 90) & 1023]
        + p[(v >> 80) & 1023] + p[(v >> 70) & 1023] + p[(v >> 60) & 1023]
        + p[(v >> 50) & 1023] + p[(v >> 40) & 1023] + p[(v >> 30) & 1023]
        + p[(v >> 20) & 1023] + p[(v >> 10) & 1023] + p[v & 1023]
    )  # fmt: skip


def seeded_id(millis: int, entropy: bytes) -> str:
    """The id (ULID layout) made of a given time and 10 bytes of entropy: the same inputs give
    the same id (a client's retry of a request carrying the same seed)."""
    if not 0 <= millis < 1 << 48 or len(entropy) != 10:
        raise ValueError("a seeded id needs 0 <= millis < 2**48 and 10 bytes of entropy")
    return _encode((millis << _RANDOM_BITS) | int.from_bytes(entropy, "big"))
