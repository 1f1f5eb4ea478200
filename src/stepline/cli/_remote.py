"""The commands on a remote server: ``--url URL`` (``STEPLINE_URL``) and ``--token TOKEN``
(``STEPLINE_TOKEN``) make ``stepline runs|events|functions ...`` talk to a ``stepline server``'s
REST API (``/api/v1``) instead of opening a database.

``RemoteApp`` answers the ``App`` verbs these commands use with the same values (``Run``,
``HistoryEntry``, ``StoredEvent``, ``SkipRecord`` ...) built from the API's JSON
(``server/views.py``, the one shape), so the commands print the same tables and the same
``--json``. The server acts on its own app (as ``--app`` does); what the API does not offer
(``runs purge``, ``--all-apps``) is refused with a message saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import click

from stepline._cursor import decode_cursor, encode_cursor
from stepline.cli._common import CliError, CliUsageError
from stepline.sdk.run import EventRun, HistoryEntry, Run, StepInfo
from stepline.sdk.search import RunSearch
from stepline.store.records import EventRecord, SkipRecord, StoredEvent

if TYPE_CHECKING:
    import httpx

F = TypeVar("F", bound=Callable[..., Any])
TIMEOUT = 30.0
PAGE = 1000  # the API's largest page


def remote_options(fn: F) -> F:
    """``--url`` and ``--token`` (``STEPLINE_URL``, ``STEPLINE_TOKEN``)."""
    fn = click.option(
        "--token",
        metavar="TOKEN",
        envvar="STEPLINE_TOKEN",
        show_envvar=True,
        help="With --url: the server's API token (sent as Authorization: Bearer). Prefer the "
        "variable: arguments are visible to other users of the machine.",
    )(fn)
    return click.option(
        "--url",
        metavar="URL",
        envvar="STEPLINE_URL",
        show_envvar=True,
        help="Talk to the `stepline server` at this URL (its REST API) instead of a database.",
    )(fn)


def open_remote(url: str, token: str | None, app_ref: str | None, db: str | None) -> RemoteApp:
    """The server at ``url``; a usage error if a database is named too."""
    ctx = click.get_current_context()
    given = [
        f"--{name}"
        for name, value in (("app", app_ref), ("db", db))
        if value is not None
        and ctx.get_parameter_source(name if name == "db" else "app_ref")
        is not click.core.ParameterSource.ENVIRONMENT
    ]
    if given:
        raise CliUsageError(f"--url talks to a server: not with {' and '.join(given)}")
    if not url.startswith(("http://", "https://")):
        raise CliUsageError(f"--url must be an http:// or https:// URL, got {url!r}")
    return RemoteApp(url, token)


def refuse_remote(url: str | None, what: str) -> None:
    """A usage error when ``--url`` is given to an option the API does not offer."""
    if url is not None:
        raise CliUsageError(f"{what} is not available with --url (the REST API has no such verb)")


class RemoteApp:
    """The ``App`` verbs the commands use, answered by a server's REST API."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._history: dict[str, list[HistoryEntry]] = {}
        self._events: dict[str, tuple[EventRecord, list[EventRun]]] = {}
        self._functions: list[dict[str, Any]] | None = None

    def close(self) -> None:
        """Nothing to release (each call uses its own connection)."""

    # -- HTTP -------------------------------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
        conflict_ok: bool = False,
    ) -> Any:
        import httpx  # only with --url: the local commands do not load it

        from stepline._tls import tls_context

        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            async with httpx.AsyncClient(
                headers=self._headers, timeout=TIMEOUT, verify=tls_context()
            ) as client:
                response = await client.request(method, self.url + path, params=query, json=body)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code == 409 and conflict_ok:
            return None
        if response.status_code >= 400:
            raise CliError(_problem(self.url, response))
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{self.url}{path} did not answer JSON (is it a stepline server?)"
            ) from None

    # -- runs -------------------------------------------------------------------------------------
    async def runs(
        self,
        *,
        event_id: str | None = None,
        function_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        waiting_for_worker: bool = False,
        all_apps: bool = False,
        with_steps: bool = True,
        after: tuple[float, str] | None = None,
    ) -> list[Run]:
        """The server's runs, newest first (paged through the API up to ``limit``), below
        ``after`` (a run's ``cursor``) if given."""
        found: list[Run] = []
        cursor = encode_cursor(after) if after else None
        while len(found) < limit:
            page = await self._call(
                "GET",
                "/api/v1/runs",
                params={
                    "function": function_id,
                    "status": status,
                    "event": event_id,
                    "limit": min(PAGE, limit - len(found)),
                    "cursor": cursor,
                    "steps": "true" if with_steps else "false",
                    "waiting_for_worker": "true" if waiting_for_worker else None,
                    "all_apps": "true" if all_apps else None,
                },
            )
            found += [run_from_json(r) for r in page["data"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found

    async def search_runs(
        self,
        query: str,
        *,
        function_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        scan: int = 10_000,
        after: tuple[float, str] | None = None,
        with_steps: bool = False,
        all_apps: bool = False,
    ) -> RunSearch:
        """``App.search_runs`` on the server (one page of the API's search)."""
        found = await self._call(
            "GET",
            "/api/v1/runs",
            params={
                "q": query,
                "function": function_id,
                "status": status,
                "limit": limit,
                "scan": scan,
                "cursor": encode_cursor(after) if after else None,
                "steps": "true" if with_steps else "false",
                "all_apps": "true" if all_apps else None,
            },
        )
        search = found["search"]
        return RunSearch(
            [run_from_json(r) for r in found["data"]],
            search["scanned"],
            search["complete"],
            search["failed"],
            search["error"],
            decode_cursor(found["next_cursor"]) if found.get("next_cursor") else None,
        )

    async def get_run(self, run_id: str) -> Run | None:
        """One run with its steps (its history is kept for ``history``)."""
        if "/" in run_id or not run_id:
            return None
        found = await self._call("GET", f"/api/v1/runs/{quote(run_id)}", missing_ok=True)
        if found is None:
            return None
        self._history[run_id] = [history_from_json(h) for h in found.get("history", [])]
        return run_from_json(found)

    async def history(self, run_id: str) -> list[HistoryEntry]:
        """A run's history (read with the run)."""
        if run_id not in self._history:
            await self.get_run(run_id)
        return self._history.get(run_id, [])

    async def cancel_run(self, run_id: str, reason: str = "cancelled by API") -> bool:
        """Cancel one run; False when it has already ended."""
        path = f"/api/v1/runs/{quote(run_id)}/cancel"
        done = await self._call("POST", path, body={"reason": reason}, conflict_ok=True)
        return done is not None

    async def cancel_runs(
        self,
        function_id: str,
        *,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        if_: str | None = None,
        reason: str = "bulk cancellation",
        limit: int = 100_000,
        dry_run: bool = False,
        all_apps: bool = False,
    ) -> list[str]:
        """Cancel a function's unfinished runs (``dry_run``: the ids that would be, as far as
        the preview's sample goes: ``preview_count`` gives how many)."""
        body: dict[str, Any] = {"function_id": function_id, "reason": reason, "limit": limit}
        if started_after is not None:
            body["created_after"] = _iso(started_after)
        if started_before is not None:
            body["created_before"] = _iso(started_before)
        if if_ is not None:
            body["if"] = if_
        body["dry_run"] = dry_run
        found = await self._call("POST", "/api/v1/runs/cancel", body=body)
        return list(found.get("sample" if dry_run else "cancelled", []))

    async def preview_count(
        self,
        function_id: str,
        started_after: datetime | None,
        started_before: datetime | None,
        if_: str | None,
    ) -> int:
        """How many runs ``cancel_runs`` would cancel."""
        body: dict[str, Any] = {"function_id": function_id, "dry_run": True}
        if started_after is not None:
            body["created_after"] = _iso(started_after)
        if started_before is not None:
            body["created_before"] = _iso(started_before)
        if if_ is not None:
            body["if"] = if_
        found = await self._call("POST", "/api/v1/runs/cancel", body=body)
        return int(found["count"])

    async def replay_run(
        self, run_id: str, *, from_step: str | None = None, all_apps: bool = False
    ) -> str:
        """Start a run replaying ``run_id``; its id."""
        body = {"from_step": from_step} if from_step is not None else {}
        found = await self._call("POST", f"/api/v1/runs/{quote(run_id)}/replay", body=body)
        return str(found["run_id"])

    async def purge_runs(self, *, before: datetime, limit: int = 10_000) -> int:
        """Delete runs that ended before ``before``; how many were."""
        body = {"before": _iso(before), "limit": limit}
        return int((await self._call("POST", "/api/v1/runs/purge", body=body))["deleted"])

    async def skipped(self, function_id: str | None = None, limit: int = 100) -> list[SkipRecord]:
        """Runs flow control skipped, newest first."""
        found = await self._call(
            "GET", "/api/v1/skipped", params={"function": function_id, "limit": limit}
        )
        return [
            SkipRecord(s["event_id"], s["function_id"], s["reason"], _seconds(s["at"]))
            for s in found["data"]
        ]

    # -- events -----------------------------------------------------------------------------------
    async def events(
        self,
        *,
        name: str | None = None,
        received_after: datetime | None = None,
        received_before: datetime | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        """Events, newest first."""
        found: list[StoredEvent] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await self._call(
                "GET",
                "/api/v1/events",
                params={
                    "name": name,
                    "received_after": _iso(received_after),
                    "received_before": _iso(received_before),
                    "limit": min(PAGE, limit - len(found)),
                    "cursor": cursor,
                },
            )
            found += [
                StoredEvent(event_from_json(e), _seconds(e["received_at"]), bool(e["duplicate"]))
                for e in page["data"]
            ]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found

    async def get_event(self, event_id: str) -> EventRecord | None:
        """One event (the runs it started are kept for ``event_runs``)."""
        if "/" in event_id or not event_id:
            return None
        path = f"/api/v1/events/{quote(event_id)}"
        found = await self._call("GET", path, missing_ok=True)
        if found is None:
            return None
        event = event_from_json(found)
        runs = [EventRun(r["effect"], run_from_json(r)) for r in found.get("runs", [])]
        self._events[event_id] = (event, runs)
        return event

    async def event_runs(self, event_id: str) -> list[EventRun]:
        """The runs an event started, resumed and cancelled (read with the event)."""
        if event_id not in self._events:
            await self.get_event(event_id)
        return self._events.get(event_id, (None, []))[1]

    # -- functions --------------------------------------------------------------------------------
    async def functions_json(self) -> list[dict[str, Any]]:
        """The server's functions as the API gives them (``views.function_json``)."""
        if self._functions is None:
            self._functions = list((await self._call("GET", "/api/v1/functions"))["data"])
        return self._functions

    async def paused(self) -> set[str]:
        """The ids of the server's paused functions."""
        return {f["id"] for f in await self.functions_json() if f["paused"]}

    async def pause_function(self, function_id: str, *, all_apps: bool = False) -> None:
        """Pause one of the server's functions."""
        await self._call("POST", f"/api/v1/functions/{quote(function_id)}/pause")
        self._functions = None

    async def resume_function(self, function_id: str, *, all_apps: bool = False) -> None:
        """Resume one of the server's functions."""
        await self._call("POST", f"/api/v1/functions/{quote(function_id)}/resume")
        self._functions = None


# -- JSON back to values ---------------------------------------------------------------------------
def run_from_json(data: dict[str, Any]) -> Run:
    """A ``Run`` from ``views.run_json``."""
    return Run(
        run_id=data["run_id"],
        function_id=data["function_id"],
        status=data["status"],
        output=data.get("output"),
        error=data.get("error"),
        event_ids=list(data.get("event_ids") or []),
        created_at=_required_time(data["created_at"]),
        started_at=_time(data.get("started_at")),
        ended_at=_time(data.get("ended_at")),
        attempt=int(data.get("attempt") or 0),
        steps=[step_from_json(s) for s in data.get("steps") or []],
        app_id=data.get("app_id") or "",
        worker_id=data.get("worker_id"),
        waiting_for_worker=bool(data.get("waiting_for_worker")),
        cursor=decode_cursor(data["cursor"]) if data.get("cursor") else None,
    )


def step_from_json(data: dict[str, Any]) -> StepInfo:
    """A ``StepInfo`` from ``views.step_json``."""
    return StepInfo(
        data["id"],
        data["kind"],
        data["status"],
        int(data["attempts"]),
        data.get("output"),
        data.get("error"),
        _time(data.get("started_at")),
        _time(data.get("ended_at")),
    )


def history_from_json(data: dict[str, Any]) -> HistoryEntry:
    """A ``HistoryEntry`` from ``views.history_json``."""
    return HistoryEntry(
        _required_time(data["at"]),
        data["kind"],
        data.get("step_id"),
        data.get("attempt"),
        data.get("duration"),
        data.get("data"),
        data.get("worker_id"),
    )


def event_from_json(data: dict[str, Any]) -> EventRecord:
    """An ``EventRecord`` from ``views.event_json``."""
    return EventRecord(
        data["id"],
        data["name"],
        dict(data.get("data") or {}),
        dict(data.get("user") or {}),
        data.get("sender_id"),
        int(data["ts"]) / 1000,
        v=data.get("v"),
    )


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _required_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _seconds(text: str) -> float:
    return _required_time(text).timestamp()


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _problem(url: str, response: httpx.Response) -> str:
    """The server's error message (``{"error": ...}``), or the status line."""
    try:
        message = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = response.reason_phrase or "error"
    if response.status_code == 401:
        message += " (give the server's API token: --token or STEPLINE_TOKEN)"
    return f"{url}: {response.status_code} {message}"
