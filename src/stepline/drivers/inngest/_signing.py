"""Signing keys, request and response signatures, bearer tokens (as the Inngest SDKs do them).

* A key is ``signkey-<env>-<hex>``; the prefix (``signkey-`` word characters ``-``) is dropped
  everywhere, and what remains must be an even-length hex string.
* ``X-Inngest-Signature: t=<unix seconds>&s=<hex>``: HMAC-SHA256 keyed with the ASCII bytes of
  the hex string (not decoded), over the body followed by the decimal timestamp. A server signs
  the canonical (JCS) form of a request body, which is what it sends; an SDK signs its response
  body as it is.
* SDK -> server calls carry ``Authorization: Bearer <H>``, H = SHA-256 hex of the hex-decoded
  key (the JS SDK keeps the ``signkey-<env>-`` prefix in front of H, the Python SDK does not).
* Rotation: a server signs with its current key and accepts what either the current or the
  fallback key verifies; an SDK tries its fallback key when its current one does not verify.

Pure functions: the time is a parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from stepline._text import is_digits
from stepline.drivers.inngest._canonical import canonicalize_body
from stepline.drivers.inngest._errors import ProtocolError, SignatureError
from stepline.errors import ConfigError

SIGNATURE_HEADER = "X-Inngest-Signature"
MAX_SIGNATURE_AGE = 300.0  # seconds; the JS and Go SDKs refuse older (or newer) signatures
_PREFIX = re.compile(r"^signkey-\w+-")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def _strip_prefix(text: str) -> str:
    match = _PREFIX.match(text)
    return text[match.end() :] if match else text


@dataclass(frozen=True)
class SigningKey:
    """One signing key. Build it with :meth:`parse` (raises ``ConfigError`` for a key that is
    not ``[signkey-<env>-]<even-length hex>``); ``repr`` never shows the secret."""

    text: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> SigningKey:
        if not isinstance(text, str) or _HEX.match(_strip_prefix(text.strip())) is None:
            raise ConfigError(
                "invalid signing key: expected 'signkey-<env>-<hex>' or an even-length hex string"
            )
        return cls(text.strip())

    @property
    def prefix(self) -> str:
        """``signkey-<env>-`` or ``""``."""
        return self.text[: len(self.text) - len(self.secret)]

    @property
    def secret(self) -> str:
        """The hex string without its prefix: the HMAC key (as ASCII bytes)."""
        return _strip_prefix(self.text)

    @property
    def hashed(self) -> str:
        """SHA-256 hex of the hex-decoded key: what SDKs send as their bearer token."""
        return hashlib.sha256(bytes.fromhex(self.secret)).hexdigest()


@dataclass(frozen=True)
class SigningKeys:
    """A server's keys: ``current`` signs; ``current`` or ``fallback`` verify (rotation)."""

    current: SigningKey
    fallback: SigningKey | None = None

    @classmethod
    def parse(cls, current: str, fallback: str | None = None) -> SigningKeys:
        return cls(SigningKey.parse(current), SigningKey.parse(fallback) if fallback else None)

    @property
    def all(self) -> tuple[SigningKey, ...]:
        return (self.current,) if self.fallback is None else (self.current, self.fallback)


def _mac(secret: str, body: bytes, timestamp: str) -> str:
    digest = hmac.new(secret.encode("ascii"), body, hashlib.sha256)
    digest.update(timestamp.encode("ascii"))
    return digest.hexdigest()


def signature(body: bytes, key: SigningKey, now: float) -> str:
    """The ``X-Inngest-Signature`` value for ``body`` exactly as given, at Unix time ``now``."""
    timestamp = str(int(now))
    return f"t={timestamp}&s={_mac(key.secret, body, timestamp)}"


def sign_request(body: bytes, key: SigningKey, now: float) -> str:
    """The signature of a server -> SDK request: over the canonical (JCS) form of ``body``, as
    the SDKs check it. Send the canonical bytes themselves (see ``canonical_json``)."""
    return signature(canonicalize_body(body), key, now)


def _parse_header(header: str | None) -> tuple[str, str]:
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    fields = parse_qs(header, keep_blank_values=True)
    timestamp = fields.get("t", [""])[0]
    digest = fields.get("s", [""])[0]
    if not is_digits(timestamp) or not digest:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header {header!r}")
    return timestamp, digest


def verify(
    body: bytes,
    header: str | None,
    keys: Sequence[SigningKey],
    now: float,
    *,
    max_age: float | None = MAX_SIGNATURE_AGE,
) -> SigningKey:
    """Check a signature over ``body`` exactly as given; returns the key that made it (the
    first of ``keys`` that verifies). Raises ``SignatureError`` when the header is missing or
    malformed, its timestamp is more than ``max_age`` seconds away from ``now`` (``None``: no
    age check) or no key verifies it."""
    timestamp, digest = _parse_header(header)
    if max_age is not None and abs(now - int(timestamp)) > max_age:
        raise SignatureError(f"signature timestamp {timestamp} is too far from now")
    for key in keys:
        if hmac.compare_digest(digest, _mac(key.secret, body, timestamp)):
            return key
    raise SignatureError("signature does not match any signing key")


def verify_response(
    body: bytes, header: str | None, keys: SigningKeys, now: float, **kw: float | None
) -> SigningKey:
    """Check an SDK's signed response (over its raw body bytes)."""
    return verify(body, header, keys.all, now, **kw)


def verify_request(
    body: bytes, header: str | None, keys: SigningKeys, now: float, **kw: float | None
) -> SigningKey:
    """Check a signed server -> SDK request as an SDK does (over the body's canonical form)."""
    try:
        canonical = canonicalize_body(body)
    except ProtocolError as exc:
        raise SignatureError(str(exc)) from exc
    return verify(canonical, header, keys.all, now, **kw)


def check_bearer(headers: Mapping[str, str], keys: SigningKeys) -> SigningKey:
    """Authenticate an SDK -> server call (``/fn/register``, ``/v0/runs/...``): the bearer
    token must be a key's hash or the key itself, with or without its ``signkey-<env>-``
    prefix. Returns the key; raises ``SignatureError`` otherwise."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.strip().partition(" ")
    token = _strip_prefix(token.strip())
    if scheme.lower() != "bearer" or not token:
        raise SignatureError("missing bearer token")
    for key in keys.all:
        for accepted in (key.hashed, key.secret):
            if hmac.compare_digest(token.lower(), accepted.lower()):
                return key
    raise SignatureError("bearer token matches no signing key")


def hash_event_key(event_key: str) -> str:
    """SHA-256 hex of an event key (as an SDK's inspection reports it)."""
    return hashlib.sha256(event_key.encode("utf-8")).hexdigest()
