"""Lists sent as PostgreSQL arrays of one known element type, dumped without psycopg's look.

psycopg dumps a Python list by looking at its elements first (their types; for integers their
largest value, to choose the array's type), then writes each element into the text form of an
array, quoting it if it must be: ~180 bytecodes of its Python for a list of one id, and an
event sent from another process has six lists on its way to the statement that hands its run
to a worker (``NOTE_UNLESS_SHARED``, ``NO_WAITS_NOR_MATCHERS``, ``HAND_OFF``), before anything
is written to the server. A ``TextArray`` or ``Int4Array`` is a list whose type says what it
holds: dumped as a binary ``text[]`` or ``integer[]``, its elements written one after the
other (~55 bytecodes). The statements cast such a parameter (``%s::text[]``) to the type it is
sent as, so the server reads the same values either way.
"""

from __future__ import annotations

import struct
from typing import Any

import psycopg
from psycopg._encodings import conn_encoding
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper
from psycopg.pq import Format

_TEXT, _TEXT_ARRAY, _INT4, _INT4_ARRAY = 25, 1009, 23, 1007
_HEAD = struct.Struct("!iiIiI")  # dimensions, has nulls, element type; size, lower bound
_EMPTY = struct.Struct("!iiI")  # no dimension
_LENGTH = struct.Struct("!i")
_NULL = _LENGTH.pack(-1)
_INT4_ITEM = struct.Struct("!ii")  # length 4, value
_ONE = struct.Struct("!iiIiIi")  # the head of a one-element array, and its element's length
_ONE_INT4 = struct.Struct("!iiIiIii")


class TextArray(list[str | None]):
    """A list of str (or None) sent as ``text[]``."""

    __slots__ = ()


class Int4Array(list[int | None]):
    """A list of integers (or None) in the int4 range, sent as ``integer[]``."""

    __slots__ = ()


class _TextArrayDumper(Dumper):
    format = Format.BINARY
    oid = _TEXT_ARRAY

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        encoding = conn_encoding(self.connection)
        self._encoding = encoding if encoding != "ascii" else "utf-8"  # as psycopg's str

    def dump(self, obj: Any) -> bytes:
        if len(obj) == 1 and obj[0] is not None:  # the usual case: one id
            data: bytes = obj[0].encode(self._encoding)
            return _ONE.pack(1, 0, _TEXT, 1, 1, len(data)) + data
        if not obj:
            return _EMPTY.pack(0, 0, _TEXT)
        encoding, pack = self._encoding, _LENGTH.pack
        parts = [b""]
        nulls = 0
        for item in obj:
            if item is None:
                parts.append(_NULL)
                nulls = 1
            else:
                data = item.encode(encoding)
                parts.append(pack(len(data)))
                parts.append(data)
        parts[0] = _HEAD.pack(1, nulls, _TEXT, len(obj), 1)
        return b"".join(parts)


class _Int4ArrayDumper(Dumper):
    format = Format.BINARY
    oid = _INT4_ARRAY

    def dump(self, obj: Any) -> bytes:
        if len(obj) == 1 and obj[0] is not None:
            return _ONE_INT4.pack(1, 0, _INT4, 1, 1, 4, obj[0])
        if not obj:
            return _EMPTY.pack(0, 0, _INT4)
        pack = _INT4_ITEM.pack
        parts = [b""]
        nulls = 0
        for item in obj:
            if item is None:
                parts.append(_NULL)
                nulls = 1
            else:
                parts.append(pack(4, item))
        parts[0] = _HEAD.pack(1, nulls, _INT4, len(obj), 1)
        return b"".join(parts)


# for every connection made from now on (each copies psycopg's adapters when it is made; this
# module is imported with the store): only these two classes of ours are concerned
psycopg.adapters.register_dumper(TextArray, _TextArrayDumper)
psycopg.adapters.register_dumper(Int4Array, _Int4ArrayDumper)
