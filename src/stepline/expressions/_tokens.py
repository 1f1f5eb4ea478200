"""A small CEL tokenizer: enough structure to rewrite and analyse expressions.

It only runs on text the CEL compiler has already accepted, so it is lenient: it never has to
report errors, only to find tokens (and their offsets) the way CEL's lexer does. Strings
(single, double, triple-quoted, raw, bytes) and comments are single tokens or skipped, so
nothing inside them is ever mistaken for code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache


class Kind(Enum):
    """The kind of a token."""

    IDENT = "ident"  # a plain identifier (``event``, ``data``, ``true``, ``in``)
    QUOTED_IDENT = "quoted_ident"  # a backtick-quoted field name (`` `my-field` ``)
    NUMBER = "number"
    STRING = "string"  # a string literal, including raw ones
    BYTES = "bytes"  # a bytes literal (``b"..."``)
    OP = "op"  # an operator or punctuation


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text and its ``[start, end)`` offsets in the source."""

    kind: Kind
    text: str
    start: int
    end: int


_SPACE = re.compile(r"(?:\s+|//[^\n]*)+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED_IDENT = re.compile(r"`[^`]*`")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?"
    r"|[0-9]*\.[0-9]+(?:[eE][+-]?[0-9]+)?"
    r"|[0-9]+[eE][+-]?[0-9]+"
    r"|[0-9]+[uU]?"
)
_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||")
_STRING_PREFIXES = frozenset({"r", "b", "rb", "br"})


def _string_end(text: str, start: int, raw: bool) -> int:
    """Return the offset just past the string literal whose opening quote is at ``start``."""
    quote = text[start]
    delimiter = quote * 3 if text.startswith(quote * 3, start) else quote
    i = start + len(delimiter)
    n = len(text)
    while i < n:
        if not raw and text[i] == "\\":
            i += 2
            continue
        if text.startswith(delimiter, i):
            return i + len(delimiter)
        i += 1
    return n


@lru_cache(maxsize=1024)
def tokenize(text: str) -> tuple[Token, ...]:
    """Split CEL ``text`` into tokens, skipping whitespace and ``//`` comments."""
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        space = _SPACE.match(text, i)
        if space:
            i = space.end()
            continue
        ch = text[i]
        ident = _IDENT.match(text, i)
        if ident:
            word = ident.group()
            end = ident.end()
            if word.lower() in _STRING_PREFIXES and end < n and text[end] in "\"'":
                stop = _string_end(text, end, raw="r" in word.lower())
                kind = Kind.BYTES if "b" in word.lower() else Kind.STRING
                tokens.append(Token(kind, text[i:stop], i, stop))
                i = stop
            else:
                tokens.append(Token(Kind.IDENT, word, i, end))
                i = end
            continue
        if ch in "\"'":
            stop = _string_end(text, i, raw=False)
            tokens.append(Token(Kind.STRING, text[i:stop], i, stop))
            i = stop
            continue
        if ch == "`":
            quoted = _QUOTED_IDENT.match(text, i)
            stop = quoted.end() if quoted else n
            tokens.append(Token(Kind.QUOTED_IDENT, text[i:stop], i, stop))
            i = stop
            continue
        number = _NUMBER.match(text, i)
        if number:
            tokens.append(Token(Kind.NUMBER, number.group(), i, number.end()))
            i = number.end()
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), ch)
        tokens.append(Token(Kind.OP, op, i, i + len(op)))
        i += len(op)
    return tuple(tokens)


def matching_close(tokens: tuple[Token, ...], open_index: int) -> int:
    """Return the index of the bracket closing the one at ``open_index`` (or the last index)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    depth = 0
    for j in range(open_index, len(tokens)):
        text = tokens[j].text
        if tokens[j].kind is Kind.OP:
            if text in pairs:
                depth += 1
            elif text in (")", "]", "}"):
                depth -= 1
                if depth == 0:
                    return j
    return len(tokens) - 1


def field_name(token: Token) -> str:
    """The field name a selection token names (a backtick-quoted name without its quotes)."""
    if token.kind is Kind.QUOTED_IDENT:
        return token.text[1:-1]
    return token.text
