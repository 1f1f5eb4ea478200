"""``/api/v1/events``: events received (filters, cursor), one event with the runs it started,
resumed and cancelled (Inngest's ``/v1/events`` is ``stepline.server.inngest_rest``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline._cursor import encode_cursor
from stepline.server._auth import require_api_token
from stepline.server._problems import Problem
from stepline.server._responses import JSONResponse
from stepline.server._state import stepline_app
from stepline.server.rest._params import (
    cursor_param,
    limit_param,
    time_param,
)
from stepline.server.views import event_json, event_run_json
from stepline.store.records import EventFilter

PREFIX = "/api/v1/events"


def event_routes() -> list[BaseRoute]:
    return [
        Route(PREFIX, list_events, methods=["GET"]),
        Route(PREFIX + "/{event_id}", get_event, methods=["GET"]),
    ]


async def list_events(request: Request) -> Response:
    """Events, newest first: ``name``, ``received_after``, ``received_before``, ``cursor``,
    ``limit``."""
    require_api_token(request)
    app = stepline_app(request)
    limit = limit_param(request)
    query = EventFilter(
        request.query_params.get("name") or None,
        _seconds(time_param(request, "received_after")),
        _seconds(time_param(request, "received_before")),
        cursor_param(request),
        limit + 1,
    )
    engine = app.engine
    found = await engine.read(engine.store.list_events, query)
    page, more = found[:limit], len(found) > limit
    last = page[-1] if page else None
    next_cursor = (
        encode_cursor((last.received_at, last.event.internal_id)) if more and last else None
    )
    return JSONResponse(
        {"data": [event_json(e.event, e) for e in page], "next_cursor": next_cursor}
    )


async def get_event(request: Request) -> Response:
    """One event, with the runs it started, resumed and cancelled (of every app sharing the
    database; ``App.event_runs``), each with its ``effect``."""
    require_api_token(request)
    app = stepline_app(request)
    event_id = request.path_params["event_id"]
    event = await app.get_event(event_id)
    if event is None:
        raise Problem(404, f"no event {event_id!r}")
    runs = await app.event_runs(event_id, limit=1000)
    return JSONResponse({**event_json(event), "runs": [event_run_json(r) for r in runs]})


def _seconds(moment: object) -> float | None:
    from datetime import datetime

    return moment.timestamp() if isinstance(moment, datetime) else None
