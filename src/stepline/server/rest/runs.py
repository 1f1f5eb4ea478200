"""``/api/v1/runs``: runs (filters, cursor), one run with its steps and history, cancel, bulk
cancel (with a preview), replay (from the start or from a step), and skipped runs."""

from __future__ import annotations

from typing import get_args

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline._cursor import encode_cursor
from stepline.errors import ConfigError, ExpressionError
from stepline.server._auth import require_api_token
from stepline.server._problems import Problem
from stepline.server._responses import JSONResponse
from stepline.server._state import stepline_app
from stepline.server.rest._params import (
    count_param,
    cursor_param,
    flag_param,
    json_body,
    limit_param,
    parse_time,
    text_field,
    time_param,
)
from stepline.server.views import event_json, history_json, run_json, skip_json
from stepline.store.records import RunStatus

PREFIX = "/api/v1/runs"
STATUSES = get_args(RunStatus)
PREVIEW_SAMPLE = 20
MAX_BULK = 100_000
MAX_PURGE = 10_000
SEARCH_SCAN = 10_000  # runs a search page reads by default
MAX_SEARCH_SCAN = 100_000
SEARCH_UNSUPPORTED = ("event", "created_after", "created_before")  # filters a search lacks


def run_routes() -> list[BaseRoute]:
    return [
        Route(PREFIX, list_runs, methods=["GET"]),
        Route(PREFIX + "/cancel", bulk_cancel, methods=["POST"]),
        Route(PREFIX + "/purge", purge_runs, methods=["POST"]),
        Route(PREFIX + "/{run_id}", get_run, methods=["GET"]),
        Route(PREFIX + "/{run_id}/cancel", cancel_run, methods=["POST"]),
        Route(PREFIX + "/{run_id}/replay", replay_run, methods=["POST"]),
        Route("/api/v1/skipped", list_skipped, methods=["GET"]),
    ]


async def list_runs(request: Request) -> Response:
    """Runs, newest first: ``function``, ``status``, ``event``, ``created_after``,
    ``created_before``, ``cursor``, ``limit``, ``steps`` (include each run's steps; default
    true), ``waiting_for_worker`` (only runs no live worker can run), ``all_apps`` (the runs
    of every app sharing the database, not only the server's app's). ``q``: a payload search
    (see ``_search_runs``)."""
    require_api_token(request)
    app = stepline_app(request)
    status = request.query_params.get("status") or None
    if status is not None and status.upper() not in STATUSES:
        raise Problem(400, f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    limit = limit_param(request)
    if request.query_params.get("q"):
        return await _search_runs(request, status.upper() if status else None, limit)
    runs = await app.runs(
        function_id=request.query_params.get("function") or None,
        status=status.upper() if status else None,
        event_id=request.query_params.get("event") or None,
        created_after=time_param(request, "created_after"),
        created_before=time_param(request, "created_before"),
        after=cursor_param(request),
        limit=limit + 1,
        with_steps=flag_param(request, "steps", True),
        waiting_for_worker=flag_param(request, "waiting_for_worker", False),
        all_apps=flag_param(request, "all_apps", False),
    )
    page, more = runs[:limit], len(runs) > limit
    next_cursor = encode_cursor(page[-1].cursor) if more and page[-1].cursor else None
    steps = flag_param(request, "steps", True)
    return JSONResponse(
        {"data": [run_json(r, steps=steps) for r in page], "next_cursor": next_cursor}
    )


async def _search_runs(request: Request, status: str | None, limit: int) -> Response:
    """The runs whose payloads satisfy ``q`` (a CEL expression, ``App.search_runs``) among the
    newest ``scan`` runs (default 10,000) below ``cursor``, with ``function``, ``status``,
    ``steps`` and ``all_apps``. ``search`` says how far the page scanned (``scanned``, and
    ``complete``: whether every run the filters select was) and how many evaluations failed;
    ``next_cursor`` continues below the page (also when it holds no match but the scan
    stopped: an empty page is not the end until ``next_cursor`` is null). 400 for an invalid
    query, naming its error."""
    params = request.query_params
    unsupported = [n for n in SEARCH_UNSUPPORTED if params.get(n)]
    if flag_param(request, "waiting_for_worker", False):
        unsupported.append("waiting_for_worker")
    if unsupported:
        raise Problem(400, f"q cannot be combined with {', '.join(unsupported)}")
    scan = count_param(request, "scan", SEARCH_SCAN, MAX_SEARCH_SCAN)
    steps = flag_param(request, "steps", True)
    try:
        found = await stepline_app(request).search_runs(
            params["q"],
            function_id=params.get("function") or None,
            status=status,
            limit=limit,
            scan=scan,
            after=cursor_param(request),
            with_steps=steps,
            all_apps=flag_param(request, "all_apps", False),
        )
    except ExpressionError as exc:
        raise Problem(400, f"invalid search: {exc}", query=params["q"]) from None
    next_cursor = encode_cursor(found.next_cursor) if found.next_cursor else None
    return JSONResponse(
        {
            "data": [run_json(r, steps=steps) for r in found.runs],
            "next_cursor": next_cursor,
            "search": {
                "scan": scan,
                "scanned": found.scanned,
                "complete": found.complete,
                "failed": found.failed,
                "error": found.error,
            },
        }
    )


async def get_run(request: Request) -> Response:
    """One run: its steps (outputs, errors), its full history, and its events."""
    require_api_token(request)
    app = stepline_app(request)
    run_id = request.path_params["run_id"]
    run = await app.get_run(run_id)
    if run is None:
        raise Problem(404, f"no run {run_id!r}")
    history = await app.history(run_id)
    engine = app.engine
    events = await engine.read(engine.store.get_events, run.event_ids)
    return JSONResponse(
        {
            **run_json(run),
            "history": [history_json(h) for h in history],
            "events": [event_json(e) for e in events],
        }
    )


async def cancel_run(request: Request) -> Response:
    """Cancel one run that has not ended (404: no such run; 409: it has ended)."""
    require_api_token(request)
    app = stepline_app(request)
    run_id = request.path_params["run_id"]
    body = await json_body(request, optional=True)
    reason = text_field(body, "reason") or "cancelled by API"
    if await app.cancel_run(run_id, reason):
        return JSONResponse({"run_id": run_id, "cancelled": True})
    run = await app.get_run(run_id)
    if run is None:
        raise Problem(404, f"no run {run_id!r}")
    raise Problem(409, f"run {run_id} has already ended ({run.status})", run_id=run_id)


async def replay_run(request: Request) -> Response:
    """Start a new run with the run's events: ``{"from_step": "<step id>"}`` keeps the results
    of the steps before that one. 201 with the new run's id."""
    require_api_token(request)
    app = stepline_app(request)
    run_id = request.path_params["run_id"]
    body = await json_body(request, optional=True)
    from_step = text_field(body, "from_step")
    if await app.get_run(run_id) is None:
        raise Problem(404, f"no run {run_id!r}")
    try:
        new_run_id = await app.replay_run(run_id, from_step=from_step)
    except ConfigError as exc:
        raise Problem(400, str(exc)) from None
    return JSONResponse({"run_id": new_run_id, "replay_of": run_id}, status_code=201)


async def bulk_cancel(request: Request) -> Response:
    """Cancel a function's unfinished runs: ``{"function_id", "created_after"?,
    "created_before"?, "if"?, "limit"?, "reason"?, "dry_run"?}``. With ``dry_run`` true
    nothing is cancelled: ``{"count", "sample"}`` previews what would be."""
    require_api_token(request)
    app = stepline_app(request)
    body = await json_body(request)
    function_id = text_field(body, "function_id", required=True)
    assert function_id is not None
    if not any(fn.id == function_id for fn in app.functions):
        raise Problem(404, f"app {app.id!r} has no function {function_id!r}")
    after = body.get("created_after")
    before = body.get("created_before")
    limit = body.get("limit", MAX_BULK)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BULK:
        raise Problem(400, f"limit must be a whole number from 1 to {MAX_BULK}")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise Problem(400, "dry_run must be true or false")
    try:
        ids = await app.cancel_runs(
            function_id,
            started_after=parse_time(after, "created_after") if after is not None else None,
            started_before=parse_time(before, "created_before") if before is not None else None,
            if_=text_field(body, "if"),
            reason=text_field(body, "reason") or "bulk cancellation",
            limit=limit,
            dry_run=dry_run,
        )
    except ConfigError as exc:  # an invalid `if` expression
        raise Problem(400, str(exc)) from None
    if dry_run:
        return JSONResponse({"dry_run": True, "count": len(ids), "sample": ids[:PREVIEW_SAMPLE]})
    return JSONResponse({"dry_run": False, "count": len(ids), "cancelled": ids})


async def purge_runs(request: Request) -> Response:
    """Delete runs that ended before ``{"before": <time>}`` (at most ``limit``, default 10,000),
    with their steps, history and the events no remaining run uses: ``{"deleted": n}``."""
    require_api_token(request)
    app = stepline_app(request)
    body = await json_body(request)
    before = parse_time(body.get("before"), "before")
    limit = body.get("limit", MAX_PURGE)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PURGE:
        raise Problem(400, f"limit must be a whole number from 1 to {MAX_PURGE}")
    deleted = await app.purge_runs(before=before, limit=limit)
    return JSONResponse({"deleted": deleted})


async def list_skipped(request: Request) -> Response:
    """Runs flow control did not start, newest first: ``function``, ``limit``."""
    require_api_token(request)
    app = stepline_app(request)
    found = await app.skipped(request.query_params.get("function") or None, limit_param(request))
    return JSONResponse({"data": [skip_json(s) for s in found]})
