"""A keys file: event keys and API tokens a running server re-reads, so a key is added or revoked
without a restart (``stepline server --keys-file PATH``, ``STEPLINE_KEYS_FILE``).

One entry per line, ``event-key <KEY>`` or ``api-token <TOKEN>``; blank lines and lines starting
with ``#`` are ignored. The server looks at the file's modification time, size and inode at most
once per ``check_every`` seconds (1 s by default) and re-reads it when they changed: a key
removed from the file is refused from the next check on, by every server process reading the
file (several instances behind a load balancer share it through their configuration
management). Replace the file atomically (write a new one, then rename it over the old) so a
server never reads half of it.

Failing closed: the file must be readable and valid when the server starts (else it refuses to
start). Later, a file that is missing, unreadable or has a line of another form gives no keys
at all until it is fixed (an error is logged, naming the line number, never its content): a
revoked key never stays valid because the edit that removed it went wrong. Keys given by
``--event-key``/``--api-token`` (or their variables) are not in the file and stay valid until a
restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from stepline.errors import ConfigError

log = logging.getLogger("stepline.server")

EVENT_KEY = "event-key"
API_TOKEN = "api-token"


@dataclass(frozen=True, slots=True)
class Keys:
    """The event keys and API tokens a keys file grants."""

    event_keys: tuple[str, ...] = ()
    api_tokens: tuple[str, ...] = ()


NO_KEYS = Keys()


def parse_keys(text: str, where: str) -> Keys:
    """The keys of a keys file's text; ``ValueError`` naming the first bad line (by number)."""
    event_keys: list[str] = []
    api_tokens: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        kind, _, value = entry.partition(" ")
        value = value.strip()
        if kind not in (EVENT_KEY, API_TOKEN) or not value or " " in value:
            raise ValueError(
                f"{where}, line {number}: expected '{EVENT_KEY} <KEY>' or '{API_TOKEN} <TOKEN>'"
            )
        (event_keys if kind == EVENT_KEY else api_tokens).append(value)
    return Keys(tuple(event_keys), tuple(api_tokens))


class KeysFile:
    """A keys file, re-read when it changes (see the module's doc)."""

    def __init__(self, path: Path, check_every: float = 1.0) -> None:
        self.path = path
        self.check_every = check_every
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = time.monotonic()
        try:
            self._stamp = _stamp(path)
            self._keys = parse_keys(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"cannot read the keys file: {exc}") from None

    def current(self) -> Keys:
        """The keys the file grants now (re-read if it changed since the last check)."""
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            with self._lock:
                if now - self._checked >= self.check_every:
                    self._checked = now
                    self._refresh()
        return self._keys

    def _refresh(self) -> None:
        try:
            stamp: tuple[int, int, int] | None = _stamp(self.path)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is None:
            log.error("the keys file %s is gone: no key or token of it is accepted", self.path)
            self._keys = NO_KEYS
            return
        try:
            self._keys = parse_keys(self.path.read_text(encoding="utf-8"), str(self.path))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.error("keys file refused, no key or token of it is accepted: %s", exc)
            self._keys = NO_KEYS
            return
        log.info(
            "keys file %s read: %d event keys, %d API tokens",
            self.path,
            len(self._keys.event_keys),
            len(self._keys.api_tokens),
        )


def _stamp(path: Path) -> tuple[int, int, int]:
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size, status.st_ino
