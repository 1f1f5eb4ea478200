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
from functools import partial
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
_LENGTH_PACK = _LENGTH.pack
# elements from which an array is packed in one comprehension (a coalesced statement's columns:
# a value of each commit of a group commit); fewer go element by element (``_items``), for
# which making the comprehension costs more than it saves (callgrind, instructions a dump, old
# -> new: 40 texts 105,554 -> 85,869, 40 floats 52,564 -> 44,179, 40 bytea 89,006 -> 68,197;
# 2 integers element-wise 6,925, in a comprehension ~9,700)
_MANY = 8
_NULL = _LENGTH.pack(-1)
# the elements of the text arrays of many dumped in this process, by encoding, each as it is
# written (length and bytes): the same texts come back array after array (a run's id is in its
# pass commits' holds, steps, history and marks, a lease's token in each hold, step ids, kinds
# and worker ids in every history), then looked up, not encoded again. One for every
# connection (a pool hands its connections out in turn, a run's commits go on several); a
# lookup that misses (another thread cleared it) encodes the array, as before
_KNOWN: dict[str, dict[str, bytes]] = {}
_MOST_KNOWN = 4096  # texts kept (the runs in flight's): past it, all are forgotten
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
        self._known = _KNOWN.setdefault(self._encoding, {})

    def dump(self, obj: Any) -> bytes:
        if len(obj) == 1 and type(obj[0]) is str:  # the usual case: one id
            data = obj[0].encode(self._encoding)
            return _ONE.pack(1, 0, _TEXT, 1, 1, len(data)) + data
        if len(obj) >= _MANY:  # each element in the comprehension itself, no call per element
            known = self._known
            parts: list[bytes] | None
            try:
                parts = [known[value] for value in obj]
            except (KeyError, TypeError):  # one not known (a None never is): encoded
                parts = self._encoded(obj)
                if parts is None:  # a None (or a value refused): element-wise
                    return _items(obj, _TEXT, self._item)
            return _HEAD.pack(1, 0, _TEXT, len(obj), 1) + b"".join(parts)
        return _items(obj, _TEXT, self._item)

    def _encoded(self, obj: Any) -> list[bytes] | None:
        """Each element of ``obj`` as written in the array, now known (None: one is not a
        str)."""
        encoding = self._encoding
        try:
            parts = [_LENGTH_PACK(len(data := value.encode(encoding))) + data for value in obj]
        except (AttributeError, TypeError):
            return None
        known = self._known
        if len(known) + len(parts) > _MOST_KNOWN:
            known.clear()
        try:
            known.update(zip(obj, parts, strict=True))
        except TypeError:  # an element not hashable (not a str, that encodes all the same)
            pass
        return parts

    def _item(self, value: Any) -> bytes:
        data: bytes = value.encode(self._encoding)  # not a str: AttributeError (refused)
        return _LENGTH.pack(len(data)) + data


class _Int4ArrayDumper(Dumper):
    format = Format.BINARY
    oid = _INT4_ARRAY

    def dump(self, obj: Any) -> bytes:
        if len(obj) == 1 and type(obj[0]) is int and -_INT4_BOUND <= obj[0] < _INT4_BOUND:
            return _ONE_INT4.pack(1, 0, _INT4, 1, 1, 4, obj[0])
        if len(obj) >= _MANY:
            return _packed(obj, _INT4, _INT4_ITEM.pack, 4, _INT4_VALUE)
        return _items(obj, _INT4, _INT4_VALUE)


class Float8Array(list[float | None]):
    """A list of floats (or None) sent as ``double precision[]``."""

    __slots__ = ()


class ByteaArray(list[bytes | None]):
    """A list of bytes (or None) sent as ``bytea[]``."""

    __slots__ = ()


class BoolArray(list[bool | None]):
    """A list of bools (or None) sent as ``boolean[]``."""

    __slots__ = ()


_FLOAT8, _FLOAT8_ARRAY, _BYTEA, _BYTEA_ARRAY, _BOOL, _BOOL_ARRAY = 701, 1022, 17, 1001, 16, 1000
_FLOAT8_ITEM = struct.Struct("!id")  # length 8, value
_FLOAT8_VALUE = partial(_FLOAT8_ITEM.pack, 8)  # not a number: struct.error
_INT4_VALUE = partial(_INT4_ITEM.pack, 4)  # not an int, or out of int4's range: struct.error
_INT4_BOUND = 2**31
_BOOL_ITEM = struct.Struct("!i?")  # length 1, value


def _items(obj: Any, element: int, item: Any) -> bytes:
    """A binary one-dimension array of ``element`` values, ``item(value)`` the length and bytes
    of each one not None (a value of another type: psycopg's ``DataError``, as its own
    dumpers raise, nothing sent)."""
    if not obj:
        return _EMPTY.pack(0, 0, element)
    parts = [b""]
    nulls = 0
    try:
        for value in obj:
            if value is None:
                parts.append(_NULL)
                nulls = 1
            else:
                parts.append(item(value))
    except (TypeError, AttributeError, struct.error) as exc:
        raise psycopg.DataError(f"cannot dump {value!r} in an array of type {element}") from exc
    parts[0] = _HEAD.pack(1, nulls, element, len(obj), 1)
    return b"".join(parts)


def _packed(obj: Any, element: int, pack: Any, size: int, item: Any) -> bytes:
    """``_items(obj, element, item)`` where ``item(value)`` is ``pack(size, value)``, packed in
    one comprehension (a None, or a value ``pack`` refuses: ``_items``, which says which)."""
    try:
        parts = [pack(size, value) for value in obj]
    except struct.error:
        return _items(obj, element, item)
    return _HEAD.pack(1, 0, element, len(obj), 1) + b"".join(parts)


def _bytea(value: Any) -> bytes:
    if not isinstance(value, bytes):
        if not isinstance(value, bytearray | memoryview):
            raise TypeError(value)
        value = bytes(value)
    data: bytes = value
    return _LENGTH.pack(len(data)) + data


def _bool(value: Any) -> bytes:
    if not isinstance(value, int):  # a bool (an int: as PostgreSQL casts one, not zero)
        raise TypeError(value)
    return _BOOL_ITEM.pack(1, value != 0)


class _Float8ArrayDumper(Dumper):
    format = Format.BINARY
    oid = _FLOAT8_ARRAY

    def dump(self, obj: Any) -> bytes:
        if len(obj) >= _MANY:
            return _packed(obj, _FLOAT8, _FLOAT8_ITEM.pack, 8, _FLOAT8_VALUE)
        return _items(obj, _FLOAT8, _FLOAT8_VALUE)


class _ByteaArrayDumper(Dumper):
    format = Format.BINARY
    oid = _BYTEA_ARRAY

    def dump(self, obj: Any) -> bytes:
        # bytes (the usual case) in one comprehension; anything else element-wise (a None, a
        # bytearray or memoryview: made bytes; another type: refused)
        if len(obj) < _MANY:
            return _items(obj, _BYTEA, _bytea)
        parts = [_LENGTH_PACK(len(value)) + value for value in obj if type(value) is bytes]
        if len(parts) != len(obj):
            return _items(obj, _BYTEA, _bytea)
        return _HEAD.pack(1, 0, _BYTEA, len(obj), 1) + b"".join(parts)


class _BoolArrayDumper(Dumper):
    format = Format.BINARY
    oid = _BOOL_ARRAY

    def dump(self, obj: Any) -> bytes:
        return _items(obj, _BOOL, _bool)


# for every connection made from now on (each copies psycopg's adapters when it is made; this
# module is imported with the store): only these classes of ours are concerned
psycopg.adapters.register_dumper(TextArray, _TextArrayDumper)
psycopg.adapters.register_dumper(Int4Array, _Int4ArrayDumper)
psycopg.adapters.register_dumper(Float8Array, _Float8ArrayDumper)
psycopg.adapters.register_dumper(ByteaArray, _ByteaArrayDumper)
psycopg.adapters.register_dumper(BoolArray, _BoolArrayDumper)
