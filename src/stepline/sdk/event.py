"""Events: what triggers functions and resumes waiting runs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepline.errors import EventError, SerializationError
from stepline.serde import dumps

_NAME = re.compile(r"^[^\s].{0,254}$")


@dataclass(frozen=True, slots=True)
class Event:
    """An event: ``name`` (e.g. ``"order/created"``), JSON ``data``, optional ``user`` data.

    ``id`` is the sender's de-duplication id: an event whose ``id`` was already seen in the last
    24 hours is stored but triggers nothing. ``ts`` is the event time in epoch milliseconds
    (default: when Stepline receives it).
    """

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    ts: int | None = None
    user: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Event:
        """An Event from its JSON form (as stored, or as received by the HTTP API)."""
        return cls(
            name=payload["name"],
            data=payload.get("data") or {},
            id=payload.get("id"),
            ts=payload.get("ts"),
            user=payload.get("user") or {},
        )

    @property
    def timestamp(self) -> datetime | None:
        """``ts`` as an aware UTC datetime."""
        from datetime import UTC

        return None if self.ts is None else datetime.fromtimestamp(self.ts / 1000, UTC)


def validate_event(event: Event, max_bytes: int) -> int:
    """Check an event at the edge; returns its encoded size. Raises ``EventError``."""
    if not isinstance(event, Event):
        raise EventError(f"expected a stepline.Event, got {type(event).__qualname__}")
    if not isinstance(event.name, str) or not _NAME.match(event.name):
        raise EventError(
            f"event name must be a non-empty string of at most 255 characters, got {event.name!r}"
        )
    if not isinstance(event.data, dict):
        raise EventError(
            f"event {event.name!r}: data must be a dict, got {type(event.data).__qualname__}"
        )
    if event.id is not None and (not isinstance(event.id, str) or not event.id):
        raise EventError(f"event {event.name!r}: id must be a non-empty string")
    try:
        size = len(dumps(event.data, f"data of event {event.name!r}")) + len(
            dumps(event.user, f"user of event {event.name!r}")
        )
    except SerializationError as exc:
        raise EventError(str(exc)) from exc
    if size > max_bytes:
        raise EventError(
            f"event {event.name!r} is {size} bytes, over the {max_bytes}-byte event size limit"
        )
    return size
