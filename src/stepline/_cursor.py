"""Cursors of lists (runs, events, searches): an opaque text for a position in a list that is
kept newest first, ``(time, id)``, so a page boundary never moves when rows are added. The REST
API gives them (``next_cursor``, a run's ``cursor``) and the CLI prints and reads them."""

from __future__ import annotations

import base64
import binascii

import orjson

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(position: tuple[float, str]) -> str:
    """An opaque cursor for a list position."""
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    """The list position an ``encode_cursor`` text holds; ``ValueError`` for another text."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise ValueError("invalid cursor: pass the next_cursor of a previous page") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int | float)
        or isinstance(value[0], bool)
        or not isinstance(value[1], str)
    ):
        raise ValueError("invalid cursor: pass the next_cursor of a previous page")
    return float(value[0]), value[1]
