"""Time-ordered unique ids (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32).

Ids made in one process are strictly increasing, even within one millisecond (the random part
is incremented, as monotonic ULIDs do), so runs created together keep their order in the queue.
"""

from __future__ import annotations

import base64
import os
import threading
import time

# RFC 4648 base32 maps 5-bit groups to "A-Z2-7"; translating to Crockford's alphabet (ascending
# in ASCII) makes the text sort like the number, so ids sort by creation time.
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_in: dict[int, int] = {}  # millisecond -> last id value issued in it (a few recent ones)


def new_id(at: float | None = None) -> str:
    """A 26-character id that sorts by creation time (``at`` in epoch seconds, default now)."""
    millis = int((time.time() if at is None else at) * 1000) & ((1 << 48) - 1)
    value = (millis << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big")
    with _lock:
        last = _last_in.get(millis)
        if last is not None and value <= last:
            value = last + 1
        _last_in[millis] = value
        if len(_last_in) > 64:
            del _last_in[next(iter(_last_in))]
    return base64.b32encode(value.to_bytes(16, "big")).decode("ascii")[:26].translate(_CROCKFORD)
