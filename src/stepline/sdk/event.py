"""Events: what triggers functions and resumes waiting runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepline._text import clipped, name_problem, text_problem
from stepline.errors import EventError, SerializationError
from stepline.serde import dumps, dumps_if_exact

MAX_EVENT_NAME_CHARS = 255


@dataclass(frozen=True, slots=True)
class Event:
    """An event: ``name`` (e.g. ``"order/created"``), JSON ``data``, optional ``user`` data.

    ``id`` is the sender's de-duplication id: an event whose ``id`` was already seen in the last
    24 hours is stored and starts no run (it still resumes waits and triggers ``cancel_on``).
    ``ts`` is the event time in epoch milliseconds (default: when Stepline receives it), between
    1980 and 2100; a ``ts`` in the future delays the runs the event starts until then.
    ``v`` is the sender's version of the event's shape (Inngest's ``v``, e.g. ``"2024-01-01.1"``):
    stored and given back with the event (``ctx.event.v``, the APIs), never read by Stepline.
    """

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    ts: int | None = None
    user: dict[str, Any] = field(default_factory=dict)
    v: str | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Event:
        """An Event from its JSON form (as stored, or as received by the HTTP API)."""
        return cls(
            name=payload["name"],
            data=payload.get("data") or {},
            id=payload.get("id"),
            ts=payload.get("ts"),
            user=payload.get("user") or {},
            v=payload.get("v"),
        )

    @property
    def timestamp(self) -> datetime | None:
        """``ts`` as an aware UTC datetime."""
        from datetime import UTC

        return None if self.ts is None else datetime.fromtimestamp(self.ts / 1000, UTC)


# Inngest's server refuses event timestamps outside these (pkg/event/event.go, Validate)
TS_MIN_MS = 315_532_800_000  # 1980-01-01T00:00:00Z
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


def check_event_ts(name: str, ts: object) -> None:
    """``EventError`` unless ``ts`` is epoch milliseconds between 1980 and 2100."""
    if isinstance(ts, bool) or not isinstance(ts, int | float) or ts != ts:  # NaN: unordered
        raise EventError(f"event {name!r}: ts must be epoch milliseconds, got {ts!r}")
    if ts < TS_MIN_MS:
        raise EventError(
            f"event {name!r}: ts {ts} is before Jan 1, 1980 (ts is in epoch milliseconds)"
        )
    if ts > TS_MAX_MS:
        raise EventError(
            f"event {name!r}: ts {ts} is after Jan 1, 2100 (ts is in epoch milliseconds)"
        )


def event_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be an event's name, or None: a name is a string of 1 to
    ``MAX_EVENT_NAME_CHARS`` characters, the first not a space, with no ``\\n`` (and
    storable text: no NUL, no lone surrogate). A trigger or a ``cancel_on`` on a name no event
    can have is refused at definition by the same rule."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if name[0].isspace():
        return "starts with a space"
    if "\n" in name:
        return "contains a line break (\\n)"
    return name_problem(name, MAX_EVENT_NAME_CHARS)


def check_event_name(name: object) -> None:
    """``EventError`` unless ``name`` is an event name (``event_name_problem``)."""
    if type(name) is str and name in _NAMES_SEEN:  # a process sends few names, again and again
        return
    problem = event_name_problem(name)
    if problem is not None:
        shown = clipped(name) if isinstance(name, str) else name
        raise EventError(f"event name {shown!r} {problem}")
    if type(name) is str:
        if len(_NAMES_SEEN) >= _NAMES_SEEN_MAX:
            _NAMES_SEEN.clear()
        _NAMES_SEEN.add(name)


def check_event_id(name: str, event_id: str) -> None:
    """``EventError`` if an event's de-duplication id cannot be stored as text (a NUL
    character, a lone surrogate: ``_text.text_problem``; refused the same on every store)."""
    problem = text_problem(event_id)
    if problem is not None:
        raise EventError(f"event {name!r}: id {event_id!r} {problem[0]}")


def check_event_version(name: str, v: object) -> None:
    """``EventError`` unless an event's ``v`` is a string that can be stored as text (no NUL
    character, no lone surrogate: ``_text.text_problem``)."""
    if type(v) is not str:
        raise EventError(f"event {name!r}: v must be a string, got {type(v).__qualname__}")
    problem = text_problem(v)
    if problem is not None:
        raise EventError(f"event {name!r}: v {v!r} {problem[0]}")


# names that passed ``check_event_name`` (its checks cost ~0.5 us a name), at most this many
_NAMES_SEEN: set[str] = set()
_NAMES_SEEN_MAX = 1024


def validate_event(event: Event, max_bytes: int) -> bytes:
    """Check an event at the edge; returns its ``data`` encoded (as the store keeps it, so it
    is encoded once). Raises ``EventError``."""
    if not isinstance(event, Event):
        raise EventError(f"expected a stepline.Event, got {type(event).__qualname__}")
    check_event_name(event.name)
    if not isinstance(event.data, dict):
        raise EventError(
            f"event {event.name!r}: data must be a dict, got {type(event.data).__qualname__}"
        )
    if event.id is not None and (not isinstance(event.id, str) or not event.id):
        raise EventError(f"event {event.name!r}: id must be a non-empty string")
    if event.id is not None:
        check_event_id(event.name, event.id)
    if event.ts:  # 0, like None, means "when received" (as in Inngest)
        check_event_ts(event.name, event.ts)
    if event.v is not None:
        check_event_version(event.name, event.v)
    data = dumps_if_exact(event.data)
    user = dumps_if_exact(event.user) if event.user != {} else b"{}"
    if data is None or user is None:  # refused: ``dumps`` raises, saying where and why
        try:
            data = dumps(event.data, f"data of event {event.name!r}")
            user = dumps(event.user, f"user of event {event.name!r}")
        except SerializationError as exc:
            raise EventError(str(exc)) from exc
    check_event_size(event.name, len(data) + len(user), max_bytes)
    return data


def check_event_size(name: str, size: int, max_bytes: int) -> None:
    """``EventError`` when an event's encoded ``data`` and ``user`` (``size`` bytes) are over
    the limit."""
    if size > max_bytes:
        raise EventError(
            f"event {name!r} is {size} bytes, over the {max_bytes}-byte event size limit"
        )


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What sending one event did: the ``run_ids`` it started, the waiting runs it resumed
    (``resumed_run_ids``), the runs its ``cancel_on`` (or a singleton) cancelled
    (``cancelled_run_ids``), the runs flow control skipped (``skipped``: (function id, reason)
    pairs), whether its id had been seen in the last 24 h (``duplicate``), and the functions of
    other apps (or of this app, not defined in this process) it was handed to (``handed_to``:
    (app id, function id) pairs): their workers plan and start those runs, with their own
    ``if_`` filters and flow control, so their run ids are not known here."""

    event_id: str
    run_ids: tuple[str, ...] = ()
    resumed_run_ids: tuple[str, ...] = ()
    cancelled_run_ids: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    duplicate: bool = False
    handed_to: tuple[tuple[str, str], ...] = ()
