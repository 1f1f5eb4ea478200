"""Inngest's REST API (``api.inngest.com/v1``; ``pkg/api/apiv1`` in Inngest's server) as
Stepline serves it, for tools and scripts written against Inngest's servers. Every answer is
``{"data": ..., "metadata": {"fetched_at", "cached_until"}}`` (Inngest's ``WriteResponse`` /
``WriteCachedResponse``: an event cacheable 5 s, an event's runs 15 s, a run 3 s, the list
not, with ``Cache-Control: private, max-age=N``); each route asks for the REST API's token or
the signing key the server shares with its SDK apps, as Inngest's API takes it
(``require_inngest_api_auth``; open on a loopback ``stepline dev``), and sees every app sharing
the database, as Inngest's workspace does. An error is ``{"error", "data": null, "status"}``, as
Inngest's ``publicerr.WriteHTTP`` writes one.

- ``GET /v1/events``: events newest first by internal id, as Inngest's ``WorkspaceEvents``
  lists them (its ``ORDER BY internal_id DESC``; an id's time is when it was received, or the
  sender's seed's for an SDK's ``x-inngest-event-id-seed``): ``name``, ``received_after`` and
  ``received_before`` (ISO 8601, the other date layouts of Inngest's ``dateutil``, or epoch
  milliseconds; 400 ``Invalid received_after query parameter`` otherwise, ``_received``;
  without ``received_after``, the events received in the last hour, as Inngest's
  ``WorkspaceEventsOpts.Validate`` defaults its ``Oldest``), ``limit`` (default 20, as
  Inngest's ``DefaultEvents``; a larger one is cut to 51, its ``cqrs.MaxEvents``), ``cursor``:
  a ULID (400 ``Invalid cursor query parameter`` otherwise, as Inngest's ``ulid.Parse``), only
  the events whose internal id is below it: the last ``internal_id`` of a page gives the next
  page, each event once (ids are unique and ordered), whether or not the cursor's event is
  still stored. Inngest's own events (``inngest/function.finished``... : names starting with
  ``inngest/``) are left out, named or not, as Inngest's ``newEventsQueryBuilder`` leaves them
  out (``IncludeInternalEvents``, which the route never sets).
- ``GET /v1/events/{event_id}``: one event, whatever its name (400 ``Invalid event ID``, 404
  ``Event not found``).
- ``GET /v1/events/{event_id}/runs``: the runs the event started (``_event_runs``).
- ``GET /v1/runs/{run_id}``: one run, in the shape of an event's runs (400 ``Invalid run ID``
  for an id that is no ULID, as Inngest's; 404 ``Unable to load function run`` for one not
  stored, where Inngest answers 500 with that message).
- ``DELETE /v1/runs/{run_id}``: cancel it (200, empty, as Inngest's ``CancelFunctionRun``; 400
  ``Invalid run ID``; 404 for a run that does not exist or has ended: nothing to cancel).
- ``POST /v1/cancellations``: bulk cancellation (``{app_id, function_id, started_after?,
  started_before, if?}``, checked as Inngest's ``CreateCancellationBody.Validate``: 400 naming
  each problem, 404 ``function not found``, 400 ``invalid expression: ...``). ``function_id`` is
  the function's id in its app: a native function of the served ``App`` (``app_id`` its id) or
  an SDK app's (``app_id`` the SDK app's id; Stepline knows the function by its slug
  ``<app_id>-<function_id>``). The matching runs (created in the range, their event matching
  ``if``) are cancelled at once, every one of them (one listing of the function's
  unfinished runs, then a write per run), as Inngest's API is "immediate"; the answer
  is the cancellation as Inngest shows it, with the count of runs it cancelled. Inngest keeps
  a cancellation as a record to list (``GET``) and delete; here it has done its work when the
  answer comes, so there is none to keep: ``GET /v1/cancellations`` lists none, ``DELETE
  /v1/cancellations/{id}`` answers 404 ``Cancellation not found`` (400 ``Invalid cancellation
  ID`` for an id that is no ULID), as Inngest's for a cancellation it does not hold.

An event is Inngest's ``cqrs.Event`` (``pkg/cqrs/events.go``): ``{internal_id, account_id,
environment_id, source, source_id, received_at, id, name, data, user?, ts, v?}``: the account
and environment the zero UUID, ``source`` "" and ``source_id`` null, as Inngest's dev server
stores its events (runs and cancellations are of its environment,
``00000000-0000-4000-b000-000000000000``); ``received_at`` when the server received it;
``id`` the sender's id, or the internal one when it gave none (as Inngest stores it); ``user``
only when not empty, ``v`` (the sender's version of the event) only when given
(``omitempty``); ``ts`` in epoch milliseconds.
A run is ``cqrs.FunctionRun``: ``{run_id, run_started_at, function_id, function_version,
environment_id, event_id, batch_id?, cron?, status, ended_at, output?}``: ``status``
``Running`` until it is ``Completed``, ``Failed`` or ``Cancelled``; ``ended_at`` null until
then; ``output`` once it has ended (the function's result, a failed run's error, null for a
cancelled one); ``batch_id`` (a batch's first event) and ``cron`` (a cron run's schedule) only
for such runs (``omitempty``).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline._ids import new_id
from stepline._text import is_digits
from stepline.errors import ConfigError
from stepline.server._auth import require_inngest_api_auth
from stepline.server._problems import Problem
from stepline.server._responses import JSONResponse
from stepline.server._state import stepline_app
from stepline.server.gql import cron_of, is_batch_run
from stepline.server.rest._params import json_body, parse_time
from stepline.server.views import iso
from stepline.store.records import EventFilter, StoredEvent

if TYPE_CHECKING:
    from stepline.sdk.app import App
    from stepline.sdk.run import Run

Handler = Callable[[Request], Awaitable[Response]]
RUN_STATUS = {"COMPLETED": "Completed", "FAILED": "Failed", "CANCELLED": "Cancelled"}
MAX_EVENT_RUNS = 1000
EVENT_CACHED = 5  # seconds: how long Inngest's API says an event may be cached (``getEvent``)
RUNS_CACHED = 15  # an event's runs (``getEventRuns``)
RUN_CACHED = 3  # a run (``GetFunctionRun``: "to prevent stale displays")
DEFAULT_EVENTS = 20  # Inngest's DefaultEvents
MAX_EVENTS = 51  # Inngest's cqrs.MaxEvents: a larger limit is cut to it
DEFAULT_WINDOW = 3600.0  # seconds: without received_after, the last hour's (Inngest's Oldest)
EVERY_RUN = 10**9  # a bulk cancellation's limit: every matching run
# the environment of runs and cancellations: Inngest's dev server's (consts.DevServerEnvID, what
# its NilAuthFinder authenticates every request as: its runs are stored and read with it)
ENVIRONMENT_ID = "00000000-0000-4000-b000-000000000000"
# an event's account and environment: none, the zero UUID, as Inngest's dev server stores events
# (its InsertEvent writes neither)
NO_ID = "00000000-0000-0000-0000-000000000000"
ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")  # Crockford base32, 128 bits
LAST_ULID = "7" + "Z" * 25  # the greatest: every id is below it (Inngest's endULID, far out)


def inngest_rest_routes() -> list[BaseRoute]:
    """The routes of the module."""
    routes: list[tuple[str, Handler, str]] = [
        ("/v1/events", _events, "GET"),
        ("/v1/events/{event_id}", _event, "GET"),
        ("/v1/events/{event_id}/runs", _event_runs, "GET"),
        ("/v1/runs/{run_id}", _run, "GET"),
        ("/v1/runs/{run_id}", _cancel_run, "DELETE"),
        ("/v1/cancellations", _create_cancellation, "POST"),
        ("/v1/cancellations", _cancellations, "GET"),
        ("/v1/cancellations/{cancellation_id}", _delete_cancellation, "DELETE"),
    ]
    return [Route(path, _publicerr(handler), methods=[method]) for path, handler, method in routes]


def _publicerr(handler: Handler) -> Handler:
    """``handler`` answering the ``Problem`` it raises (a refused token, a time it cannot read)
    as Inngest's ``publicerr.WriteHTTP`` writes its errors, as its own answers are."""

    @functools.wraps(handler)
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except Problem as problem:
            return _error(problem.status, problem.message, problem.headers)

    return answer


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error as Inngest's ``publicerr.Error`` encodes it: ``{"error", "data", "status"}``
    (``data`` null, ``code`` omitted: neither is set here)."""
    body = {"error": message, "data": None, "status": status}
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


async def _events(request: Request) -> Response:
    """``GET /v1/events`` (see the module)."""
    require_inngest_api_auth(request)
    params = request.query_params
    cursor = params.get("cursor")
    if cursor and not ULID.match(cursor):
        raise Problem(400, "Invalid cursor query parameter")
    bounds = {
        name: _received(text, name) if text else None
        for name in ("received_after", "received_before")
        for text in [params.get(name)]
    }
    engine = stepline_app(request).engine
    if bounds["received_after"] is None:  # Inngest's WorkspaceEventsOpts.Validate
        hour_ago = engine.clock.now() - DEFAULT_WINDOW
        bounds["received_after"] = datetime.fromtimestamp(hour_ago, UTC)
    after, before = (moment.timestamp() if moment else None for moment in bounds.values())
    query = EventFilter(
        name=params.get("name") or None,
        received_after=after,
        received_before=before,
        limit=_limit(params.get("limit")),
        id_below=cursor.upper() if cursor else LAST_ULID,
        include_internal=False,  # Inngest's IncludeInternalEvents, never set by this route
    )
    events = await engine.read(engine.store.list_events, query)
    return _answer([_event_json(stored) for stored in events], cached=None)


def _received(text: str, name: str) -> datetime:
    """A received-time bound as Inngest's ``dateutil.ParseString`` reads one: RFC 3339 (ISO 8601
    here), the other layouts it tries (RFC 1123, 822, 850, Ruby, Unix and ANSI C dates: email's
    date parser reads them; without a zone, UTC, as Go's), and epoch milliseconds (Stepline's
    own); 400 ``Invalid <name> query parameter`` otherwise, as Inngest's."""
    try:
        return parse_time(text, name)
    except Problem:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise Problem(400, f"Invalid {name} query parameter") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _limit(text: str | None) -> int:
    """``limit`` as Inngest reads it: none or 0 → the default; bounded to 1-51; not a number
    → 400 (Inngest reads it as 0)."""
    if text is None or text == "":
        return DEFAULT_EVENTS
    if not is_digits(text):
        raise Problem(400, f"limit must be a whole number, got {text!r}")
    return min(int(text), MAX_EVENTS) or DEFAULT_EVENTS


async def _event(request: Request) -> Response:
    """``GET /v1/events/{event_id}`` (see the module)."""
    require_inngest_api_auth(request)
    event_id = request.path_params["event_id"]
    if not ULID.match(event_id):
        return _error(400, f"Invalid event ID: {event_id}")
    engine = stepline_app(request).engine
    query = EventFilter(internal_id=event_id.upper(), limit=1)
    found = await engine.read(engine.store.list_events, query)
    if not found:
        return _error(404, "Event not found")
    return _answer(_event_json(found[0]), cached=EVENT_CACHED)


def _event_json(stored: StoredEvent) -> dict[str, Any]:
    """An event as Inngest's ``cqrs.Event`` encodes it: ``user`` and ``v`` only when set
    (``omitempty``); ``id`` the sender's, else the internal one (as Inngest stores it)."""
    event = stored.event
    found: dict[str, Any] = {
        "internal_id": event.internal_id,
        "account_id": NO_ID,
        "environment_id": NO_ID,
        "source": "",
        "source_id": None,
        "received_at": iso(stored.received_at),
        "id": event.id or event.internal_id,
        "name": event.name,
        "data": event.data,
    }
    if event.user:
        found["user"] = event.user
    found["ts"] = int(event.ts * 1000)
    if event.v is not None:
        found["v"] = event.v
    return found


async def _event_runs(request: Request) -> Response:
    """``GET /v1/events/{event_id}/runs``: the runs the event started (of every app sharing the
    database), oldest first, as Inngest's REST API lists them (``GetEventRuns``, the runs of
    ``cqrs.FunctionRun``); what Inngest's "fetch run status and output" recipe polls. 400 for
    an id that is no ULID (``Invalid event ID: ...``), as Inngest's; an event that started
    none (or is unknown) has an empty ``data``. Cacheable for 5 s (``Cache-Control: private,
    max-age=5`` and ``cached_until``), as Inngest's answer is."""
    require_inngest_api_auth(request)
    event_id = request.path_params["event_id"]
    if not ULID.match(event_id):
        return _error(400, f"Invalid event ID: {event_id}")
    app = stepline_app(request)
    runs = await app.runs(event_id=event_id, all_apps=True, with_steps=False, limit=MAX_EVENT_RUNS)
    runs.sort(key=lambda run: (run.created_at, run.run_id))
    started = any(run.event_ids[:1] == [event_id] for run in runs)
    first = await app.get_event(event_id) if started else None  # once, not once per run
    cron = cron_of([first]) if first is not None else None
    return _answer([_run_json(app, run, event_id, cron) for run in runs], cached=RUNS_CACHED)


async def _run(request: Request) -> Response:
    """``GET /v1/runs/{run_id}`` (see the module)."""
    require_inngest_api_auth(request)
    run_id = _run_id(request)
    app = stepline_app(request)
    run = await app.get_run(run_id)
    if run is None:
        return _error(404, f"Unable to load function run: {run_id}")
    event_id = run.event_ids[0] if run.event_ids else None
    first = await app.get_event(event_id) if event_id is not None else None
    cron = cron_of([first]) if first is not None else None
    return _answer(_run_json(app, run, event_id, cron), cached=RUN_CACHED)


def _run_id(request: Request) -> str:
    """The route's run id, a ULID (400 ``Invalid run ID: ...`` otherwise, as Inngest's
    ``ulid.Parse``; any case)."""
    run_id: str = request.path_params["run_id"]
    if not ULID.match(run_id):
        raise Problem(400, f"Invalid run ID: {run_id}")
    return run_id.upper()


async def _cancel_run(request: Request) -> Response:
    """``DELETE /v1/runs/{run_id}`` (see the module)."""
    require_inngest_api_auth(request)
    run_id = _run_id(request)
    if not await stepline_app(request).cancel_run(run_id, "cancelled by API"):
        return _error(404, f"Unable to load function run: {run_id}")
    return Response(status_code=200)


async def _create_cancellation(request: Request) -> Response:
    """``POST /v1/cancellations`` (see the module)."""
    require_inngest_api_auth(request)
    app = stepline_app(request)
    body = await json_body(request)
    app_id, function_id, condition = (_text(body, key) for key in ("app_id", "function_id", "if"))
    problems = [
        f"{key} is required"
        for key, v in (("app_id", app_id), ("function_id", function_id))
        if not v
    ]
    before = (
        parse_time(body["started_before"], "started_before") if body.get("started_before") else None
    )
    after = (
        parse_time(body["started_after"], "started_after") if body.get("started_after") else None
    )
    if before is None:
        problems.append("started_before is required")
    elif before.timestamp() > app.engine.clock.now():
        problems.append("started_before must be in the past")
    if before is not None and after is not None and after > before:
        problems.append("started_after must be before started_before")
    if problems:
        return _error(400, "\n".join(problems))
    assert app_id is not None and function_id is not None and before is not None
    fn_id = _function_of(app, app_id, function_id)
    if fn_id is None:
        return _error(404, "function not found")
    cancellation = new_id()
    try:  # one listing of the function's unfinished runs, then a write per run cancelled
        cancelled = await app.cancel_runs(
            fn_id,
            started_after=after,
            started_before=before,
            if_=condition,
            reason=f"bulk cancellation {cancellation}",
            limit=EVERY_RUN,
        )
    except ConfigError as exc:  # an invalid `if` expression
        return _error(400, f"invalid expression: {exc}")
    shown = {
        "id": cancellation,
        "environment_id": ENVIRONMENT_ID,
        "function_id": function_id,
        "started_after": iso(after.timestamp()) if after is not None else None,
        "started_before": iso(before.timestamp()),
        "if": condition,
        "cancelled": len(cancelled),
    }
    return _answer(shown, cached=None)


async def _cancellations(request: Request) -> Response:
    """``GET /v1/cancellations``: none (see the module: a cancellation has done its work when
    it is answered)."""
    require_inngest_api_auth(request)
    return _answer([], cached=None)


async def _delete_cancellation(request: Request) -> Response:
    """``DELETE /v1/cancellations/{id}``: 400 ``Invalid cancellation ID`` for an id that is no
    ULID, else 404 ``Cancellation not found`` (none is kept), as Inngest's answers."""
    require_inngest_api_auth(request)
    if not ULID.match(request.path_params["cancellation_id"]):
        return _error(400, "Invalid cancellation ID")
    return _error(404, "Cancellation not found")


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise Problem(400, f"{key} must be a string")
    return value or None


def _function_of(app: App, app_id: str, function_id: str) -> str | None:
    """The id Stepline knows ``app_id``'s function ``function_id`` by: a native function of the
    served app, or an SDK app's by its slug; None if neither is served."""
    served = {fn.id for fn in app.functions}
    if app_id == app.id and function_id in served:
        return function_id
    slug = f"{app_id}-{function_id}"
    return slug if slug in served else None


def _run_json(app: App, run: Run, event_id: str | None, cron: str | None) -> dict[str, Any]:
    """One run as Inngest's ``cqrs.FunctionRun`` encodes it (``batch_id``, ``cron`` and
    ``output`` only when set: ``omitempty``; an ended run's output, null included, is set);
    ``cron``: the schedule of ``event_id``, if a cron's."""
    shown: dict[str, Any] = {
        "run_id": run.run_id,
        "run_started_at": iso(run.started_at or run.created_at),
        "function_id": run.function_id,
        "function_version": 0,
        "environment_id": ENVIRONMENT_ID,
        "event_id": event_id,
    }
    if is_batch_run(app, run):
        shown["batch_id"] = run.event_ids[0]
    if cron is not None and run.event_ids[:1] == [event_id]:
        shown["cron"] = cron
    status = RUN_STATUS.get(run.status)
    shown["status"] = status or "Running"
    shown["ended_at"] = iso(run.ended_at)
    if status is not None:
        output = run.output if run.status == "COMPLETED" else None
        shown["output"] = run.error if run.status == "FAILED" else output
    return shown


def _answer(data: Any, *, cached: int | None) -> JSONResponse:
    """``data`` with Inngest's ``metadata``; ``cached``: for how many seconds the answer may
    be cached, as Inngest's says (``WriteCachedResponse``), None: not (``WriteResponse``)."""
    now = time.time()
    until = iso(now + cached) if cached is not None else None
    headers = {"Cache-Control": f"private, max-age={cached}"} if cached is not None else None
    return JSONResponse(
        {"data": data, "metadata": {"fetched_at": iso(now), "cached_until": until}}, headers=headers
    )
