"""Time-ordered unique ids (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32)."""

from __future__ import annotations

import base64
import os
import time

# RFC 4648 base32 maps 5-bit groups to "A-Z2-7"; translating to Crockford's alphabet (ascending
# in ASCII) makes the text sort like the number, so ids sort by creation time.
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id(at: float | None = None) -> str:
    """A 26-character id that sorts by creation time (``at`` in epoch seconds, default now)."""
    millis = int((time.time() if at is None else at) * 1000) & ((1 << 48) - 1)
    raw = millis.to_bytes(6, "big") + os.urandom(10)
    return base64.b32encode(raw).decode("ascii")[:26].translate(_CROCKFORD)
