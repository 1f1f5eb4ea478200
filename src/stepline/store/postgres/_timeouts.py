"""The PostgreSQL store's timeouts, as its URL or its arguments give them: how long a call waits
for a connection (libpq's ``connect_timeout``) and how long the server may take to answer a
round trip (Stepline's own ``answer_timeout`` URL parameter, taken out of the URL before libpq
sees it: ``_answers``)."""

from __future__ import annotations

import math
from urllib.parse import unquote

import psycopg

from stepline._urls import shown_url
from stepline.errors import ConfigError
from stepline.store.postgres._answers import DEFAULT_ANSWER_TIMEOUT

DEFAULT_CONNECT_TIMEOUT = 10.0


def _connect_timeout(given: str | int | None, url: str) -> float:
    """The seconds a call waits for a connection: the URL's ``connect_timeout`` (libpq's
    whole seconds; 0 or less, libpq's "no limit", and none: ``DEFAULT_CONNECT_TIMEOUT``).
    ``ConfigError`` for one that is not a number (``float`` raised ``ValueError`` from the
    store's constructor)."""
    if not given:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise ConfigError(
            f"invalid PostgreSQL URL {shown_url(url)!r}: connect_timeout must be a number of "
            f"seconds, got {given!r}"
        )
    return seconds if seconds > 0 else DEFAULT_CONNECT_TIMEOUT


ANSWER_TIMEOUT = "answer_timeout"  # Stepline's own parameter of a URL (libpq refuses it)


def _answer_timeout(url: str) -> tuple[str, str | None]:
    """(``url`` without its ``answer_timeout`` query parameter, which libpq would refuse; that
    parameter's value, None when it has none). The other parameters are left as written."""
    if "://" not in url:  # a key=value connection string: libpq's keywords only
        return url, None
    base, mark, query = url.partition("?")
    query, hash_, fragment = query.partition("#")
    given: str | None = None
    kept = []
    for part in query.split("&") if mark else []:
        name, _, value = part.partition("=")
        if unquote(name) == ANSWER_TIMEOUT:
            given = unquote(value)
        elif part:
            kept.append(part)
    if given is None:
        return url, None
    return base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment, given


def _answer_seconds(given: str | float | None, url: str) -> float | None:
    """The seconds within which the server must answer a round trip (``_answers``): the
    URL's ``answer_timeout`` (or the store's argument); none: ``DEFAULT_ANSWER_TIMEOUT``; 0
    or less: None, no deadline. ``ConfigError`` for one that is not a number."""
    if given is None:
        return DEFAULT_ANSWER_TIMEOUT
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds) or seconds == math.inf:
        raise ConfigError(
            f"invalid PostgreSQL URL {shown_url(url)!r}: {ANSWER_TIMEOUT} must be a number of "
            f"seconds (0: no deadline), got {given!r}"
        )
    return seconds if seconds > 0 else None


def timeouts(
    url: str, connect_timeout: float | None, answer_timeout: float | None
) -> tuple[str, float, float | None]:
    """(``url`` without its ``answer_timeout``, the seconds a call waits for a connection, the
    seconds within which the server must answer a round trip: None, no deadline), from the
    store's arguments, else the URL's parameters (``_connect_timeout``, ``_answer_seconds``).
    ``ConfigError`` for a URL psycopg cannot read or a timeout that is not a number."""
    url, in_url = _answer_timeout(url)
    answer_within = _answer_seconds(in_url if answer_timeout is None else answer_timeout, url)
    if connect_timeout is None:  # the URL's own connect_timeout, else 10 s
        try:
            given = psycopg.conninfo.conninfo_to_dict(url).get("connect_timeout")
        except psycopg.ProgrammingError as exc:
            reason = str(exc).replace(url, shown_url(url))  # psycopg quotes it whole
            raise ConfigError(f"invalid PostgreSQL URL: {reason}") from None
        connect_timeout = _connect_timeout(given, url)
    return url, connect_timeout, answer_within
