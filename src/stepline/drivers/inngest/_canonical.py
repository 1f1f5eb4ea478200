"""Canonical JSON (RFC 8785, "JCS"), the form in which Inngest signs request bodies.

The SDKs verify a request by parsing its body and re-serialising it with JCS before the HMAC,
so a server must send (and sign) exactly those bytes. JCS numbers are IEEE doubles: an integer
outside +-(2**53 - 1) is written as the double nearest to it, as the Python SDK's ``jcs`` and the
Go server's transform do (``rfc8785`` alone would refuse it).
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from stepline.drivers.inngest._errors import ProtocolError

_SAFE = 2**53 - 1


def _as_doubles(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) > _SAFE else value
    if isinstance(value, dict):
        return {key: _as_doubles(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_doubles(item) for item in value]
    return value


def canonical_json(value: Any) -> bytes:
    """``value`` as RFC 8785 canonical JSON bytes (UTF-8, sorted keys, no spaces).

    Raises ``ProtocolError`` for what JSON cannot hold (NaN, infinities, other types)."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError:
        return canonical_json(_as_doubles(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise ProtocolError(f"cannot write canonical JSON: {exc}") from exc


def canonicalize_body(body: bytes) -> bytes:
    """A JSON body re-serialised canonically, as the SDKs do before checking a signature (an
    empty body stays empty). Raises ``ProtocolError`` if the body is not JSON."""
    if not body:
        return body
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"body is not JSON: {exc}") from exc
    return canonical_json(value)
