"""The functions Inngest's server adds to CEL, and the operators it evaluates loosely.

Inngest's server (``pkg/expressions/exprenv/overloads.go``) declares ``uppercase``,
``lowercase``, ``b64decode``, ``json_parse``, ``date``, ``now``, ``now_plus`` and
``now_minus``, and takes ``+``, ``<``, ``<=``, ``>``, ``>=``, ``||`` and ``&&`` over values of
any type (``pkg/expressions/unknown.go``). The operators are reached through the ``_inngest_*``
functions here, which the rewrite in :mod:`._lower` emits only where the operand types are not
known to agree, so most comparisons stay native CEL.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from cel_expr_python import cel

from stepline.durations import parse_duration
from stepline.errors import DurationError

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _kind(value: Any) -> str:
    """CEL's name for the type of a converted value (``uint`` arrives as ``int``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, timedelta):
        return "duration"
    return type(value).__name__


_ZERO: dict[str, Any] = {"int": 0, "double": 0.0, "string": ""}
_ORDERED = frozenset({"int", "double", "string", "bytes", "bool", "timestamp", "duration"})


def _ordered_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """The operands of an ordering, as Inngest compares them: a null operand becomes the zero
    value of the other operand's type (``null < 5`` is ``0 < 5``); mismatched types fail."""
    ka, kb = _kind(a), _kind(b)
    if ka == "null" and kb in _ZERO:
        return _ZERO[kb], b
    if kb == "null" and ka in _ZERO:
        return a, _ZERO[ka]
    numbers = {"int", "double"}
    if ka in _ORDERED and (ka == kb or (ka in numbers and kb in numbers)):
        return a, b
    raise TypeError(f"no matching overload for ordering {ka} and {kb}")


def _lt(a: Any, b: Any) -> bool:
    x, y = _ordered_pair(a, b)
    return bool(x < y)


def _le(a: Any, b: Any) -> bool:
    x, y = _ordered_pair(a, b)
    return bool(x <= y)


def _gt(a: Any, b: Any) -> bool:
    x, y = _ordered_pair(a, b)
    return bool(x > y)


def _ge(a: Any, b: Any) -> bool:
    x, y = _ordered_pair(a, b)
    return bool(x >= y)


def go_float(value: float) -> str:
    """``value`` as Go's ``%v`` writes a float64 (``9.1``, ``100``, ``1e+06``, ``1e-05``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # digits before the decimal point
    exp10 = point - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:  # Go uses %e from 1e+06 on, for the shortest form
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return f"{prefix}{text[:point]}.{text[point:]}"


def go_text(value: Any) -> str:
    """``value`` as Go's ``%v`` writes the CEL value (Inngest concatenates mixed types so)."""
    kind = _kind(value)
    if kind == "string":
        return str(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "double":
        return go_float(value)
    if kind == "null":
        return "NULL_VALUE"
    if kind == "list":
        return "[" + " ".join(go_text(item) for item in value) + "]"
    if kind == "map":
        items = sorted((go_text(k), go_text(v)) for k, v in value.items())
        return "map[" + " ".join(f"{k}:{v}" for k, v in items) + "]"
    if kind == "bytes":
        return "[" + " ".join(str(b) for b in bytes(value)) + "]"
    return str(value)


def add(a: Any, b: Any) -> Any:
    """``a + b`` as Inngest's server adds: CEL's own addition when it applies, otherwise both
    operands written as text and concatenated (``"id-" + 7`` is ``"id-7"``)."""
    ka, kb = _kind(a), _kind(b)
    if ka == kb and ka in ("string", "double", "list", "bytes"):
        return a + b
    if ka == kb == "int":
        total = a + b
        if not _INT64_MIN <= total <= _INT64_MAX:
            raise OverflowError("integer overflow")
        return total
    if (ka, kb) in (("timestamp", "duration"), ("duration", "timestamp"), ("duration", "duration")):
        return a + b
    return go_text(a) + go_text(b)


def truthy(value: Any) -> bool:
    """JavaScript-like truth, as Inngest's ``isTruthy``: null, false, ``""`` and zero are false;
    anything else (an empty list or map included) is true."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value != ""
    if isinstance(value, int | float):
        return value != 0
    return True


def _or(a: Any, b: Any) -> Any:
    """``a || b``: CEL's ``||`` on booleans, else the first truthy operand, or the last one."""
    if isinstance(a, bool) and isinstance(b, bool):
        return a or b
    return a if truthy(a) else b


def _and(a: Any, b: Any) -> Any:
    """``a && b``: CEL's ``&&`` on booleans, else the first falsy operand, or the last one."""
    if isinstance(a, bool) and isinstance(b, bool):
        return a and b
    return a if not truthy(a) else b


def _lowercase(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


def _uppercase(value: Any) -> str:
    return value.upper() if isinstance(value, str) else ""


def _b64decode(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return raw.decode("utf-8", errors="replace")


def _json_parse(value: Any) -> dict[str, Any]:
    """A JSON object's fields (numbers as doubles, as Go decodes them); ``{}`` otherwise."""
    if not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value, parse_int=float)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _parse_date_text(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"unknown date format: {text!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _date(value: Any) -> datetime:
    """A point in time from text (RFC 3339, ``2006-01-02T15:04:05``, ``2006-01-02``, RFC 1123)
    or from a number of seconds, milliseconds or nanoseconds since the epoch (after 2000)."""
    if isinstance(value, str):
        return _parse_date_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = int(value)
        if number < 946_684_800:
            raise ValueError("dates before 2000 are not read from numbers")
        if number < 9_999_999_999:
            return datetime.fromtimestamp(number, UTC)
        if number < 9_999_999_999_999:
            return datetime.fromtimestamp(number / 1000, UTC)
        return datetime.fromtimestamp(number / 1e9, UTC)
    raise ValueError(f"cannot read a date from {_kind(value)}")


def _now() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)


def _offset(value: Any) -> timedelta:
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '24h'")
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from None


def _now_plus(value: Any) -> datetime:
    return _now() + _offset(value)


def _now_minus(value: Any) -> datetime:
    return _now() - _offset(value)


_T = cel.Type
_BINARY = [_T.DYN, _T.DYN]
_DECLARATIONS: list[tuple[str, Any, list[Any], Any]] = [
    ("_inngest_lt", _T.BOOL, _BINARY, _lt),
    ("_inngest_le", _T.BOOL, _BINARY, _le),
    ("_inngest_gt", _T.BOOL, _BINARY, _gt),
    ("_inngest_ge", _T.BOOL, _BINARY, _ge),
    ("_inngest_add", _T.DYN, _BINARY, add),
    ("_inngest_or", _T.DYN, _BINARY, _or),
    ("_inngest_and", _T.DYN, _BINARY, _and),
    ("lowercase", _T.STRING, [_T.DYN], _lowercase),
    ("uppercase", _T.STRING, [_T.DYN], _uppercase),
    ("b64decode", _T.STRING, [_T.DYN], _b64decode),
    ("json_parse", _T.DYN, [_T.DYN], _json_parse),
    ("date", _T.TIMESTAMP, [_T.DYN], _date),
    ("now", _T.TIMESTAMP, [], _now),
    ("now_plus", _T.TIMESTAMP, [_T.DYN], _now_plus),
    ("now_minus", _T.TIMESTAMP, [_T.DYN], _now_minus),
]

ORDERINGS = {"<": "_inngest_lt", "<=": "_inngest_le", ">": "_inngest_gt", ">=": "_inngest_ge"}
ORDERING_FUNCTIONS = {"<": _lt, "<=": _le, ">": _gt, ">=": _ge}
"""Inngest's orderings over any two values (the reference the native fast forms agree with)."""
_TYPE_NAMES = (("bool", _T.BOOL), ("string", _T.STRING), ("timestamp", _T.TIMESTAMP))
FUNCTION_TYPES = {
    name: next((n for n, t in _TYPE_NAMES if t == ret), "dyn") for name, ret, _, _ in _DECLARATIONS
}
"""The static result type of each function above (``"dyn"`` when it depends on the data)."""


def extension() -> cel.CelExtension:
    """The CEL extension declaring (and implementing) the functions above."""
    declarations = [
        cel.FunctionDecl(name, [cel.Overload(f"{name}_dyn", ret, params, impl=impl)])
        for name, ret, params, impl in _DECLARATIONS
    ]
    return cel.CelExtension("inngest", declarations)
