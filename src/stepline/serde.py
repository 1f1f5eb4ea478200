"""JSON encoding of everything Stepline persists (step outputs, results, event data), via orjson.

Dataclasses, datetimes and UUIDs encode natively; pydantic models (anything with ``model_dump``)
encode as their JSON-mode dump. Anything else is refused with ``SerializationError`` naming what
was being stored and the offending type.
"""

from __future__ import annotations

from typing import Any

import orjson

from stepline.errors import SerializationError

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__qualname__}")


def dumps(value: Any, what: str = "value") -> bytes:
    """Encode ``value`` as JSON bytes; ``what`` names it in errors ("output of step 'x'")."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError as exc:
        raise SerializationError(f"{what} is not JSON-serializable: {exc}") from exc


def loads(data: bytes | str | None) -> Any:
    """Decode JSON bytes (None stays None)."""
    if data is None:
        return None
    return orjson.loads(data)
