"""Index keys of a match expression: the ``async.<path> == <constant>`` conjuncts.

A wait or cancel matcher is stored with these keys so an incoming event only needs CEL for the
matchers whose keys it satisfies. Extraction must never produce a key the event could fail while
the expression is still true, so it is conservative: only the top-level ``&&``-conjuncts count
(a top-level ``||`` or ternary yields no keys), only plain static paths, and never a null
constant (a missing field also compares equal to null).
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Any

from stepline.expressions._chains import is_root, parse_chain
from stepline.expressions._env import MISSING, constant
from stepline.expressions._tokens import Kind, Token, matching_close, tokenize
from stepline.expressions._values import canonical

_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_OPEN = frozenset({"(", "[", "{"})
_CLOSE = frozenset({")", "]", "}"})


def _depth_zero(tokens: tuple[Token, ...]) -> list[int]:
    """Indices of the tokens outside any bracket."""
    found: list[int] = []
    depth = 0
    for i, token in enumerate(tokens):
        if token.kind is Kind.OP and token.text in _OPEN:
            depth += 1
        elif token.kind is Kind.OP and token.text in _CLOSE:
            depth -= 1
        elif depth == 0:
            found.append(i)
    return found


def _strip_parens(tokens: tuple[Token, ...]) -> tuple[Token, ...]:
    while (
        len(tokens) >= 2 and tokens[0].text == "(" and matching_close(tokens, 0) == len(tokens) - 1
    ):
        tokens = tokens[1:-1]
    return tokens


def _json_like(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_json_like(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    return False


def _path(tokens: tuple[Token, ...], variable: str) -> str | None:
    """The dotted path of ``tokens`` if they are exactly a static chain on ``variable``."""
    if not tokens or not is_root(tokens, 0, {variable}):
        return None
    accesses = parse_chain(tokens, 0)
    if not accesses or accesses[-1].close != len(tokens) - 1:
        return None
    segments: list[str] = []
    for access in accesses:
        if access.key is None:
            return None
        segment = str(access.key)
        if not segment or "." in segment:
            return None
        segments.append(segment)
    return ".".join(segments)


def _raw_equality(text: str, tokens: tuple[Token, ...], variable: str) -> tuple[str, Any] | None:
    """``(path, constant)`` if the tokens are ``<variable path> == <non-null JSON constant>``."""
    relations = [
        i
        for i in _depth_zero(tokens)
        if tokens[i].text in _RELATIONS and tokens[i].kind in (Kind.OP, Kind.IDENT)
    ]
    if len(relations) != 1 or tokens[relations[0]].text != "==":
        return None
    left, right = tokens[: relations[0]], tokens[relations[0] + 1 :]
    for chain, other in ((left, right), (right, left)):
        path = _path(chain, variable)
        if path is None or not other:
            continue
        value = constant(text[other[0].start : other[-1].end])
        if value is MISSING or value is None or not _json_like(value):
            return None
        return path, value
    return None


def _collect(
    text: str, tokens: tuple[Token, ...], variable: str, out: list[tuple[str, Any]]
) -> bool:
    """Add the keys of a conjunction to ``out``; ``False`` if ``tokens`` is not a conjunction."""
    tokens = _strip_parens(tokens)
    top = _depth_zero(tokens)
    for i in top:
        token = tokens[i]
        if token.text == "||":
            return False
        if token.text == "?" and not (i > 0 and tokens[i - 1].text == "."):
            return False  # a ternary
    splits = [i for i in top if tokens[i].text == "&&"]
    if splits:
        bounds = [-1, *splits, len(tokens)]
        for start, stop in itertools.pairwise(bounds):
            _collect(text, tokens[start + 1 : stop], variable, out)
        return True
    found = _raw_equality(text, tokens, variable)
    if found is not None:
        out.append(found)
    return True


def equalities(text: str, variable: str) -> list[tuple[str, Any]]:
    """The ``(path, constant)`` pairs of the ``<variable path> == <non-null constant>``
    conjuncts of ``text``'s top-level conjunction: every value ``text`` is true for has each
    (none when ``text`` is not a conjunction)."""
    pairs: list[tuple[str, Any]] = []
    if not _collect(text, tokenize(text), variable, pairs):
        return []
    return pairs


def index_keys(text: str, variable: str = "async") -> tuple[tuple[str, str], ...]:
    """The ``(path, canonical value)`` equality keys of ``text``'s top-level conjunction."""
    keys = [(path, canonical(value)) for path, value in equalities(text, variable)]
    return tuple(dict.fromkeys((path, key) for path, key in keys if key is not None))


def single_equality(text: str, variable: str = "async") -> tuple[str, Any] | None:
    """``(path, constant)`` when the whole expression is one ``<variable path> == <constant>``
    (the common matcher after substitution), which can be decided without CEL."""
    tokens = _strip_parens(tokenize(text))
    for i in _depth_zero(tokens):
        if tokens[i].text in ("&&", "||", "?"):
            return None
    return _raw_equality(text, tokens, variable)


def cel_equal(left: Any, right: Any) -> bool:
    """CEL's equality on JSON-like values: numbers compare by value whatever their type, other
    types never equal each other (``true != 1``, ``"1" != 1``), lists and maps element-wise."""
    if type(left) is str and type(right) is str:  # the common case: two strings
        return left == right
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(cel_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(cel_equal(left[k], right[k]) for k in left)
    return left is None and right is None


@lru_cache(maxsize=4096)
def equality_template(text: str) -> tuple[str, str] | None:
    """``(event path, async path)`` when the whole expression is ``event.<p> == async.<q>``
    (either order): the shape of ``match=`` and of most ``if_`` matchers, prepared per run
    without re-parsing."""
    tokens = _strip_parens(tokenize(text))
    top = _depth_zero(tokens)
    if any(tokens[i].text in ("&&", "||", "?") for i in top):
        return None
    relations = [i for i in top if tokens[i].text in _RELATIONS]
    if len(relations) != 1 or tokens[relations[0]].text != "==":
        return None
    left, right = tokens[: relations[0]], tokens[relations[0] + 1 :]
    for own, other in ((left, right), (right, left)):
        event_path, async_path = _path(own, "event"), _path(other, "async")
        if event_path is not None and async_path is not None:
            return event_path, async_path
    return None
