"""The OpenAPI 3.1 document of the HTTP APIs (``/openapi.json``) and a page to browse it
(``/api/docs``: one HTML file shipped in the wheel, no CDN). Both are public: they describe the
API, not the data."""

from __future__ import annotations

from importlib import resources
from typing import Any, get_args

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from stepline import __version__
from stepline.server._responses import JSONResponse
from stepline.store.records import EFFECTS, RunStatus


def openapi_routes() -> list[BaseRoute]:
    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/docs", api_docs, methods=["GET"]),
    ]


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def api_docs(request: Request) -> Response:
    page = resources.files("stepline.server").joinpath("static/api-docs.html").read_text()
    return HTMLResponse(page)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind}}


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


ERRORS = {
    "400": _json(_ref("Error"), "Invalid request (the error says what is wrong)"),
    "401": _json(_ref("Error"), "Missing or invalid token or key"),
    "404": _json(_ref("Error"), "Not found"),
    "503": _json(_ref("Error"), "No keys configured, or the database is unavailable"),
}
TOKEN: list[dict[str, Any]] = [{"bearer": []}]
PAGE = [
    _query("cursor", "The next_cursor of the previous page"),
    _query("limit", "Items per page (1-1000, default 50)", "integer"),
]


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": _ref(name)},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    security: list[dict[str, Any]] | None = None,
    ok_status: str = "200",
    tag: str = "runs",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "parameters": params or [],
        "responses": {ok_status: ok, **ERRORS},
        "security": TOKEN if security is None else security,
    }
    if body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": body}}}
    return op


def openapi_document() -> dict[str, Any]:
    """The document (built on each request: it is small)."""
    text = {"type": "string"}
    nullable_text = {"type": ["string", "null"]}
    time = {"type": ["string", "null"], "format": "date-time"}
    any_json: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "status"],
            "properties": {"error": text, "status": {"type": "integer"}},
        },
        "EventIn": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "description": "Not empty, not starting inngest/"},
                "data": {"type": "object"},
                "user": {"type": "object"},
                "id": {"type": "string", "description": "De-duplication id (24 h)"},
                "ts": {"type": "integer", "description": "Epoch milliseconds (1980-2100)"},
                "v": {"type": "string", "description": "The event's version, kept and given back"},
            },
        },
        "SendResult": {
            "type": "object",
            "properties": {
                "ids": {"type": "array", "items": text},
                "status": {"type": "integer"},
                "error": text,
                "index": {"type": "integer", "description": "The first invalid event"},
            },
        },
        "Step": {
            "type": "object",
            "properties": {
                "id": text,
                "kind": {"enum": ["run", "sleep", "wait", "invoke", "send"]},
                "status": {"enum": ["COMPLETED", "FAILED", "PENDING", "RETRYING", "RUNNING"]},
                "attempts": {"type": "integer"},
                "output": any_json,
                "error": {"type": ["object", "null"]},
                "started_at": time,
                "ended_at": time,
            },
        },
        "Run": {
            "type": "object",
            "properties": {
                "run_id": text,
                "app_id": text,
                "function_id": text,
                "status": {"enum": list(get_args(RunStatus))},
                "output": any_json,
                "error": {"type": ["object", "null"]},
                "event_ids": {"type": "array", "items": text},
                "created_at": time,
                "started_at": time,
                "ended_at": time,
                "attempt": {"type": "integer"},
                "worker_id": nullable_text,
                "waiting_for_worker": {"type": "boolean"},
                "cursor": nullable_text,
                "steps": {"type": "array", "items": _ref("Step")},
            },
        },
        "HistoryEntry": {
            "type": "object",
            "properties": {
                "at": time,
                "kind": text,
                "step_id": nullable_text,
                "attempt": {"type": ["integer", "null"]},
                "duration": {"type": ["number", "null"]},
                "data": {"type": ["object", "null"]},
                "worker_id": nullable_text,
            },
        },
        "RunDetail": {
            "allOf": [
                _ref("Run"),
                {
                    "type": "object",
                    "properties": {
                        "history": {"type": "array", "items": _ref("HistoryEntry")},
                        "events": {"type": "array", "items": _ref("Event")},
                    },
                },
            ]
        },
        "Event": {
            "type": "object",
            "properties": {
                "id": text,
                "name": text,
                "data": {"type": "object"},
                "user": {"type": "object"},
                "sender_id": nullable_text,
                "ts": {"type": "integer"},
                "v": nullable_text,
                "received_at": time,
                "duplicate": {"type": "boolean"},
            },
        },
        "EventRun": {
            "allOf": [
                _ref("Run"),
                {
                    "type": "object",
                    "properties": {
                        "effect": {
                            "enum": list(EFFECTS),
                            "description": "What the event did to the run (started: it "
                            "triggered it; resumed: it resolved one of its waits; cancelled: "
                            "it matched its cancel_on, or started a singleton run replacing "
                            "it). A run both resumed and cancelled is listed twice.",
                        }
                    },
                },
            ]
        },
        "EventDetail": {
            "allOf": [
                _ref("Event"),
                {
                    "type": "object",
                    "properties": {"runs": {"type": "array", "items": _ref("EventRun")}},
                },
            ]
        },
        "Function": {
            "type": "object",
            "properties": {
                "id": text,
                "app_id": text,
                "triggers": {"type": "array", "items": {"type": "object"}},
                "retries": {"type": "integer"},
                "paused": {"type": "boolean"},
                "flow_control": {"type": "object"},
                "cancel_on": {"type": "array", "items": {"type": "object"}},
                "timeouts": {"type": ["object", "null"]},
                "on_failure_of": nullable_text,
                "sdk_app": {
                    "type": ["object", "null"],
                    "description": "The Inngest SDK app serving it: its name and function URL",
                },
            },
        },
        "Skip": {
            "type": "object",
            "properties": {"event_id": text, "function_id": text, "reason": text, "at": time},
        },
    }
    run_filters = [
        _query("function", "Function id"),
        _query("status", "Run status"),
        _query("event", "Id of the event that started the run"),
        _query("created_after", "ISO 8601 or epoch ms"),
        _query("created_before", "ISO 8601 or epoch ms"),
        _query("steps", "Include each run's steps (default true)", "boolean"),
        _query("waiting_for_worker", "Only runs no live worker can run", "boolean"),
        _query("all_apps", "Runs of every app sharing the database", "boolean"),
        *PAGE,
    ]
    search_params = [
        _query(
            "q",
            "A payload search: a CEL expression over event, events, output, error and run "
            "(not with event, created_after, created_before, waiting_for_worker; 400 with the "
            "error when it is invalid). A page scans at most `scan` runs below the cursor: an "
            "empty page is not the end until next_cursor is null",
        ),
        _query(
            "scan", "With q: the runs a page scans at most (1-100000, default 10000)", "integer"
        ),
    ]
    run_page = _list_of("Run")
    run_page["properties"]["search"] = {
        "type": "object",
        "description": "With q: how far the page scanned",
        "properties": {
            "scan": {"type": "integer", "description": "The bound asked"},
            "scanned": {"type": "integer", "description": "Runs the page covered"},
            "complete": {
                "type": "boolean",
                "description": "Whether every run the filters select (below the cursor) was",
            },
            "failed": {"type": "integer", "description": "Runs the expression failed on"},
            "error": {"type": ["string", "null"], "description": "The first such failure"},
        },
    }
    fn_id = _path("function_id", "Function id")
    run_id = _path("run_id", "Run id")
    paths: dict[str, Any] = {
        "/e/{key}": {
            "post": _op(
                "Send one event or a list (Inngest's event API)",
                _json(_ref("SendResult")),
                params=[
                    _path("key", "An event key"),
                    {
                        "name": "X-Inngest-Event-Id-Seed",
                        "in": "header",
                        "description": "<unix ms>,<base64 of 10 bytes>: deterministic ids",
                        "schema": text,
                    },
                ],
                body={"oneOf": [_ref("EventIn"), {"type": "array", "items": _ref("EventIn")}]},
                security=[],
                tag="events",
            )
        },
        "/api/v1/functions": {
            "get": _op("List functions", _json(_list_of("Function")), tag="functions")
        },
        "/api/v1/functions/{function_id}": {
            "get": _op("Get a function", _json(_ref("Function")), params=[fn_id], tag="functions")
        },
        "/api/v1/functions/{function_id}/pause": {
            "post": _op(
                "Pause a function", _json(_ref("Function")), params=[fn_id], tag="functions"
            )
        },
        "/api/v1/functions/{function_id}/resume": {
            "post": _op(
                "Resume a function", _json(_ref("Function")), params=[fn_id], tag="functions"
            )
        },
        "/api/v1/events": {
            "get": _op(
                "List events, newest first",
                _json(_list_of("Event")),
                params=[
                    _query("name", "Event name"),
                    _query("received_after", "ISO 8601 or epoch ms"),
                    _query("received_before", "ISO 8601 or epoch ms"),
                    *PAGE,
                ],
                tag="events",
            )
        },
        "/api/v1/events/{event_id}": {
            "get": _op(
                "Get an event and the runs it started, resumed and cancelled (newest first)",
                _json(_ref("EventDetail")),
                params=[_path("event_id", "Event id")],
                tag="events",
            )
        },
        "/v1/events": {
            "get": _op(
                "Events received, newest first by internal id (as Inngest's REST API; default 20,"
                " at most 51; the last hour's unless received_after says; not Inngest's own"
                " events, inngest/...)",
                _json({"type": "object"}),
                params=[
                    _query("name", "Event name"),
                    _query("received_after", "ISO 8601 time or epoch milliseconds"),
                    _query("received_before", "ISO 8601 time or epoch milliseconds"),
                    _query("limit", "1-51 (default 20; larger: 51)", "integer"),
                    _query("cursor", "A ULID: the events whose internal id is below it"),
                ],
                tag="events",
            )
        },
        "/v1/events/{event_id}": {
            "get": _op(
                "One event (as Inngest's REST API)",
                _json({"type": "object"}),
                params=[_path("event_id", "Event id (a ULID)")],
                tag="events",
            )
        },
        "/v1/events/{event_id}/runs": {
            "get": _op(
                "The runs an event started (as Inngest's REST API)",
                _json({"type": "object"}),
                params=[_path("event_id", "Event id")],
                tag="events",
            )
        },
        "/v1/runs/{run_id}": {
            "get": _op(
                "One run: status and output (as Inngest's REST API)",
                _json({"type": "object"}),
                params=[_path("run_id", "Run id (a ULID)")],
                tag="runs",
            ),
            "delete": _op(
                "Cancel a run (as Inngest's REST API; 404 if it has ended)",
                {"description": "Cancelled"},
                params=[_path("run_id", "Run id (a ULID)")],
                tag="runs",
            ),
        },
        "/v1/cancellations": {
            "post": _op(
                "Cancel a function's runs created in a time range, at once (as Inngest's REST API)",
                _json({"type": "object"}),
                body={
                    "type": "object",
                    "required": ["app_id", "function_id", "started_before"],
                    "properties": {
                        "app_id": text,
                        "function_id": text,
                        "started_after": text,
                        "started_before": text,
                        "if": text,
                    },
                },
                tag="runs",
            ),
            "get": _op(
                "Cancellations kept: none, each done when created (as Inngest's REST API)",
                _json({"type": "object"}),
                tag="runs",
            ),
        },
        "/v1/cancellations/{cancellation_id}": {
            "delete": _op(
                "Delete a kept cancellation: 404, none is kept (Inngest's REST API)",
                _json({"type": "object"}),
                params=[_path("cancellation_id", "Cancellation id (a ULID)")],
                tag="runs",
            )
        },
        "/v1/checkpoint/{run_id}/async": {
            "post": _op(
                "Steps an Inngest JS SDK ran during the run's request in flight (checkpointing)",
                _json({"type": "object"}),
                params=[_path("run_id", "Run id")],
                body={"type": "object", "required": ["steps"]},
                security=[],
                tag="inngest",
            )
        },
        "/api/v1/runs": {
            "get": _op(
                "List runs, newest first; with q, the runs whose payloads match a search",
                _json(run_page),
                params=[*run_filters, *search_params],
            )
        },
        "/api/v1/runs/cancel": {
            "post": _op(
                "Cancel a function's unfinished runs (dry_run: preview count and sample)",
                _json({"type": "object"}),
                body={
                    "type": "object",
                    "required": ["function_id"],
                    "properties": {
                        "function_id": text,
                        "created_after": text,
                        "created_before": text,
                        "if": {"type": "string", "description": "CEL over event"},
                        "limit": {"type": "integer"},
                        "reason": text,
                        "dry_run": {"type": "boolean"},
                    },
                },
            )
        },
        "/api/v1/runs/purge": {
            "post": _op(
                "Delete runs that ended before a time, with their steps, history and events",
                _json({"type": "object", "properties": {"deleted": {"type": "integer"}}}),
                body={
                    "type": "object",
                    "required": ["before"],
                    "properties": {"before": text, "limit": {"type": "integer"}},
                },
            )
        },
        "/api/v1/runs/{run_id}": {
            "get": _op(
                "Get a run with steps, history and events",
                _json(_ref("RunDetail")),
                params=[run_id],
            )
        },
        "/api/v1/runs/{run_id}/cancel": {
            "post": _op(
                "Cancel a run (409 if it has ended)",
                _json({"type": "object"}),
                params=[run_id],
                body={"type": "object", "properties": {"reason": text}},
            )
        },
        "/api/v1/runs/{run_id}/replay": {
            "post": _op(
                "Replay a run from the start, or from a step",
                _json({"type": "object", "properties": {"run_id": text, "replay_of": text}}),
                params=[run_id],
                body={"type": "object", "properties": {"from_step": text}},
                ok_status="201",
            )
        },
        "/api/v1/skipped": {
            "get": _op(
                "Runs flow control did not start",
                _json(
                    {
                        "type": "object",
                        "properties": {"data": {"type": "array", "items": _ref("Skip")}},
                    }
                ),
                params=[_query("function", "Function id"), *PAGE[1:]],
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {"description": "OK", "content": {"text/plain": {"schema": text}}},
                tag="operations",
            )
        },
        "/health": {
            "get": _op("Liveness", _json({"type": "object"}), security=[], tag="operations")
        },
        "/ready": {
            "get": _op(
                "Readiness (the database answers)",
                _json({"type": "object"}),
                security=[],
                tag="operations",
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stepline",
            "version": __version__,
            "description": "Events, functions and runs of a Stepline app. The REST API takes "
            "Authorization: Bearer <API token>; the event API takes an event key in its path.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
