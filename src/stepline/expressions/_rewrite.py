"""Text rewrites applied before compiling: null-safe member access, and event substitution.

Both work on tokens, so string literals and comments are never touched, and both keep the rest of
the user's text as it is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from stepline.expressions._chains import is_call, is_root, parse_chain, static_prefix
from stepline.expressions._env import MISSING, cel_view, lookup
from stepline.expressions._tokens import Token, matching_close, tokenize
from stepline.expressions._values import to_literal


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply ``(start, end, replacement)`` edits (sorted by start, stable, non-overlapping)."""
    out: list[str] = []
    position = 0
    for start, end, replacement in sorted(edits, key=lambda edit: edit[0]):
        out.append(text[position:start])
        out.append(replacement)
        position = max(position, end)
    out.append(text[position:])
    return "".join(out)


def _has_arguments(tokens: tuple[Token, ...]) -> set[int]:
    """Indices of the tokens inside ``has(...)`` calls, which must stay plain field selections."""
    inside: set[int] = set()
    for i in range(len(tokens)):
        if is_call(tokens, i, "has"):
            inside.update(range(i + 2, matching_close(tokens, i + 1)))
    return inside


def null_safe(text: str, variables: Collection[str]) -> str:
    """Rewrite member-access chains rooted at ``variables`` so missing fields yield null.

    ``event.data.user["id"]`` becomes ``(event.?data.?user[?"id"].orValue(null))`` (CEL's optional
    syntax). Chains inside ``has(...)`` are left alone; a method call ends a chain.
    """
    tokens = tokenize(text)
    skip = _has_arguments(tokens)
    edits: list[tuple[int, int, str]] = []
    for i, token in enumerate(tokens):
        if i in skip or not is_root(tokens, i, variables):
            continue
        accesses = parse_chain(tokens, i)
        if not accesses:
            continue
        edits.append((token.start, token.start, "("))
        for access in accesses:
            end = tokens[access.open].end
            edits.append((end, end, "?"))
        end = tokens[accesses[-1].close].end
        edits.append((end, end, ".orValue(null))"))
    return _apply(text, edits) if edits else text


def _value_literal(value: Any) -> str:
    return f"dyn({to_literal(None if value is MISSING else cel_view(value))})"


def substitute(text: str, values: Mapping[str, Any], variable: str = "event") -> str:
    """Replace references to ``variable`` in ``text`` by literals of ``values``.

    The longest statically known part of each chain (``event.data.orderId``) becomes a ``dyn(...)``
    literal of the value found there (``dyn(null)`` when missing); computed indices after it stay
    in place. ``has(event.a.b)`` becomes ``true`` or ``false``. Raises ``TypeError`` or
    ``ValueError`` for a value that cannot be written in CEL.
    """
    tokens = tokenize(text)
    edits: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        if is_call(tokens, i, "has") and i + 2 < len(tokens) and is_root(tokens, i + 2, {variable}):
            close = matching_close(tokens, i + 1)
            accesses = parse_chain(tokens, i + 2)
            static = static_prefix(accesses)
            if static and len(static) == len(accesses) and static[-1].close == close - 1:
                found = lookup(values, [a.key for a in static if a.key is not None])
                edits.append(
                    (tokens[i].start, tokens[close].end, str(found is not MISSING).lower())
                )
                i = close + 1
                continue
        if is_root(tokens, i, {variable}):
            static = static_prefix(parse_chain(tokens, i))
            value = lookup(values, [a.key for a in static if a.key is not None])
            last = static[-1].close if static else i
            edits.append((tokens[i].start, tokens[last].end, _value_literal(value)))
            i = last + 1
            continue
        i += 1
    return _apply(text, edits) if edits else text
