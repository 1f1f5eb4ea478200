"""JSON encoding of everything Stepline persists (step outputs, results, event data), via orjson.

The rule: a value is stored only if decoding it gives the value back, so what a step returns is
what every replay returns. JSON's own types pass as they are: ``dict`` with ``str`` keys,
``list``, ``str``, ``int`` (64-bit), finite ``float``, ``bool``, ``None`` (exact types, not
subclasses). Three documented conversions are kept: a ``tuple`` (named tuples too) is stored as a
list, a dataclass as a dict of its fields, a pydantic model (anything with ``model_dump``) as its
JSON-mode dump; the function sees the converted value on the first pass as on replays.

Anything else is refused with ``SerializationError`` naming what was being stored, the path inside
the value (``$.items[2].at``) and the type: ``datetime``/``date``/``time``, ``UUID``, ``set``,
``Decimal``, ``bytes``, enums, ``NaN``/``inf``, non-string dict keys, subclasses of the JSON types
(``defaultdict``, ``IntEnum``, ...). Nothing is converted silently.

Cost: orjson encodes (and refuses most bad values), then one pass over the value in Python checks
what orjson would have converted quietly (NaN, UUIDs, enums, subclasses). The path is only worked
out when a value is refused.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from stepline.errors import SerializationError

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson encodes
_INF = float("inf")
_MAX_DEPTH = 254  # orjson's nesting limit
_SCALARS = (str, bool, type(None))


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__qualname__}")


def dumps(value: Any, what: str = "value") -> bytes:
    """Encode ``value`` as JSON bytes; ``what`` names it in errors ("output of step 'x'").

    Raises ``SerializationError`` (with ``what``, ``path`` and ``type_name``) when the value
    would not decode back to itself.
    """
    try:
        data = orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError as exc:
        raise _refusal(value, what, str(exc)) from exc
    if not _exact(value, 0):
        raise _refusal(value, what, "the value would not decode back to itself")
    return memoryview(data).tobytes()  # see dumps_exact


def dumps_if_exact(value: Any) -> bytes | None:
    """``dumps(value)``, or None where ``dumps`` would refuse it (it says why): the check of a
    value at the edge, without making the text naming it unless it is refused."""
    try:
        data = orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError:
        return None
    return memoryview(data).tobytes() if _exact(value, 0) else None


def dumps_exact(value: Any) -> bytes:
    """``dumps`` for a value already known to decode back to itself: one ``dumps`` accepted it
    (an event's data at the edge), or it is built of such values and of decoded JSON (a system
    event's data). The same bytes, without walking the value again (the store encodes every
    event it stores this way).

    The bytes are copied out of orjson's result: orjson writes into a buffer it over-allocates
    then shrinks, and such buffers, kept alive by the thousand (a batch of events, the outputs
    of the steps their waits resolve) then freed together, cost ~2 µs each to allocate and free
    (glibc's malloc, trimming and growing the heap) against ~0.2 µs for a copy of the size."""
    return memoryview(orjson.dumps(value, default=_default, option=_OPTIONS)).tobytes()


def loads(data: bytes | str | None) -> Any:
    """Decode JSON bytes (None stays None)."""
    if data is None:
        return None
    return orjson.loads(data)


# -- the fast check (no paths) ----------------------------------------------------------------
def _exact(value: Any, depth: int) -> bool:
    """True when the JSON of ``value`` decodes to ``value`` (or its documented conversion).

    Scalars inside containers are checked inline: a call per element would double the cost."""
    t = type(value)
    if t in _SCALARS:
        return True
    if t is int:
        number: int = value
        return _INT_MIN <= number <= _INT_MAX
    if t is float:
        real: float = value
        return -_INF < real < _INF
    if depth >= _MAX_DEPTH:
        return False
    items: Iterable[Any]
    if t is dict:
        for key in value:
            if type(key) is not str:
                return False
        items = value.values()
    elif t is list or isinstance(value, tuple):
        items = value
    else:
        converted = _converted(value)
        return converted is not _REFUSED and _exact(converted, depth + 1)
    for item in items:
        ti = type(item)
        if ti is str or ti is bool or item is None:
            continue
        if ti is float:
            if -_INF < item < _INF:
                continue
            return False
        if ti is int:
            if _INT_MIN <= item <= _INT_MAX:
                continue
            return False
        if not _exact(item, depth + 1):
            return False
    return True


_REFUSED: Any = object()


def _converted(value: Any) -> Any:
    """A dataclass or pydantic model as the JSON object it is stored as, else ``_REFUSED``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    return _REFUSED


# -- the diagnosis (only for a refused value) -----------------------------------------------------
def _refusal(value: Any, what: str, fallback: str) -> SerializationError:
    found = next(_problems(value, "$", 0), None)
    if found is None:
        path, type_name, reason = "$", type(value).__qualname__, fallback
    else:
        path, type_name, reason = found
    return SerializationError(what, path, type_name, reason)


def _problems(value: Any, path: str, depth: int) -> Iterator[tuple[str, str, str]]:
    """Yield ``(path, type name, reason)`` for each part of ``value`` that cannot be stored."""
    t = type(value)
    if value is None or t is bool:
        return
    if t is str:
        if not _valid_utf8(value):
            yield path, "str", "it is not valid Unicode text (it holds a lone surrogate)"
        return
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            yield path, "int", "integers must fit in 64 bits; store a string (str(value))"
        return
    if t is float:
        if not -_INF < value < _INF:
            yield path, "float", f"{value!r} is not a JSON number; store None or a string"
        return
    if depth >= _MAX_DEPTH:
        yield path, t.__qualname__, f"it is nested deeper than {_MAX_DEPTH} levels"
        return
    if t is dict:
        for key, item in value.items():
            if type(key) is not str:
                reason = f"dict keys must be strings, this one is {key!r}; convert the keys"
                yield path, f"dict key of type {_type_name(key)}", reason
                return
            if not _valid_utf8(key):
                yield path, "dict key of type str", "the key is not valid Unicode"
                return
            yield from _problems(item, _key_path(path, key), depth + 1)
        return
    if t is list or isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from _problems(item, f"{path}[{index}]", depth + 1)
        return
    converted = _converted(value)
    if converted is _REFUSED:
        yield path, _type_name(value), _hint(value)
        return
    yield from _problems(converted, path, depth + 1)


def _hint(value: Any) -> str:
    """How to store ``value`` instead (it is of a type JSON cannot give back)."""
    import datetime
    import decimal
    import uuid

    if isinstance(value, datetime.date | datetime.time):
        return "store value.isoformat() and parse it back"
    if isinstance(value, uuid.UUID):
        return "store str(value)"
    if isinstance(value, set | frozenset):
        return "store a list (sorted(value) or list(value))"
    if isinstance(value, enum.Enum):
        return "store value.value (or value.name)"
    if isinstance(value, decimal.Decimal):
        return "store str(value)"
    if isinstance(value, bytes | bytearray | memoryview):
        return "store text (e.g. base64)"
    for base in (dict, list, str, int, float):
        if isinstance(value, base):
            return f"replay would give a plain {base.__name__}; store {base.__name__}(value)"
    return "convert it to JSON types (dict, list, str, int, float, bool, None)"


def _type_name(value: Any) -> str:
    t = type(value)
    module = t.__module__
    return t.__qualname__ if module in ("builtins", "__main__") else f"{module}.{t.__qualname__}"


def _key_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
