"""The dashboard's pages and actions (Starlette endpoints over ``App``'s public verbs).

Every page needs a session the ``Guard`` allows (else it redirects to ``/login``); every action
is a POST carrying the session's CSRF token (else 403), and answers with a redirect (a form
without script) or JSON (the page's script sends ``Accept: application/json``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from stepline.engine.changes import Change
from stepline.errors import ConfigError, ExpressionError
from stepline.sdk.run import Run
from stepline.sdk.search import SEARCH_VARIABLES
from stepline.sdk.waiting import WAITING_KINDS
from stepline.server import views as rest_views
from stepline.server.dashboard import _views as views
from stepline.server.dashboard._auth import FormTooLarge, Guard, Session, read_form
from stepline.server.dashboard._event_pages import event_rows
from stepline.server.dashboard._live import LiveHub
from stepline.server.dashboard._responses import (
    json_or_text,
    safe_name,
    safe_next,
    succeeded,
)
from stepline.server.dashboard._run_filters import (
    MAX_SEARCH_SCAN,
    PAGE_SIZE,
    STATUSES,
    RunFilters,
    Selection,
    older_page,
)
from stepline.store.records import EventRecord, RunFilter

if TYPE_CHECKING:
    from stepline.sdk.app import App

EAGER_STEPS = 50  # steps of a run page rendered whole; the others' details load when opened
BULK_LIMIT = 1000  # runs a bulk action (and its preview count) covers at most

Endpoint = Callable[[Request], Awaitable[Response]]


@functools.cache
def _environment() -> Environment:
    """The templates' environment, one per process: each compiled once, whatever the number of
    dashboards (a server that makes its app again, the tests' in-process servers: ~80 ms of CPU
    for the 14 templates). Its filters are pure functions; jinja2 renders a template from
    several threads at once."""
    env = Environment(
        loader=PackageLoader("stepline.server.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pretty=views.pretty,
        compact=views.compact,
        clock=views.clock,
        stamp=views.stamp,
        duration=views.duration,
    )
    return env


class Dashboard:
    """The pages of one ``App`` behind one ``Guard``."""

    def __init__(self, app: App, guard: Guard) -> None:
        self.app = app
        self.guard = guard
        self.env = _environment()
        self.hub = LiveHub(app, self._live_messages)

    # -- plumbing ---------------------------------------------------------------------------------
    def render(
        self, request: Request, session: Session, template: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        """A page, with what every page needs (CSRF token, navigation, auth state)."""
        page = self.env.get_template(template).render(
            request=request,
            csrf=self.guard.csrf_token(session),
            app_id=self.app.id,
            login_required=not self.guard.open,
            can_log_in=self.guard.can_log_in,
            path=request.url.path,
            **values,
        )
        response = HTMLResponse(page, status)
        response.headers["Cache-Control"] = "no-store"
        return response

    def page(self, handler: Callable[[Request, Session], Awaitable[Response]]) -> Endpoint:
        """A GET page: redirects to the login unless allowed; makes a session when open."""

        async def endpoint(request: Request) -> Response:
            session = self.guard.read(request)
            if not self.guard.allowed(session):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/login?" + urlencode({"next": target}), 303)
            fresh = session is None
            if session is None:
                session = self.guard.new_session(authenticated=False)
            response = await handler(request, session)
            if fresh:
                self.guard.set_cookie(request, response, session)
            return response

        return endpoint

    def action(self, handler: Callable[[Request], Awaitable[Response]]) -> Endpoint:
        """A POST action: 401 unless allowed, 403 without the session's CSRF token."""

        async def endpoint(request: Request) -> Response:
            session = self.guard.read(request)
            if not self.guard.allowed(session):
                return json_or_text({"error": "log in first"}, 401)
            try:
                if not await self.guard.csrf_ok(request, session):
                    return json_or_text({"error": "missing or wrong CSRF token"}, 403)
            except FormTooLarge:
                return json_or_text({"error": "form too large"}, 413)
            return await handler(request)

        return endpoint

    # -- login ------------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        """The login form (or straight to the dashboard when it is open)."""
        session = self.guard.read(request)
        if self.guard.allowed(session):
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        session = session or self.guard.new_session(authenticated=False)
        response = self.render(
            request, session, "login.html", next=request.query_params.get("next", "/")
        )
        self.guard.set_cookie(request, response, session)
        return response

    async def login(self, request: Request) -> Response:
        """Check the password (or API token) and start an authenticated session."""
        session = self.guard.read(request)
        try:
            form = await read_form(request)
        except FormTooLarge:
            return json_or_text({"error": "form too large"}, 413)
        if not await self.guard.csrf_ok(request, session):
            return json_or_text({"error": "missing or wrong CSRF token"}, 403)
        assert session is not None
        secret = form.get("secret")
        nxt = str(form.get("next") or "/")
        if not isinstance(secret, str) or not self.guard.check_login(secret):
            return self.render(
                request, session, "login.html", 401, next=nxt, error="Wrong password or token."
            )
        redirect = RedirectResponse(safe_next(nxt), 303)
        self.guard.set_cookie(request, redirect, self.guard.new_session(authenticated=True))
        return redirect

    async def logout(self, request: Request) -> Response:
        """End the session."""
        response = RedirectResponse("/login", 303)
        self.guard.clear_cookie(request, response)
        return response

    # -- functions --------------------------------------------------------------------------------
    async def functions(self, request: Request, session: Session) -> Response:
        """Every function: triggers, flow control, paused, its recent runs."""
        app = self.app
        paused = app.paused_functions()
        recent = await app.runs(limit=200, with_steps=False)
        cards = []
        for fn in app.functions:
            runs = [r for r in recent if r.function_id == fn.id][:5]
            event, data = views.trigger_example(fn)
            cards.append(
                {
                    "fn": fn,
                    "triggers": views.function_triggers(fn),
                    "options": views.function_options(fn),
                    "paused": fn.id in paused,
                    "runs": runs,
                    "send_event": event,
                    "send_data": data,
                }
            )
        return self.render(request, session, "functions.html", cards=cards, nav="functions")

    async def pause(self, request: Request) -> Response:
        """Pause a function (POST)."""
        fn = request.path_params["function_id"]
        if not any(f.id == fn for f in self.app.functions):
            return json_or_text({"error": f"no function {fn}"}, 404)
        await self.app.pause_function(fn)
        return succeeded(request, "/functions", {"paused": fn})

    async def resume(self, request: Request) -> Response:
        """Resume a function (POST)."""
        fn = request.path_params["function_id"]
        if not any(f.id == fn for f in self.app.functions):
            return json_or_text({"error": f"no function {fn}"}, 404)
        await self.app.resume_function(fn)
        return succeeded(request, "/functions", {"resumed": fn})

    # -- runs -------------------------------------------------------------------------------------
    async def runs(self, request: Request, session: Session) -> Response:
        """The runs list: filters in the URL, a payload search, the waiting-on column; with a
        filter, the count of runs it selects (up to ``BULK_LIMIT``) and the bulk actions."""
        chosen = RunFilters.of(request.query_params)
        limit = BULK_LIMIT if chosen.active else PAGE_SIZE
        found = await self._select(chosen, limit)
        now = datetime.now(UTC)
        unfinished = sum(1 for r in found.runs if not r.done)
        ended = sum(1 for r in found.runs if r.status in ("FAILED", "CANCELLED"))
        return self.render(
            request,
            session,
            "runs.html",
            nav="runs",
            runs=found.runs[:PAGE_SIZE],
            selected=len(found.runs),
            bulk_limit=BULK_LIMIT,
            unfinished=unfinished,
            replayable=ended,
            reasons=found.reasons,
            now=now,
            functions=[f.id for f in self.app.functions],
            statuses=STATUSES,
            waiting_kinds=WAITING_KINDS,
            filters=chosen.as_dict(),
            deeper=chosen.deeper() if chosen.scan < MAX_SEARCH_SCAN else None,
            older=older_page(chosen, found, PAGE_SIZE),
            search=found.search,
            search_error=found.search_error,
            search_variables=SEARCH_VARIABLES,
            suggestions=await self._suggestions(),
            run_duration=views.run_duration,
        )

    async def _select(self, chosen: RunFilters, limit: int) -> Selection:
        """The runs the filters select, newest first, at most ``limit``."""
        search = None
        search_error = None
        runs: list[Run]
        if chosen.query:
            try:
                search = await self.app.search_runs(
                    chosen.query,
                    function_id=chosen.function_id,
                    status=chosen.status,
                    limit=limit,
                    scan=chosen.scan,
                    after=chosen.older,
                )
                runs = search.runs
            except ExpressionError as exc:
                search_error, runs = str(exc), []
        else:
            runs = await self._list(
                chosen.function_id,
                chosen.status,
                chosen.event_id,
                chosen.waiting,
                limit,
                chosen.older,
            )
        if chosen.waiting is not None and (chosen.query or chosen.waiting == "worker"):
            reasons = await self.app.waiting_on(runs)  # (runs_waiting found the others exactly)
            runs = [r for r in runs if (w := reasons.get(r.run_id)) and w.kind == chosen.waiting]
        runs = runs[:limit]
        # the reasons of the page shown (the runs past it only count for the bulk actions)
        reasons = await self.app.waiting_on(runs[:PAGE_SIZE])
        return Selection(runs, reasons, search, search_error)

    async def bulk(self, request: Request) -> Response:
        """Cancel the unfinished runs the filters select, or replay the failed and cancelled
        ones (from the start, or ``from_failed_step``: from each run's failed step), at most
        ``BULK_LIMIT`` (POST: the filters as form fields, ``action`` cancel or replay). Each
        run's new state reaches the open pages live."""
        form = await read_form(request)
        action = form.get("action")
        chosen = RunFilters.of(form)
        if action not in ("cancel", "replay") or not chosen.active:
            return json_or_text({"error": "choose cancel or replay, and at least a filter"}, 400)
        found = await self._select(chosen, BULK_LIMIT)
        if found.search_error is not None:
            return json_or_text({"error": found.search_error}, 400)
        done: list[str] = []
        if action == "cancel":
            for run in found.runs:
                if not run.done and await self.app.cancel_run(
                    run.run_id, reason="bulk cancellation from the dashboard"
                ):
                    done.append(run.run_id)
        else:
            from_failed = form.get("from_failed_step") in ("1", "on", "true")
            for run in found.runs:
                if run.status not in ("FAILED", "CANCELLED"):
                    continue
                step = None
                if from_failed:
                    full = await self.app.get_run(run.run_id)
                    failed = [s for s in (full.steps if full else []) if s.status == "FAILED"]
                    step = failed[0].id if failed else None
                done.append(await self.app.replay_run(run.run_id, from_step=step))
        result = {"action": action, "selected": len(found.runs), "done": len(done), "runs": done}
        return succeeded(request, "/runs?" + urlencode(chosen.as_dict()), result)

    async def _list(
        self,
        function_id: str | None,
        status: str | None,
        event_id: str | None,
        waiting: str | None,
        limit: int,
        older: tuple[float, str] | None = None,
    ) -> list[Run]:
        app = self.app
        if waiting is None:
            return await app.runs(
                function_id=function_id,
                status=status,
                event_id=event_id,
                limit=limit,
                with_steps=False,
                after=older,
            )
        if waiting == "worker":
            return await app.runs(
                function_id=function_id,
                status=status,
                event_id=event_id,
                limit=limit * 4,
                with_steps=False,
                after=older,
                waiting_for_worker=True,
            )
        return await app.runs_waiting(
            waiting,
            function_id=function_id,
            status=status,
            event_id=event_id,
            limit=limit,
            scan=limit * 4,
            after=older,
        )

    async def _suggestions(self) -> list[str]:
        """Payload keys to suggest in the search box (from recent runs' events)."""
        store = self.app.engine.store
        recent = RunFilter(limit=20, app_id=self.app.id)

        def read() -> list[EventRecord]:  # one read on a reader thread
            ids = [r.event_ids[0] for r in store.list_runs(recent) if r.event_ids]
            return store.get_events(ids)

        events = await self.app.engine.read(read)
        keys = sorted({k for e in events for k in e.data if isinstance(k, str)})
        names = sorted({e.name for e in events})
        found = [f"event.data.{k}" for k in keys[:30]]
        found += [f'event.name == "{n}"' for n in names[:10]]
        return [*found, "output", "error.message", 'run.status == "FAILED"']

    async def run_page(self, request: Request, session: Session) -> Response:
        """One run: its timeline, events, output or error, history, and actions."""
        run_id = request.path_params["run_id"]
        values = await self._run_values(run_id)
        if values is None:
            return self.render(
                request, session, "missing.html", 404, what=f"run {run_id}", nav="runs"
            )
        template = "_run_live.html" if request.query_params.get("fragment") else "run.html"
        return self.render(request, session, template, nav="runs", **values)

    async def step_body(self, request: Request, session: Session) -> Response:
        """One step's details (attempts, errors, output): what a run page loads when a step
        beyond the first ``EAGER_STEPS`` is opened."""
        run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
        values = await self._run_values(run_id)
        step = None
        if values is not None:
            step = next((s for s in values["timeline"].steps if s.id == step_id), None)
        if values is None or step is None:
            return json_or_text({"error": f"no step {step_id} in run {run_id}"}, 404)
        return self.render(request, session, "_step_body.html", run=values["run"], step=step)

    async def _run_values(self, run_id: str) -> dict[str, Any] | None:
        app = self.app
        run = await app.get_run(run_id)
        if run is None:
            return None
        history = await app.history(run_id)
        now = datetime.now(UTC)
        engine = app.engine
        events = await engine.read(engine.store.get_events, run.event_ids)
        reasons = await app.waiting_on([run])
        replay_of = next(
            (str(h.data.get("of")) for h in history if h.kind == "RUN_REPLAYED" and h.data), None
        )
        return {
            "run": run,
            "timeline": views.build_timeline(run, history, now),
            "history": history,
            "events": [e.payload() for e in events],
            "waiting": reasons.get(run.run_id),
            "now": now,
            "run_duration": views.run_duration(run, now),
            "replay_of": replay_of,
            "eager_steps": EAGER_STEPS,
        }

    async def export_run(self, request: Request, session: Session) -> Response:
        """A run as one JSON document: the run, its steps, history and events."""
        run_id = request.path_params["run_id"]
        app = self.app
        run = await app.get_run(run_id)
        if run is None:
            return json_or_text({"error": f"no run {run_id}"}, 404)
        history = await app.history(run_id)
        engine = app.engine
        events = await engine.read(engine.store.get_events, run.event_ids)
        document = {
            "run": rest_views.run_json(run, steps=False),
            "steps": [rest_views.step_json(s) for s in run.steps],
            "history": [rest_views.history_json(h) for h in history],
            "events": [e.payload() for e in events],
        }
        body = orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str)
        disposition = f'attachment; filename="run-{safe_name(run_id)}.json"'
        return Response(
            body, media_type="application/json", headers={"Content-Disposition": disposition}
        )

    async def cancel(self, request: Request) -> Response:
        """Cancel a run (POST)."""
        run_id = request.path_params["run_id"]
        cancelled = await self.app.cancel_run(run_id, reason="cancelled from the dashboard")
        if not cancelled:
            return json_or_text({"error": f"run {run_id} does not exist or has ended"}, 409)
        return succeeded(request, f"/runs/{run_id}", {"cancelled": run_id})

    async def replay(self, request: Request) -> Response:
        """Replay a run, from the start or from a step (form field ``from_step``) (POST)."""
        run_id = request.path_params["run_id"]
        form = await read_form(request)
        step = form.get("from_step")
        from_step = step if isinstance(step, str) and step else None
        try:
            new_run = await self.app.replay_run(run_id, from_step=from_step)
        except ConfigError as exc:
            return json_or_text({"error": str(exc)}, 404 if "no run" in str(exc) else 400)
        return succeeded(request, f"/runs/{new_run}", {"run_id": new_run})

    async def live(self, request: Request, session: Session) -> Response:
        """The Server-Sent Events stream of live updates."""
        return StreamingResponse(
            self.hub.listen(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _live_messages(self, runs: list[Run], changes: list[Change]) -> list[tuple[str, Any]]:
        messages: list[tuple[str, Any]] = []
        if runs:
            reasons = await self.app.waiting_on(runs)
            now = datetime.now(UTC)
            row = self.env.get_template("_run_row.html")
            items = [
                {
                    "id": r.run_id,
                    "function": r.function_id,
                    "status": r.status,
                    "waiting": (w.kind if (w := reasons.get(r.run_id)) else ""),
                    "events": r.event_ids,
                    "html": row.render(
                        run=r,
                        waiting=reasons.get(r.run_id),
                        now=now,
                        run_duration=views.run_duration,
                    ),
                }
                for r in runs
            ]
            messages.append(("runs", items))
        ingested = {r.internal_id: r for c in changes for r in c.ingested}
        if ingested:
            engine = self.app.engine
            events = await engine.read(engine.store.get_events, list(ingested))
            duplicates = {i for i, result in ingested.items() if result.duplicate}
            row = self.env.get_template("_event_row.html")
            items = [
                {"id": r["event"].internal_id, "name": r["event"].name, "html": row.render(r=r)}
                for r in await event_rows(self.app, events, duplicates)
            ]
            messages.append(("events", items))
        functions = sorted({f for c in changes for f in c.function_ids})
        if functions:
            messages.append(("functions", functions))
        return messages
