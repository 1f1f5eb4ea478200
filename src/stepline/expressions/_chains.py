"""Member-access chains rooted at a variable: ``event.data.user["id"]``.

A chain starts at a variable (an identifier that is not itself a field name or a function name)
and continues through field selections (``.name``, ``.`quoted```) and index accesses (``[...]``).
It stops before a method call (``.startsWith(``), so ``event.data.name.startsWith("a")`` has the
chain ``event.data.name``, and before an access that is already optional (``.?x``, ``[?x]``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from stepline.expressions._env import MISSING, constant
from stepline.expressions._tokens import Kind, Token, field_name, matching_close

_FIELD_KINDS = (Kind.IDENT, Kind.QUOTED_IDENT)


@dataclass(frozen=True, slots=True)
class Access:
    """One step of a chain: ``open`` is the index of its ``.`` or ``[``, ``close`` of its last
    token (the field name or the ``]``); ``key`` is the field name or the literal index (a ``str``
    or an ``int``), or ``None`` when the index is computed."""

    open: int
    close: int
    key: str | int | None


def is_root(tokens: tuple[Token, ...], i: int, variables: Collection[str]) -> bool:
    """Whether ``tokens[i]`` is a reference to one of ``variables`` (not a field, not a call)."""
    token = tokens[i]
    if token.kind is not Kind.IDENT or token.text not in variables:
        return False
    if i > 0 and tokens[i - 1].text == ".":
        return False
    if i > 1 and tokens[i - 1].text == "?" and tokens[i - 2].text == ".":
        return False
    return not (i + 1 < len(tokens) and tokens[i + 1].text == "(")


def is_call(tokens: tuple[Token, ...], i: int, name: str) -> bool:
    """Whether ``tokens[i]`` is a global call of ``name`` (``has(``), not a method call."""
    token = tokens[i]
    return (
        token.kind is Kind.IDENT
        and token.text == name
        and i + 1 < len(tokens)
        and tokens[i + 1].text == "("
        and not (i > 0 and tokens[i - 1].text == ".")
    )


def _literal_key(tokens: tuple[Token, ...]) -> str | int | None:
    """The value of an index that is a single string or integer literal, else ``None``."""
    if len(tokens) != 1 or tokens[0].kind not in (Kind.STRING, Kind.NUMBER):
        return None
    value = constant(tokens[0].text)
    if value is MISSING or isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value


def parse_chain(tokens: tuple[Token, ...], root: int) -> list[Access]:
    """The accesses following the variable at ``tokens[root]``, in order (possibly none)."""
    accesses: list[Access] = []
    j = root + 1
    n = len(tokens)
    while j < n:
        token = tokens[j]
        if token.kind is not Kind.OP:
            break
        if token.text == "." and j + 1 < n and tokens[j + 1].kind in _FIELD_KINDS:
            if j + 2 < n and tokens[j + 2].text == "(":
                break  # a method call: the chain ends before it
            accesses.append(Access(j, j + 1, field_name(tokens[j + 1])))
            j += 2
        elif token.text == "[" and j + 1 < n and tokens[j + 1].text != "?":
            close = matching_close(tokens, j)
            accesses.append(Access(j, close, _literal_key(tokens[j + 1 : close])))
            j = close + 1
        else:
            break
    return accesses


def static_prefix(accesses: list[Access]) -> list[Access]:
    """The leading accesses whose key is known without evaluating anything."""
    prefix: list[Access] = []
    for access in accesses:
        if access.key is None:
            break
        prefix.append(access)
    return prefix
