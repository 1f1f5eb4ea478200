"""``POST /v0/gql``: the read queries of Inngest's dev server, answered with graphql-core over the
schema in ``_gql_schema`` (Inngest's names), so tools written for Inngest's dev server (its SDKs'
test helpers, scripts, CI checks) read Stepline's runs, steps and events.

What each query answers (``Run``/``StepInfo`` of ``stepline.sdk.run``):

* ``run(runID)``: the run; ``status`` one of QUEUED, RUNNING (also while it sleeps, waits or
  waits out a retry), COMPLETED, FAILED, CANCELLED; ``output`` a string of JSON: the return
  value, or for a failure the error (``name``, ``message``, ``stack``; an SDK's ``code`` too).
  ``trace``: the run as the root span (its ``outputID`` reads the run's output) with one child
  span per step in execution order, ``name`` the user's step id (a repeated id repeats).
  ``isBatch`` (a run of a function with ``batch_events``), ``batchCreatedAt`` (a batch run's:
  its first event's time), ``cronSchedule`` (a cron run's: its schedule as configured);
  ``sourceID`` the event that started the run (its first trigger event: a cron run's timer
  event, a batch's first event, an invoked run's ``inngest/function.invoked``).
* ``runTrigger(runID)``: ``payloads``, each event as a string of JSON (the first is the one that
  triggered the run), ``IDs`` their ids, ``timestamp`` the earliest event's time; a cron run's
  ``cron`` is its schedule and its ``eventName`` null, as Inngest's dev server answers.
* ``runTraceSpanOutputByID(outputID)``: ``data`` the step's result (a string of JSON; null until
  it completed), ``error`` its error once it failed.
* ``event(query: {eventId})``: the event with ``functionRuns``, the runs it started;
  ``events(query: {})`` the latest events; ``stream(query: {limit, includeInternalEvents})`` the
  latest events (``trigger``: the name) with the ``runs`` each started (``function { name }``).

Output ids are opaque (base64 of the run id and the step's position). The route asks for the
REST API's token (``require_api_token``): open on a loopback dev server, as Inngest's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from graphql import GraphQLError, graphql
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline.server._auth import require_api_token
from stepline.server._gql_schema import SCHEMA
from stepline.server._problems import Problem
from stepline.server._responses import JSONResponse
from stepline.server._state import stepline_app
from stepline.server.rest._params import json_body

if TYPE_CHECKING:
    from stepline.sdk.app import App
    from stepline.sdk.function import FunctionDef
    from stepline.sdk.run import Run, StepInfo
    from stepline.store.records import EventRecord

ROOT = "run"  # the root span's output id names the run's own output
STEP_OPS = {
    "run": "RUN",
    "send": "RUN",
    "sleep": "SLEEP",
    "wait": "WAIT_FOR_EVENT",
    "invoke": "INVOKE",
    "ai": "AI_GATEWAY",
}
ENDED = ("COMPLETED", "FAILED", "CANCELLED")
MAX_RUNS_PER_EVENT = 1000
MAX_EVENTS = 100  # the events `events` and `stream` list at most
CRON_EVENT = "inngest/scheduled.timer"


def gql_routes() -> list[BaseRoute]:
    return [Route("/v0/gql", execute, methods=["POST"])]


async def execute(request: Request) -> Response:
    """``{query, variables?, operationName?}`` → ``{"data": ..., "errors"?: [...]}`` (200 for
    a query that ran, errors included, as GraphQL servers answer)."""
    require_api_token(request)
    body = await json_body(request)
    query = body.get("query")
    variables = body.get("variables")
    operation = body.get("operationName")
    if not isinstance(query, str):
        raise Problem(400, "the body needs a GraphQL query in `query`")
    if variables is not None and not isinstance(variables, dict):
        raise Problem(400, "`variables` must be an object")
    if operation is not None and not isinstance(operation, str):
        raise Problem(400, "`operationName` must be a string")
    result = await graphql(
        SCHEMA,
        query,
        root_value=Queries(stepline_app(request)),
        variable_values=variables,
        operation_name=operation,
    )
    reply: dict[str, Any] = {"data": result.data}
    if result.errors:
        reply["errors"] = [error.formatted for error in result.errors]
    return JSONResponse(reply)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def output_id(run_id: str, position: int | None) -> str:
    """The opaque id of a span's output: the run's own (``position`` None) or a step's."""
    raw = f"{run_id}:{ROOT if position is None else position}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_output_id(value: str) -> tuple[str, int | None]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        run_id, _, where = raw.rpartition(":")
        position = None if where == ROOT else int(where)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise GraphQLError(f"unknown output id {value!r}") from None
    if not run_id:
        raise GraphQLError(f"unknown output id {value!r}")
    return run_id, position


def _run_status(status: str) -> str:
    return status if status in (*ENDED, "QUEUED") else "RUNNING"


def _run_output(run: Run) -> str | None:
    """Inngest's ``output``: the result, or the error of a run that failed."""
    if run.status == "COMPLETED":
        return _json(run.output)
    if run.status == "FAILED" and run.error is not None:
        return _json(run.error)
    return None


def _error(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    stack = error.get("stack")
    cause = error.get("cause")
    return {
        "message": str(error.get("message") or ""),
        "name": error.get("name"),
        "stack": stack if isinstance(stack, str) else None,
        "cause": None if cause is None else _json(cause),
    }


class Queries:
    """The root value: each ``Query`` field is a method (graphql-core calls it with ``info`` and
    the field's arguments)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def _run(self, run_id: str) -> Run:
        run = await self.app.get_run(run_id)
        if run is None:
            raise GraphQLError(f"no run {run_id!r}")
        return run

    async def run(self, _info: Any, runID: str) -> dict[str, Any] | None:
        found = await self.app.get_run(runID)
        return None if found is None else self._run_v2(found)

    async def runTrigger(self, _info: Any, runID: str) -> dict[str, Any]:
        run = await self._run(runID)
        events = await self._events_of(run)
        cron = cron_of(events)
        return {
            "eventName": events[0].name if events and cron is None else None,
            "IDs": run.event_ids,
            "payloads": [_json(e.payload()) for e in events],
            "timestamp": _from_ts(min(e.ts for e in events)) if events else run.created_at,
            "isBatch": self._is_batch(run),
            "cron": cron,
        }

    async def runTrace(self, _info: Any, runID: str) -> dict[str, Any]:
        return self._trace(await self._run(runID))

    async def runTraceSpanOutputByID(
        self,
        _info: Any,
        outputID: str,
    ) -> dict[str, Any]:
        run_id, position = _read_output_id(outputID)
        run = await self._run(run_id)
        if position is None:
            completed = run.status == "COMPLETED"
            return {
                "input": None,
                "data": _run_output(run) if completed else None,
                "error": None if completed else _error(run.error),
            }
        if not 0 <= position < len(run.steps):
            raise GraphQLError(f"unknown output id {outputID!r}")
        step = run.steps[position]
        return {
            "input": None,
            "data": _json(step.output) if step.status == "COMPLETED" else None,
            "error": _error(step.error) if step.status == "FAILED" else None,
        }

    async def event(self, _info: Any, query: Mapping[str, Any]) -> dict[str, Any] | None:
        event_id = str(query["eventId"])
        event = await self.app.get_event(event_id)
        if event is None:
            return None
        return self._event(event)

    async def events(self, _info: Any, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        found = await self.app.events(limit=MAX_EVENTS)
        return [self._event(e.event) for e in found]

    async def stream(self, _info: Any, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        limit = max(0, min(int(query.get("limit") or 20), MAX_EVENTS))
        internal = bool(query.get("includeInternalEvents"))
        # system events (a run's ending...) outnumber the others: read further back to skip them
        found = await self.app.events(limit=MAX_EVENTS if internal else 5 * MAX_EVENTS)
        items = []
        for stored in found:
            event = stored.event
            if not internal and event.name.startswith("inngest/"):
                continue
            items.append(self._stream_item(event))
            if len(items) >= limit:
                break
        return items

    def functions(self, _info: Any) -> list[dict[str, Any]]:
        return [self._function(fn.id) for fn in self.app.functions]

    # -- object builders --------------------------------------------------------------------------
    def _event(self, event: EventRecord) -> dict[str, Any]:
        """An ``Event`` (its ``functionRuns`` and ``totalRuns`` read when asked for)."""
        event_id = event.internal_id

        async def runs(_info: Any) -> list[dict[str, Any]]:
            return [self._run_v1(r, event_id) for r in await self._runs_of(event_id)]

        async def total(_info: Any) -> int:
            return len(await self._runs_of(event_id))

        return {
            "id": event_id,
            "externalID": event.id,
            "name": event.name,
            "createdAt": _from_ts(event.ts),
            "payload": _json(event.payload()),
            "raw": _json(event.payload()),
            "totalRuns": total,
            "functionRuns": runs,
        }

    def _stream_item(self, event: EventRecord) -> dict[str, Any]:
        event_id = event.internal_id

        async def runs(_info: Any) -> list[dict[str, Any]]:
            return [self._run_v1(r, event_id) for r in await self._runs_of(event_id)]

        return {
            "id": event_id,
            "trigger": event.name,
            "type": "CRON" if event.name == CRON_EVENT else "EVENT",
            "createdAt": _from_ts(event.ts),
            "runs": runs,
            "inBatch": False,
        }

    async def _events_of(self, run: Run) -> list[EventRecord]:
        """The events that triggered ``run``, in its order (a purged one left out)."""
        found = [await self.app.get_event(event_id) for event_id in run.event_ids]
        return [e for e in found if e is not None]

    def _is_batch(self, run: Run) -> bool:
        return is_batch_run(self.app, run)

    async def _runs_of(self, event_id: str) -> list[Run]:
        runs = await self.app.runs(
            event_id=event_id, all_apps=True, with_steps=False, limit=MAX_RUNS_PER_EVENT
        )
        return sorted(runs, key=lambda r: (r.created_at, r.run_id))

    def _function(self, function_id: str) -> dict[str, Any]:
        fn: FunctionDef | None = next((f for f in self.app.functions if f.id == function_id), None)
        config, name = _sdk_config(self.app, function_id)
        app_id, url = fn.served_by if fn is not None and fn.served_by else (self.app.id, "")
        triggers = []
        if fn is not None:
            triggers = [{"type": "EVENT", "value": t.name} for t in fn.triggers]
            triggers += [{"type": "CRON", "value": c.cron} for c in fn.crons]
        limits = [c.limit for c in fn.options.concurrency] if fn is not None else []
        return {
            "id": function_id,
            "name": name or function_id,
            "slug": function_id,
            "config": _json(config),
            "concurrency": min(limits, default=0),
            "triggers": triggers,
            "url": url,
            "appID": app_id,
        }

    def _run_v1(self, run: Run, event_id: str) -> dict[str, Any]:
        return {
            "id": run.run_id,
            "functionID": run.function_id,
            "function": lambda _info: self._function(run.function_id),
            "status": _run_status(run.status),
            "startedAt": run.started_at,
            "finishedAt": run.ended_at,
            "output": _run_output(run),
            "eventID": event_id,
        }

    def _run_v2(self, run: Run) -> dict[str, Any]:
        async def event_name(_info: Any) -> str | None:
            first = await self.app.get_event(run.event_ids[0]) if run.event_ids else None
            return first.name if first is not None else None

        async def batch_created(_info: Any) -> datetime | None:
            events = await self._events_of(run) if self._is_batch(run) else []
            return _from_ts(min(e.ts for e in events)) if events else None

        async def cron_schedule(_info: Any) -> str | None:
            return cron_of(await self._events_of(run))

        return {
            "id": run.run_id,
            "appID": run.app_id,
            "functionID": run.function_id,
            "function": lambda _info: self._function(run.function_id),
            "traceID": run.run_id,
            "queuedAt": run.created_at,
            "startedAt": run.started_at,
            "endedAt": run.ended_at,
            "status": _run_status(run.status),
            "sourceID": run.event_ids[0] if run.event_ids else None,
            "triggerIDs": run.event_ids,
            "eventName": event_name,
            "isBatch": self._is_batch(run),
            "batchCreatedAt": batch_created,
            "cronSchedule": cron_schedule,
            "output": _run_output(run),
            "trace": lambda _info, preview=None: self._trace(run),
            "hasAI": any(s.kind == "ai" for s in run.steps),
        }

    def _trace(self, run: Run) -> dict[str, Any]:
        root = _span(run, None, name=run.function_id, status=_span_status(run.status))
        root["childrenSpans"] = [
            {**_span(run, i, name=step.id, status=_step_status(step)), **_step_fields(run, i, step)}
            for i, step in enumerate(run.steps)
        ]
        return root


def _sdk_config(app: App, function_id: str) -> tuple[Mapping[str, Any], str | None]:
    """An SDK function's config as synced and its display name; ``({}, None)`` for another."""
    from stepline.drivers.inngest._apps import registered_sdk_apps

    apps = registered_sdk_apps(app)
    synced = apps.app_of(function_id) if apps is not None else None
    if synced is None:
        return {}, None
    fn = next(f for f in synced.functions if f.definition.id == function_id)
    return fn.config.config, fn.config.name


def is_batch_run(app: App, run: Run) -> bool:
    """Whether ``run`` is a batch's (Inngest: it has a batch id), however many events."""
    fn = next((f for f in app.functions if f.id == run.function_id), None)
    return (fn is not None and fn.options.batch_events is not None) or len(run.event_ids) > 1


def cron_of(events: list[EventRecord]) -> str | None:
    """The schedule of a cron run (its event ``inngest/scheduled.timer`` carries it), else None."""
    first = events[0] if events else None
    cron = first.data.get("cron") if first is not None and first.name == CRON_EVENT else None
    return cron if isinstance(cron, str) else None


def _span_status(status: str) -> str:
    if status in ("SLEEPING", "WAITING"):
        return "WAITING"
    return status if status in (*ENDED, "QUEUED") else "RUNNING"


def _step_status(step: StepInfo) -> str:
    if step.status in ("COMPLETED", "FAILED"):
        return step.status
    if step.queued:
        return "QUEUED"
    return "WAITING" if step.status == "PENDING" else "RUNNING"


def _span(run: Run, position: int | None, *, name: str, status: str) -> dict[str, Any]:
    ended = status in ENDED
    return {
        "appID": run.app_id,
        "functionID": run.function_id,
        "runID": run.run_id,
        "spanID": f"{run.run_id}:{ROOT if position is None else position}",
        "traceID": run.run_id,
        "name": name,
        "status": status,
        "attempts": run.attempt,
        "duration": _duration(run.started_at, run.ended_at),
        "outputID": output_id(run.run_id, position) if ended else None,
        "queuedAt": run.created_at,
        "startedAt": run.started_at,
        "endedAt": run.ended_at,
        "childrenSpans": [],
        "stepOp": None,
        "stepType": "",
        "stepID": None,
        "isRoot": position is None,
        "parentSpanID": None,
        "isUserland": False,
    }


def _step_fields(run: Run, position: int, step: StepInfo) -> dict[str, Any]:
    return {
        "attempts": step.attempts,
        "duration": _duration(step.started_at, step.ended_at),
        "queuedAt": step.started_at or run.created_at,
        "startedAt": step.started_at,
        "endedAt": step.ended_at,
        "stepOp": STEP_OPS.get(step.kind),
        "stepType": STEP_OPS.get(step.kind, ""),
        "stepID": step.id,
        "parentSpanID": f"{run.run_id}:{ROOT}",
    }


def _duration(start: Any, end: Any) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)


def _from_ts(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
