"""The dashboard's event pages: the event stream, one event's page, and the form that sends a
test event (prefilled from a function's trigger)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response

from stepline.errors import EventError, SteplineError
from stepline.sdk.event import Event
from stepline.sdk.run import EventRun
from stepline.server.dashboard import _views as views
from stepline.server.dashboard._auth import Session, read_form
from stepline.server.dashboard._responses import json_or_text, succeeded
from stepline.server.dashboard._run_filters import PAGE_SIZE
from stepline.store.records import EventRecord

if TYPE_CHECKING:
    from stepline.sdk.app import App
    from stepline.server.dashboard._pages import Dashboard

RUNS_PER_EVENT = 20  # runs an event row of the event stream shows
RUNS_PER_EVENT_PAGE = 1000  # runs an event's page shows


async def event_rows(
    app: App, events: list[EventRecord], duplicates: set[str]
) -> list[dict[str, Any]]:
    """Each event's row: its payload and what it did to runs (one read for them all)."""
    engine = app.engine
    ids = [event.internal_id for event in events]
    acted = await engine.read(engine.store.event_runs, ids, RUNS_PER_EVENT)
    by_event: dict[str, list[EventRun]] = {}
    for record in acted:
        by_event.setdefault(record.event_id, []).append(EventRun.from_record(record))
    return [
        {
            "event": event,
            "payload": event.payload(),
            "runs": by_event.get(event.internal_id, []),
            "duplicate": event.internal_id in duplicates,
        }
        for event in events
    ]


class EventPages:
    """The event pages of a ``Dashboard`` (its app, its rendering)."""

    def __init__(self, board: Dashboard) -> None:
        self.board = board
        self.app = board.app

    async def events(self, request: Request, session: Session) -> Response:
        """The event stream: newest events, their payloads and the runs each started, resumed
        and cancelled."""
        name = request.query_params.get("name") or None
        found = await self.app.events(name=name, limit=PAGE_SIZE)
        duplicates = {s.event.internal_id for s in found if s.duplicate}
        rows = await event_rows(self.app, [stored.event for stored in found], duplicates)
        return self.board.render(
            request, session, "events.html", nav="events", rows=rows, name=name or ""
        )

    async def event_page(self, request: Request, session: Session) -> Response:
        """One event: its payload and the runs it started, resumed and cancelled."""
        event_id = request.path_params["event_id"]
        event = await self.app.get_event(event_id)
        if event is None:
            return self.board.render(
                request, session, "missing.html", 404, what=f"event {event_id}", nav="events"
            )
        runs = await self.app.event_runs(event_id, limit=RUNS_PER_EVENT_PAGE)
        return self.board.render(
            request,
            session,
            "event.html",
            nav="events",
            event=event,
            payload=event.payload(),
            runs=runs,
        )

    async def send_page(self, request: Request, session: Session) -> Response:
        """The form to send a test event, prefilled from a function's trigger."""
        fn_id = request.query_params.get("function")
        name, data = "", "{}"
        fn = next((f for f in self.app.functions if f.id == fn_id), None)
        if fn is not None:
            name, data = views.trigger_example(fn)
        return self.board.render(
            request,
            session,
            "send.html",
            nav="send",
            name=request.query_params.get("name", name),
            data=data,
            examples=self._examples(),
        )

    def _examples(self) -> list[dict[str, str]]:
        found = []
        for fn in self.app.functions:
            name, data = views.trigger_example(fn)
            if name:
                found.append({"function": fn.id, "name": name, "data": data})
        return found

    async def send(self, request: Request) -> Response:
        """Send an event (POST: ``name``, ``data`` a JSON object)."""
        form = await read_form(request)
        name = form.get("name")
        raw = form.get("data") or "{}"
        if not isinstance(name, str) or not name.strip() or not isinstance(raw, str):
            return json_or_text({"error": "give the event a name"}, 400)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return json_or_text({"error": f"data is not JSON: {exc}"}, 400)
        if not isinstance(data, dict):
            return json_or_text({"error": "data must be a JSON object"}, 400)
        try:
            [outcome] = await self.app.send_with_outcomes(Event(name=name.strip(), data=data))
        except (EventError, SteplineError) as exc:
            return json_or_text({"error": str(exc)}, 400)
        result = {"event_id": outcome.event_id, "run_ids": list(outcome.run_ids)}
        return succeeded(request, "/runs?" + urlencode({"event": outcome.event_id}), result)
