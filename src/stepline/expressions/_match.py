"""Matchers for ``wait_for_event`` and ``cancel_on`` (DESIGN §7.7).

A matcher's expression uses ``event`` (the waiting run's own trigger, known when the wait is
stored) and ``async`` (the incoming candidate). :func:`prepare_match` substitutes the ``event``
values as literals, so the stored text depends on ``async`` only, and extracts its index keys.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from stepline.errors import ExpressionError
from stepline.expressions._compile import Expression, compile_expression
from stepline.expressions._env import MISSING, cel_view, constant, lookup
from stepline.expressions._index import (
    cel_equal,
    equality_template,
    index_keys,
    single_equality,
)
from stepline.expressions._rewrite import substitute
from stepline.expressions._values import canonical, to_literal

_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_SIMPLE_MATCHER = re.compile(r"async\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*) == (dyn\(.*\))")
_DOTTED_SPLIT = " == dyn("


class MatchExpression:
    """A matcher that depends only on the incoming event (``async``).

    ``text`` is storable (:func:`load_match` reloads it); ``index_keys`` are the
    ``(field path, canonical value)`` pairs an incoming event must have for the matcher to
    possibly match, empty when the matcher is a candidate for every event of its name. A matcher
    that is one ``async.<path> == <constant>`` is decided in Python without compiling CEL (most
    waits and ``match=`` matchers after substitution); others compile once, cached.
    """

    __slots__ = ("_fast", "_index_keys", "_text")

    def __init__(
        self, text: str, keys: tuple[tuple[str, str], ...], fast: tuple[str, Any] | None
    ) -> None:
        self._text = text
        self._index_keys = keys
        self._fast = fast

    @property
    def text(self) -> str:
        """The substituted text, to store with the wait."""
        return self._text

    @property
    def expression(self) -> Expression:
        """The compiled CEL expression (compiled on first use; raises ``ExpressionError``)."""
        return _compiled(self._text)

    @property
    def index_keys(self) -> tuple[tuple[str, str], ...]:
        """Equality keys: ``(("data.orderId", "o-1"),)`` for ``async.data.orderId == "o-1"``."""
        return self._index_keys

    def matches(self, async_event: Mapping[str, Any]) -> bool:
        """Whether the incoming event satisfies the matcher (errors are ``False``)."""
        if self._fast is not None:  # (as ``stored_matches`` decides a cached one)
            path, wanted = self._fast
            value = lookup(async_event, path.split("."))
            return value is not MISSING and cel_equal(cel_view(value), wanted)
        return self.expression.matches({"async": async_event})

    def __repr__(self) -> str:
        return f"MatchExpression({self.text!r}, index_keys={self._index_keys!r})"


@lru_cache(maxsize=4096)
def _compiled(text: str) -> Expression:
    return compile_expression(text, variables=("async",))


# Matchers by stored text, the oldest dropped first past the bound. A dict rather than
# ``lru_cache`` so that :func:`prepare_match` can put in what it made: the process that stores a
# wait or a cancel matcher is usually the one whose ingest matches it next. Each holds the
# matcher's parts, a tuple of strings and numbers that the garbage collector stops tracking
# (a MatchExpression object per entry made every full collection walk 65,536 more objects: a
# pause of the whole process, worker and writer, that made due timers late at scale). The
# texts differ by the literal substituted for the run's own event, so the entries grow with
# the waits stored: an equality template's (``event.<path> == async.<path>``, most waits) is
# never put in (``prepare_match``: the index decides it by its text), and the bound is small
# (~530 bytes an entry: 65,536 of them were ~33 MB of a worker with that many waits made).
_Parts = tuple[tuple[tuple[str, str], ...], tuple[str, Any] | None]
_MATCHERS: dict[str, _Parts] = {}
_MATCHERS_MAX = 4096
_matchers_lock = threading.Lock()


def load_match(text: str) -> MatchExpression:
    """Load a stored (substituted) matcher text; matchers are cached by text.

    Raises ``ExpressionError`` if ``text`` is not a valid expression over ``async``.
    """
    found = _MATCHERS.get(text)
    if found is None:
        return _remember(_load_match(text))
    return MatchExpression(text, found[0], found[1])


def stored_matches(text: str, async_event: Mapping[str, Any]) -> bool:
    """``load_match(text).matches(async_event)``: once per candidate wait or cancel matcher
    of an ingested event, so a cached one is decided from its parts, without making the
    matcher object (errors are ``False``; raises ``ExpressionError`` as ``load_match``)."""
    found = _MATCHERS.get(text)
    if found is None or found[1] is None:
        return load_match(text).matches(async_event)
    path, wanted = found[1]
    value = lookup(async_event, path.split("."))
    return value is not MISSING and cel_equal(cel_view(value), wanted)


def index_decides(text: str | None, path: str, value: str) -> bool:
    """Whether the stored matcher ``text`` is exactly ``async.<path> == <value>`` for the string
    ``value``: then an incoming event whose value at ``path`` is a string that an index lookup
    found equal to ``value`` (``values_at``) satisfies it (CEL's equality of two strings), with
    nothing left to evaluate. A matcher not in the cache is decided by its text when it is the
    one :func:`prepare_match` stores for that equality (``_string_equality``): a process that
    did not store the wait (or restarted since) parses nothing for it."""
    if text is None:
        return False
    found = _MATCHERS.get(text)
    if found is None:
        return text == _string_equality(path, value)
    if found[1] is None:
        return False
    fast_path, wanted = found[1]
    return fast_path == path and type(wanted) is str and wanted == value


def _string_equality(path: str, value: str) -> str | None:
    """The text :func:`prepare_match` stores for ``async.<path> == <the string value>`` (its
    literal in ``dyn``); None for a string CEL cannot write. For a path that is not all
    identifiers it is the text earlier versions stored, which loads as that same equality
    (``_dotted_equality``)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        literal = f'"{value}"'  # string_literal's, without its loop over the characters
    else:
        try:
            literal = to_literal(value)
        except ValueError:
            return None
    return f"async.{path} == dyn({literal})"


def forget_matchers() -> None:
    """Empty the matcher cache (as in a process that has just started)."""
    with _matchers_lock:
        _MATCHERS.clear()


def _remember(matcher: MatchExpression) -> MatchExpression:
    with _matchers_lock:
        if len(_MATCHERS) >= _MATCHERS_MAX:
            del _MATCHERS[next(iter(_MATCHERS))]
        _MATCHERS[matcher.text] = (matcher.index_keys, matcher._fast)
    return matcher


def _load_match(text: str) -> MatchExpression:
    simple = _SIMPLE_MATCHER.fullmatch(text)
    if simple is not None:  # the shape prepare_match writes for equality templates
        found = _equality(text, simple.group(1), simple.group(2)[4:-1])
        if found is not None:
            return found
    fast = single_equality(text)
    if fast is None:
        try:
            _compiled(text)  # validate now
        except ExpressionError:
            dotted = _dotted_equality(text)
            if dotted is None:
                raise
            return dotted
    return MatchExpression(text, index_keys(text), fast)


def _equality(text: str, path: str, literal: str, *, exact: bool = False) -> MatchExpression | None:
    """``text``, which is ``async.<path> == dyn(<literal>)``, as a matcher decided without CEL
    when the literal is a string or an integer (``exact``: written as ``to_literal`` writes
    that value)."""
    value = constant(f"dyn({literal})")
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    key = canonical(value)
    if key is None or (exact and to_literal(value) != literal):
        return None
    return MatchExpression(text, ((path, key),), (path, value))


def _dotted_equality(text: str) -> MatchExpression | None:
    """A text that is no expression, as versions from 58cd524 stored an equality over a list
    index or a key that is no identifier (``async.data.items.0 == dyn(5)``,
    ``async.data.order-id == dyn("5")``): the equality it stood for, decided as those versions
    decided it (the dotted path looked up, digits indexing lists). Its literal is exactly the
    one they wrote; a segment may hold anything but a dot, so the first split that leaves such
    a literal is taken."""
    if not text.startswith("async.") or not text.endswith(")"):
        return None
    at = text.find(_DOTTED_SPLIT)
    while at != -1:
        path, literal = text[len("async.") : at], text[at + len(_DOTTED_SPLIT) : -1]
        if "" not in path.split("."):
            found = _equality(text, path, literal, exact=True)
            if found is not None:
                return found
        at = text.find(_DOTTED_SPLIT, at + 1)
    return None


def prepare_match(text: str, own_event: Mapping[str, Any]) -> MatchExpression:
    """Prepare a matcher for a run whose triggering event is ``own_event``.

    ``text`` may use ``event`` (``own_event``) and ``async`` (the incoming event). ``event``
    references are replaced by literals (a missing path by ``null``), then the result is compiled
    and its index keys extracted. Raises ``ExpressionError`` for an invalid expression (the
    position refers to ``text``) or an ``event`` value CEL cannot represent.
    """
    compile_expression(text, variables=("event", "async"))
    paths = equality_template(text)
    if paths is not None:
        value = lookup(own_event, paths[0].split("."))
        if value is not MISSING and isinstance(value, str | int) and not isinstance(value, bool):
            value = cel_view(value)
            literal = to_literal(value)
            key = canonical(value)
            if (
                key is not None
                and constant(f"dyn({literal})") == value
                and _FIELD_PATH.fullmatch(paths[1]) is not None  # written back as it was read
            ):
                # not cached: one entry a wait (its own literal) while nothing needs it: an
                # ingest's index decides a string's by the text (``index_decides``), and
                # ``stored_matches`` loads another's when it is asked
                fast = (paths[1], value)
                stored = f"async.{paths[1]} == dyn({literal})"
                return MatchExpression(stored, ((paths[1], key),), fast)
    try:
        substituted = substitute(text, own_event, "event")
    except (TypeError, ValueError) as exc:
        raise ExpressionError(text, f"cannot substitute the run's event: {exc}") from None
    try:
        return load_match(substituted)
    except ExpressionError as exc:
        reason = f"after substituting the run's event ({substituted!r}): {exc.reason}"
        raise ExpressionError(text, reason) from None


def match_shorthand(field: str) -> str:
    """The expression for ``match="data.orderId"``: ``event.data.orderId == async.data.orderId``.

    Raises ``ExpressionError`` unless ``field`` is a dotted path of identifiers.
    """
    if not isinstance(field, str) or _FIELD_PATH.fullmatch(field) is None:
        raise ExpressionError(
            str(field), "match must be a dotted field path such as 'data.orderId'"
        )
    return f"event.{field} == async.{field}"


def values_at(
    events: Sequence[Mapping[str, Any]], path: str, strings: set[int] | None = None
) -> list[str | None]:
    """``value_at(event, path)`` of each event, the path split once (an ingest verb looks a
    batch of events up in the index under each indexed path of their name). ``strings``, if
    given, gets the positions of the events whose value there is a string (its canonical form
    is the string as CEL sees it: see ``index_decides``)."""
    if not path:
        return [value_at(event, path) for event in events]
    segments = path.split(".")
    key = segments[0] if len(segments) == 1 else None  # a key of the event itself: no walk
    values: list[str | None] = []
    for at, event in enumerate(events):
        if key is not None and type(event) is dict:
            value = event.get(key, MISSING)
        else:
            value = lookup(event, segments)
        if type(value) is str:
            # canonical(a string) is the string, as CEL sees it (cut at a NUL: cel_view)
            values.append(value if "\x00" not in value else cel_view(value))
            if strings is not None:
                strings.add(at)
        else:
            values.append(None if value is MISSING else canonical(cel_view(value)))
    return values


def string_holders(
    events: Sequence[Mapping[str, Any]], positions: Sequence[int], path: str
) -> dict[str, int] | None:
    """Each string among ``values_at(events, path)`` with the first of ``positions`` (one per
    event) whose event holds it; None when an event holds a value there that is not a string
    (missing and null are none). ``path`` is not empty. One pass, no list of the values."""
    segments = path.split(".")
    key = segments[0] if len(segments) == 1 else None  # a key of the event itself: no walk
    first: dict[str, int] = {}
    for event, position in zip(events, positions, strict=True):
        if key is not None and type(event) is dict:
            value = event.get(key)
        else:
            value = lookup(event, segments)
        if type(value) is str:
            if "\x00" in value:
                value = cel_view(value)
            if value not in first:
                first[value] = position
        elif value is not MISSING and value is not None:
            return None
    return first


def value_at(event: Mapping[str, Any], path: str) -> str | None:
    """The canonical value at dotted ``path`` in ``event`` (``None`` when missing or null).

    It is what an index key extracted from ``async.<path> == <value>`` is compared with, so an
    incoming event's value is seen as CEL sees it (digits in ``path`` index lists).
    """
    value = lookup(event, path.split(".")) if path else event
    if value is MISSING:
        return None
    return canonical(cel_view(value))
