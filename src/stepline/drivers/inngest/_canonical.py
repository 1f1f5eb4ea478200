"""Canonical JSON (RFC 8785, "JCS"), the form in which Inngest signs request bodies.

The SDKs verify a request by parsing its body and re-serialising it with JCS before the HMAC,
so a server must send (and sign) exactly those bytes. JCS numbers are IEEE doubles: an integer
outside +-(2**53 - 1) is written as the double nearest to it, as the Python SDK's ``jcs`` and the
Go server's transform do (``rfc8785`` alone would refuse it).

The walk is written here, not left to ``rfc8785.dumps``: that library escapes each string with
a regular expression calling back into Python for every character it escapes (a mebibyte step
output full of quotes spent most of its signing time there). A JCS string is what the standard
library's C encoder writes with ``ensure_ascii=False`` (``\\"``, ``\\\\``, ``\\b \\f \\n \\r
\\t``, other controls as lowercase ``\\u00xx``, nothing else escaped); a lone surrogate is
refused when the text is encoded, as ``rfc8785`` refuses it. Numbers other than safe integers
are still written by ``rfc8785`` (ECMAScript's number form), keys sorted by their UTF-16 code
units as it sorts them.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any

import rfc8785

from stepline.drivers.inngest._errors import ProtocolError

_SAFE = 2**53 - 1
_string = encode_basestring  # a str's JSON text with ensure_ascii=False: C's, when built with it


def _utf16(item: tuple[str, Any]) -> bytes:
    return item[0].encode("utf-16be", "surrogatepass")


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(int(value)) if -_SAFE <= value <= _SAFE else _number(float(value)))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ProtocolError("cannot write canonical JSON: object keys must be strings")
        out.append("{")
        for n, (key, item) in enumerate(sorted(value.items(), key=_utf16)):
            out.append(_string(key) + ":" if n == 0 else "," + _string(key) + ":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for n, item in enumerate(value):
            if n:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise ProtocolError(f"cannot write canonical JSON: unsupported type {type(value)}")


def _number(value: float) -> str:
    try:
        return rfc8785.dumps(value).decode()
    except rfc8785.CanonicalizationError as exc:  # NaN, infinities
        raise ProtocolError(f"cannot write canonical JSON: {exc}") from exc


def canonical_json(value: Any) -> bytes:
    """``value`` as RFC 8785 canonical JSON bytes (UTF-8, sorted keys, no spaces).

    Raises ``ProtocolError`` for what JSON cannot hold (NaN, infinities, other types, lone
    surrogates)."""
    out: list[str] = []
    _write(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError("cannot write canonical JSON: a string holds a lone surrogate") from exc


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
