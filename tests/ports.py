"""Loopback ports for the servers the tests start (PostgreSQL clusters, ``stepline dev``, SDK
apps).

A port found by binding port 0 and closing the socket is one of the kernel's ephemeral ports:
any other process's next bind(0) or outgoing connection may take it before the server the test
starts binds it (an SDK app once failed with "Port … is in use", and the test then talked to
whatever answered there). Here each test process hands out ports of its own: a range below the
kernel's ephemeral range (32768-60999 on Linux), one per xdist worker, walked from a random
start (two test sessions on one machine rarely meet), skipping any port something listens on.
"""

from __future__ import annotations

import os
import random
import socket
import threading

_FIRST, _SPAN = 20_000, 1_500  # workers gw0..gw7: 20000-31999, below the ephemeral range
_lock = threading.Lock()
_next: list[int] = []


def _range() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    low = _FIRST + (index % 8) * _SPAN
    return low, low + _SPAN


def free_port() -> int:
    """A loopback port nothing listens on, handed out once by this process."""
    low, high = _range()
    with _lock:
        if not _next:
            _next.append(random.randrange(low, high))
        for _ in range(high - low):
            port = _next[0]
            _next[0] = low + (port + 1 - low) % (high - low)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use
                return port
    raise RuntimeError(f"no free loopback port in {low}-{high}")
