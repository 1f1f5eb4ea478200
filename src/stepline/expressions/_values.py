"""Python values as CEL literals, and the canonical string form of a value."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import orjson

_INT64_MIN = -(2**63)
_INT64_END = 2**63
_UINT64_END = 2**64

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def string_literal(text: str) -> str:
    """``text`` as a double-quoted CEL string literal.

    Quotes, backslashes and control characters are escaped; printable non-ASCII characters are
    kept as they are, anything else becomes a ``\\u``/``\\U`` escape. A lone surrogate cannot be
    written in CEL and raises ``ValueError``.
    """
    parts = ['"']
    for ch in text:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            parts.append(escaped)
        elif ch.isprintable():
            parts.append(ch)
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError("a string with a lone surrogate cannot be a CEL literal")
        elif ord(ch) < 0x10000:
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(f"\\U{ord(ch):08x}")
    parts.append('"')
    return "".join(parts)


def _float_literal(value: float) -> str:
    if math.isnan(value):
        return 'double("nan")'
    if math.isinf(value):
        return 'double("inf")' if value > 0 else '-double("inf")'
    text = repr(value)
    return text if any(c in text for c in ".e") else f"{text}.0"


def to_literal(value: Any) -> str:
    """``value`` (JSON-like: None, bool, int, float, str, list, dict) as CEL literal text.

    Integers beyond int64 become ``uint`` literals, then doubles. Raises ``TypeError`` for other
    types and ``ValueError`` for strings CEL cannot represent.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if _INT64_MIN <= value < _INT64_END:
            return str(value)
        if 0 <= value < _UINT64_END:
            return f"{value}u"
        return _float_literal(float(value))
    if isinstance(value, float):
        return _float_literal(value)
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{to_literal(k)}: {to_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"a value of type {type(value).__name__} cannot be written as a CEL literal")


def _normalize(value: Any) -> Any:
    """Make ``value`` JSON-encodable the canonical way (integral floats become ints)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if value.is_integer() and _INT64_MIN <= value < _INT64_END:
            return int(value)
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value < _UINT64_END else float(value)
    if isinstance(value, list | tuple):
        return [_normalize(item) for item in value]
    if isinstance(value, Mapping):
        return {_normalize(k): _normalize(v) for k, v in value.items()}
    return value


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    return str(value)


def canonical(value: Any) -> str | None:
    """The canonical string form of a value, used for keys and index values.

    ``None`` for null; a string as it is; anything else as compact JSON with sorted keys, where a
    float with an integral value is written as an integer (``150.0`` and ``150`` are equal in
    CEL, so they must share a key).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    encoded = orjson.dumps(
        _normalize(value),
        default=_default,
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return encoded.decode("utf-8")
