"""CEL environments, constant evaluation and what the binding does to Python values.

``cel-expr-python`` converts Python data into CEL values on every evaluation. One quirk matters
for matching: strings are cut at the first NUL character on the way in (``"a\\x00b"`` is seen as
``"a"``) while a CEL string literal keeps it. :func:`cel_view` mirrors that conversion, so literals
we generate and index values we compute agree with what CEL sees in event data. It is probed once
at import, so a fixed binding switches the mirroring off by itself.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings

from stepline._text import is_digits
from stepline.expressions._functions import extension

ERROR_TYPE: Final = cel.Type.ERROR


def _restore_none(count: int) -> None:
    for _ in range(count):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(None))


def _nones(value: Any) -> int:
    """How many ``None`` a converted value holds (at any depth)."""
    if value is None:
        return 1
    if isinstance(value, list):
        return sum(_nones(item) for item in value)
    if isinstance(value, dict):
        return sum(_nones(item) for item in value.values())
    return 0


def _probe_none_release() -> bool:
    """Whether the binding releases a reference to ``None`` it never took when it hands out a
    null (``cel-expr-python`` 0.1.x does: after a few thousand null results the interpreter
    aborts with "deallocating None"). The references the probe loses are given back."""
    program = cel.NewEnv().compile("null")
    before = sys.getrefcount(None)
    for _ in range(16):
        program.eval().plain_value()
    lost = before - sys.getrefcount(None)
    if lost > 0:
        _restore_none(lost)
    return lost >= 16


RELEASES_NONE: Final = _probe_none_release()


def to_python(value: cel.Value) -> Any:
    """``value`` as a plain Python value, giving back the references to ``None`` the binding
    releases for each null in it (see :func:`_probe_none_release`)."""
    result = value.plain_value()
    if RELEASES_NONE and (count := _nones(result)):
        _restore_none(count)
    return result


def is_true(value: cel.Value) -> bool:
    """Whether ``value`` is the boolean ``true`` (a null's reference to ``None`` given back)."""
    raw = value.value()
    if raw is None and RELEASES_NONE:
        _restore_none(1)
    return raw is True


@lru_cache(maxsize=32)
def environment(variables: tuple[str, ...]) -> cel.Env:
    """The CEL environment declaring ``variables`` (all dynamically typed) and Inngest's
    functions, cached per tuple."""
    return cel.NewEnv(
        variables={name: cel.Type.DYN for name in variables},
        extensions=[ext_optional.ExtOptional(), ext_strings.ExtStrings(), extension()],
    )


class _Missing:
    """The type of :data:`MISSING`."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""Returned by :func:`constant` for text that is not a constant, and by path lookups."""


_PLAIN_STRING = re.compile(r'(?:dyn\()?"([^"\\\x00-\x1f]*)"\)?')
_PLAIN_INT = re.compile(r"(?:dyn\()?(-?(?:0|[1-9][0-9]{0,17}))\)?")


@lru_cache(maxsize=65536)
def constant(text: str) -> Any:
    """Evaluate ``text`` as a variable-free CEL expression; :data:`MISSING` if it is not one.

    Plain string and integer literals (``"o-1"``, ``dyn(42)``: what substituted matchers
    contain) are read directly; anything else is evaluated by CEL."""
    plain = _PLAIN_STRING.fullmatch(text)
    if plain is not None and plain.group(0).startswith("dyn(") == plain.group(0).endswith(")"):
        return plain.group(1)
    plain = _PLAIN_INT.fullmatch(text)
    if plain is not None and text.startswith("dyn(") == text.endswith(")"):
        return int(plain.group(1))
    try:
        value = environment(()).compile(text).eval()
        if value.type() == ERROR_TYPE:
            return MISSING
        return to_python(value)
    except Exception:  # not a constant (references a variable), or not convertible
        return MISSING


def _probe_nul_truncation() -> bool:
    """Whether the binding cuts Python strings at NUL when converting data (it does in 0.1.x)."""
    try:
        seen = to_python(environment(("x",)).compile("x").eval(data={"x": "a\x00b"}))
    except Exception:  # pragma: no cover - defensive: assume the documented behaviour
        return True
    return bool(seen != "a\x00b")


NUL_TRUNCATES: Final = _probe_nul_truncation()


def cel_view(value: Any) -> Any:
    """Return ``value`` as the binding will see it in an activation (strings cut at NUL)."""
    if not NUL_TRUNCATES:
        return value
    if isinstance(value, str):
        return value.split("\x00", 1)[0]
    if isinstance(value, bytes | bytearray):
        return bytes(value).split(b"\x00", 1)[0]
    if isinstance(value, Mapping):
        return {cel_view(k): cel_view(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [cel_view(v) for v in value]
    return value


def lookup(value: Any, path: Sequence[str | int]) -> Any:
    """Follow ``path`` (map keys, list indices) into JSON-like ``value``; :data:`MISSING` if absent.

    Integer keys index lists; string keys made of digits index lists too, so a dotted path such
    as ``"data.items.0"`` reaches the first item.
    """
    current = value
    for key in path:
        if type(current) is dict or isinstance(current, Mapping):  # a dict without the ABC's check
            if key not in current:
                return MISSING
            current = current[key]
        elif isinstance(current, list | tuple):
            if isinstance(key, str):
                if not is_digits(key):
                    return MISSING
                key = int(key)
            if isinstance(key, bool) or not 0 <= key < len(current):
                return MISSING
            current = current[key]
        else:
            return MISSING
    return current
