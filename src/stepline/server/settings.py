"""``ServerSettings``: what the HTTP server is told (bind address, mode, keys, limits).

Keys and tokens are secrets: they are compared in constant time, never logged, and never part of
``repr``. Fields may be appended (the dashboard adds its own); none are reordered.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from stepline.server._keys import KeysFile

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8288

# Inngest's dev server accepts any event key; SDKs in dev mode without one send this literal
NO_EVENT_KEY_SET = "NO_EVENT_KEY_SET"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class ServerSettings:
    """How the server runs and who may use it.

    ``host``/``port``: where ``stepline dev``/``stepline server`` bind (127.0.0.1:8288).
    ``dev``: the development server (``stepline dev``): retries are fast, the dashboard opens
    without a login. ``event_keys``: the keys accepted in ``POST /e/{key}`` (several; remove one
    to revoke it). ``api_tokens``: the bearer tokens accepted by the REST API
    (``Authorization: Bearer <token>``). ``allow_unauthenticated``: with no keys (or no tokens)
    configured, leave that API open; the CLI sets it only for a loopback bind. Otherwise an
    API without keys answers 503 ("no keys configured"), as Inngest's self-hosted server does.
    ``dashboard_password`` / ``dashboard_secret``: the dashboard's login and the secret signing
    its session cookies (random per process when not given). ``max_body_bytes``: a request
    body over this is refused (413) while it streams in; ``max_batch_events``: events in one
    ``POST /e/``; ``max_json_depth``: nesting of a request's JSON. ``signing_key`` /
    ``signing_key_fallback``: the Inngest signing keys shared with SDK apps (``signkey-…``):
    requests to the apps are signed, their replies and ``/fn/register`` calls checked with
    them; a server that is not ``dev`` serves no SDK app without one. ``keys_file``: a file of
    more event keys and API tokens, re-read when it changes (checked every
    ``keys_check_every`` seconds), so keys are added and revoked without a restart
    (``server/_keys.py``); ``accepted_event_keys()`` / ``accepted_api_tokens()`` are what is
    accepted now.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    dev: bool = False
    event_keys: tuple[str, ...] = field(default=(), repr=False)
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    allow_unauthenticated: bool = False
    dashboard_password: str | None = field(default=None, repr=False)
    dashboard_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    max_body_bytes: int = 4 * 1024 * 1024
    max_batch_events: int = 5_000
    max_json_depth: int = 64
    signing_key: str | None = field(default=None, repr=False)
    signing_key_fallback: str | None = field(default=None, repr=False)
    keys_file: str | None = None
    keys_check_every: float = 1.0
    _keys: KeysFile | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.keys_file is not None:
            self._keys = KeysFile(Path(self.keys_file), self.keys_check_every)

    def accepted_event_keys(self) -> tuple[str, ...]:
        """The event keys accepted now: ``event_keys`` and those of the keys file."""
        if self._keys is None:
            return self.event_keys
        return self.event_keys + self._keys.current().event_keys

    def accepted_api_tokens(self) -> tuple[str, ...]:
        """The API tokens accepted now: ``api_tokens`` and those of the keys file."""
        if self._keys is None:
            return self.api_tokens
        return self.api_tokens + self._keys.current().api_tokens

    @property
    def url(self) -> str:
        """``http://host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}"

    def events_keyed(self) -> bool:
        """Whether the event API needs a key: keys are configured, or a keys file is (even
        one that grants none now: a broken keys file never opens the API)."""
        return self.keys_file is not None or bool(self.event_keys)

    def api_keyed(self) -> bool:
        """Whether the REST API needs a token (as ``events_keyed``)."""
        return self.keys_file is not None or bool(self.api_tokens)

    def event_key_ok(self, key: str) -> bool:
        """Whether ``key`` may send events (constant-time over every accepted key)."""
        return _one_of(key, self.accepted_event_keys())

    def api_token_ok(self, token: str) -> bool:
        """Whether ``token`` may use the REST API (constant-time over every accepted one)."""
        return _one_of(token, self.accepted_api_tokens())


def _one_of(candidate: str, known: tuple[str, ...]) -> bool:
    given = candidate.encode()
    found = False
    for key in known:  # no early exit: the time does not say which key matched
        found |= secrets.compare_digest(given, key.encode())
    return found
