"""Inngest's REST API (``pkg/api/apiv1``): ``GET /v1/events/{event_id}/runs``, the runs an event
started (``GetEventRuns``; the docs' "Fetch run status and output" polls it with the ids
``inngest.send`` returned until ``data[0].status`` is ``Completed``, then reads
``data[0].output``); ``GET /v1/events`` (its filters), ``GET /v1/events/{event_id}``,
``GET /v1/runs/{run_id}`` and ``DELETE /v1/runs/{run_id}``. Neither SDK calls them; the shapes
are the documented ones.

issue 10, "The dev server's read API": tools written for Inngest's servers work against Stepline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from stepline import App, Context, NonRetriableError, TriggerEvent
from stepline.sdk.run import Run
from stepline.server import inngest_rest
from stepline.server.inngest_rest import ULID
from stepline.store.records import EventRecord, StoredEvent
from stepline.testing import MockClock, TestEngine

from .conftest import API_TOKEN, ServeFn, keyed_settings, until


@pytest.fixture
def app() -> App:
    app = App("event-runs")

    @app.function(id="greet", trigger=TriggerEvent("user/signed-up"))
    async def greet(ctx: Context) -> dict[str, Any]:
        name = await ctx.step.run("name", lambda: ctx.event.data["name"])
        return {"hello": name}

    @app.function(id="audit", trigger=TriggerEvent("user/signed-up"), retries=0)
    async def audit(ctx: Context) -> None:
        await ctx.step.run("check", _refuse)

    @app.function(id="nap", trigger=TriggerEvent("nap/start"))
    async def nap(ctx: Context) -> str:
        await ctx.step.sleep("long", "1000d")
        return "rested"

    return app


def _refuse() -> None:
    raise NonRetriableError("not allowed")


async def _runs(client: httpx.AsyncClient, event_id: str, **headers: str) -> dict[str, Any]:
    response = await client.get(f"/v1/events/{event_id}/runs", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_events_runs_with_their_status_and_output(serve: ServeFn) -> None:
    async with serve() as (client, t):
        sent = await client.post("/e/key", json={"name": "user/signed-up", "data": {"name": "ada"}})
        [event_id] = sent.json()["ids"]

        async def ended() -> list[dict[str, Any]] | None:
            runs: list[dict[str, Any]] = (await _runs(client, event_id))["data"]
            done = len(runs) == 2 and all(r["status"] != "Running" for r in runs)
            return runs if done else None

        runs = await until("both runs to end", ended)
        by_function = {run["function_id"]: run for run in runs}
        greet, audit = by_function["greet"], by_function["audit"]
        assert greet["status"] == "Completed" and greet["output"] == {"hello": "ada"}
        assert audit["status"] == "Failed"
        assert "not allowed" in audit["output"]["message"]  # a failed run's output: its error
        stored = {r.run_id: r for r in await t.app.runs(event_id=event_id)}
        for run in runs:
            assert run["event_id"] == event_id and run["function_version"] == 0
            assert run["environment_id"] == "00000000-0000-4000-b000-000000000000"
            assert "batch_id" not in run and "cron" not in run  # omitempty, as Inngest's
            assert run["run_id"] in stored
            started = datetime.fromisoformat(run["run_started_at"])
            assert datetime.fromisoformat(run["ended_at"]) >= started
        assert [r["run_id"] for r in runs] == sorted(
            stored, key=lambda i: (stored[i].created_at, i)
        )  # oldest first


async def test_runs_in_progress_and_cancelled(serve: ServeFn) -> None:
    # a clock that moves only when told to: an idle engine would otherwise jump to the end of
    # the sleep before the test reads the run sleeping (a loaded machine's gate did)
    async with serve(clock=MockClock(autojump=False)) as (client, t):
        event_id, run = await _napping(client, t)
        [sleeping] = (await _runs(client, event_id))["data"]
        assert (sleeping["status"], sleeping["ended_at"]) == ("Running", None)
        assert "output" not in sleeping  # none yet: omitted, as Inngest's ``omitempty``
        assert (await client.post(f"/api/v1/runs/{run.run_id}/cancel")).status_code == 200
        await t.wait_for_status(run.run_id, "CANCELLED")
        [cancelled] = (await _runs(client, event_id))["data"]
        assert (cancelled["status"], cancelled["output"]) == ("Cancelled", None)


async def test_the_event_is_read_once_for_all_its_runs(
    serve: ServeFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    get_event = App.get_event

    async def counted(self: App, event_id: str) -> Any:
        reads.append(event_id)
        return await get_event(self, event_id)

    monkeypatch.setattr(App, "get_event", counted)
    async with serve() as (client, _):
        sent = await client.post("/e/key", json={"name": "user/signed-up", "data": {"name": "b"}})
        [event_id] = sent.json()["ids"]
        reads.clear()
        assert len((await _runs(client, event_id))["data"]) == 2  # greet and audit
        assert reads == [event_id]


async def test_an_event_that_started_nothing_has_no_runs(serve: ServeFn) -> None:
    async with serve() as (client, _):
        sent = await client.post("/e/key", json={"name": "nobody/listens"})
        [event_id] = sent.json()["ids"]
        body = await _runs(client, event_id)
        assert body["data"] == []
        fetched = datetime.fromisoformat(body["metadata"]["fetched_at"])
        cached = datetime.fromisoformat(body["metadata"]["cached_until"])
        assert (cached - fetched).total_seconds() == 15  # as Inngest's API caches it
        assert (await _runs(client, "01HWAVEB858VPPX47Z65GR6P6R"))["data"] == []


async def test_an_id_that_is_no_ulid_is_refused_as_inngests(serve: ServeFn) -> None:
    async with serve() as (client, _):
        for bad in (
            "nope",
            "01HWAVEB858VPPX47Z65GR6P6",
            "01HWAVEB858VPPX47Z65GR6P6U",
            "81HWAVEB858VPPX47Z65GR6P6R",
        ):
            reply = await client.get(f"/v1/events/{bad}/runs")
            assert reply.status_code == 400, bad
            assert reply.json()["error"] == f"Invalid event ID: {bad}"


async def test_the_api_token_is_required_when_configured(serve: ServeFn) -> None:
    async with serve(keyed_settings()) as (client, _):
        missing = await client.get("/v1/events/01HWAVEB858VPPX47Z65GR6P6R/runs")
        assert missing.status_code == 401
        await _runs(client, "01HWAVEB858VPPX47Z65GR6P6R", authorization=f"Bearer {API_TOKEN}")


async def test_events_filtered_by_name_received_time_and_limit(serve: ServeFn) -> None:
    clock = MockClock(start=1_800_000_000.0, autojump=False)
    async with serve(clock=clock) as (client, _):
        early = (await client.post("/e/key", json={"name": "x/one", "data": {"n": 0}})).json()
        clock.advance(60)
        late = await client.post(
            "/e/key", json=[{"name": "x/one", "data": {"n": n}} for n in (1, 2)]
        )
        [first] = early["ids"]
        later = late.json()["ids"]
        listed = (await client.get("/v1/events", params={"name": "x/one"})).json()
        assert [e["internal_id"] for e in listed["data"]] == [*reversed(later), first]
        assert listed["metadata"]["cached_until"] is None  # as Inngest: not cached
        middle = "1800000030000"  # epoch ms between the two sends
        before = await client.get("/v1/events", params={"received_before": middle})
        assert [e["internal_id"] for e in before.json()["data"]] == [first]
        after = await client.get(
            "/v1/events", params={"name": "x/one", "received_after": "2027-01-15T08:00:30Z"}
        )
        assert [e["internal_id"] for e in after.json()["data"]] == list(reversed(later))
        two = await client.get("/v1/events", params={"name": "x/one", "limit": "2"})
        assert len(two.json()["data"]) == 2


async def test_events_default_to_twenty_and_are_cut_to_fifty_one(serve: ServeFn) -> None:
    async with serve() as (client, _):
        sent = [{"name": "x/many", "data": {"n": i}} for i in range(120)]
        assert (await client.post("/e/key", json=sent)).status_code == 200
        default = (await client.get("/v1/events", params={"name": "x/many"})).json()["data"]
        assert len(default) == 20  # Inngest's DefaultEvents
        for limit in ("0", ""):  # as Inngest: none or 0 is the default
            got = await client.get("/v1/events", params={"name": "x/many", "limit": limit})
            assert len(got.json()["data"]) == 20
        most = await client.get("/v1/events", params={"name": "x/many", "limit": "1000"})
        assert len(most.json()["data"]) == 51  # bounded as Inngest bounds it (cqrs.MaxEvents)


async def test_events_are_the_last_hours_unless_received_after_says(serve: ServeFn) -> None:
    # Inngest's WorkspaceEventsOpts.Validate: Oldest defaults to an hour ago
    clock = MockClock(start=1_800_000_000.0, autojump=False)
    async with serve(clock=clock) as (client, _):
        [old] = (await client.post("/e/key", json={"name": "x/hour"})).json()["ids"]
        clock.advance(3000)
        [recent] = (await client.post("/e/key", json={"name": "x/hour"})).json()["ids"]
        clock.advance(601)  # the first one is now an hour and a second old

        async def listed(**params: str) -> list[str]:
            reply = await client.get("/v1/events", params={"name": "x/hour", **params})
            return [e["internal_id"] for e in reply.json()["data"]]

        assert await listed() == [recent]
        assert await listed(received_after="1800000000000") == [recent, old]


async def test_events_list_refuses_what_it_cannot_read(serve: ServeFn) -> None:
    async with serve() as (client, _):
        for params, says in (
            ({"received_after": "yesterday"}, "received_after"),
            ({"received_before": "abc"}, "received_before"),
            ({"limit": "ten"}, "limit"),
            ({"cursor": "nope"}, "Invalid cursor query parameter"),
            ({"cursor": "81HWAVEB858VPPX47Z65GR6P6R"}, "Invalid cursor query parameter"),
        ):
            reply = await client.get("/v1/events", params=params)
            assert reply.status_code == 400, params
            assert says in reply.json()["error"]


async def test_events_page_with_inngests_cursor_each_once(serve: ServeFn) -> None:
    # Inngest's WorkspaceEvents: ``internal_id < cursor ORDER BY internal_id DESC``; the last
    # internal_id of a page is the cursor of the next
    async with serve() as (client, _):
        sent = await client.post(
            "/e/key", json=[{"name": "x/paged", "data": {"n": n}} for n in range(45)]
        )
        ids = sent.json()["ids"]
        assert ids == sorted(ids)
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            params = {"name": "x/paged", **({"cursor": cursor} if cursor else {})}
            page = [
                e["internal_id"]
                for e in (await client.get("/v1/events", params=params)).json()["data"]
            ]
            if not page:
                break
            pages.append(page)
            cursor = page[-1]
        assert [len(page) for page in pages] == [20, 20, 5]
        assert [i for page in pages for i in page] == list(reversed(ids))
        # a cursor in lower case (a ULID's letters are either), and one no event has
        lower = await client.get("/v1/events", params={"cursor": ids[10].lower(), "limit": "3"})
        assert [e["internal_id"] for e in lower.json()["data"]] == ids[9:6:-1]
        gone = await client.get("/v1/events", params={"cursor": "7" + "Z" * 25, "limit": "2"})
        assert [e["internal_id"] for e in gone.json()["data"]] == ids[:-3:-1]


async def test_events_are_listed_by_internal_id_as_inngest_lists_them(serve: ServeFn) -> None:
    # an SDK's retried send reuses its id seed: its events' ids are of the first try's time,
    # before those of events received in between; Inngest lists by id, so does /v1/events
    clock = MockClock(start=1_800_000_000.0, autojump=False)
    async with serve(clock=clock) as (client, _):
        seed = {"x-inngest-event-id-seed": "1799999990000,AAAAAAAAAAAAAA=="}
        received_first = (await client.post("/e/key", json={"name": "x/seeded"})).json()["ids"]
        clock.advance(1)
        seeded = (await client.post("/e/key", json={"name": "x/seeded"}, headers=seed)).json()[
            "ids"
        ]
        assert seeded < received_first
        listed = (await client.get("/v1/events", params={"name": "x/seeded"})).json()["data"]
        assert [e["internal_id"] for e in listed] == [*received_first, *seeded]
        ours = (await client.get("/api/v1/events", params={"name": "x/seeded"})).json()["data"]
        assert [e["id"] for e in ours] == [*seeded, *received_first]  # by received time


async def test_one_event_as_inngests_api_shows_it(serve: ServeFn) -> None:
    async with serve() as (client, _):
        sent = await client.post(
            "/e/key",
            json=[
                {"name": "x/one", "data": {"a": 1}, "user": {"email": "a@b"}, "ts": 1700000000000},
                {"name": "x/one", "id": "order-7"},
            ],
        )
        plain, keyed = sent.json()["ids"]
        reply = await client.get(f"/v1/events/{plain}")
        assert reply.status_code == 200
        assert reply.headers["cache-control"] == "private, max-age=5"
        shown = reply.json()["data"]
        assert {k: shown[k] for k in ("internal_id", "id", "name", "data", "user", "ts")} == {
            "internal_id": plain,
            "id": plain,  # no id of the sender's: the internal one, as Inngest stores it
            "name": "x/one",
            "data": {"a": 1},
            "user": {"email": "a@b"},
            "ts": 1700000000000,
        }  # the other fields: test_inngest_rest_fields.py
        assert (await client.get(f"/v1/events/{keyed}")).json()["data"]["id"] == "order-7"
        missing = await client.get("/v1/events/01HWAVEB858VPPX47Z65GR6P6R")
        assert (missing.status_code, missing.json()["error"]) == (404, "Event not found")
        bad = await client.get("/v1/events/nope")
        assert (bad.status_code, bad.json()["error"]) == (400, "Invalid event ID: nope")


async def test_one_run_as_inngests_api_shows_it(serve: ServeFn) -> None:
    async with serve() as (client, t):
        sent = await client.post("/e/key", json={"name": "user/signed-up", "data": {"name": "ada"}})
        [event_id] = sent.json()["ids"]
        greet = [r for r in await until("the runs", lambda: t.app.runs(event_id=event_id))]
        [run] = [r for r in greet if r.function_id == "greet"]
        await t.app.wait_for_run(run.run_id)
        reply = await client.get(f"/v1/runs/{run.run_id}")
        assert reply.status_code == 200
        data = reply.json()["data"]
        listed = (await _runs(client, event_id))["data"]
        assert data == next(r for r in listed if r["run_id"] == run.run_id)
        assert (data["status"], data["output"], data["event_id"]) == (
            "Completed",
            {"hello": "ada"},
            event_id,
        )
        missing = await client.get("/v1/runs/01HWAVEB858VPPX47Z65GR6P6R")
        assert missing.status_code == 404
        assert missing.json()["error"] == "Unable to load function run: 01HWAVEB858VPPX47Z65GR6P6R"


async def test_a_run_cancelled_by_delete(serve: ServeFn) -> None:
    async with serve(clock=MockClock(autojump=False)) as (client, t):
        _, run = await _napping(client, t)
        deleted = await client.delete(f"/v1/runs/{run.run_id}")
        assert (deleted.status_code, deleted.content) == (200, b"")
        await t.wait_for_status(run.run_id, "CANCELLED")
        shown = (await client.get(f"/v1/runs/{run.run_id}")).json()["data"]
        assert shown["status"] == "Cancelled"
        again = await client.delete(f"/v1/runs/{run.run_id}")  # ended: nothing to cancel
        assert again.status_code == 404
        unknown = await client.delete("/v1/runs/01HWAVEB858VPPX47Z65GR6P6R")
        assert unknown.status_code == 404


async def test_the_new_routes_ask_for_the_api_token(serve: ServeFn) -> None:
    async with serve(keyed_settings()) as (client, _):
        for method, path in (
            ("GET", "/v1/events"),
            ("GET", "/v1/events/01HWAVEB858VPPX47Z65GR6P6R"),
            ("GET", "/v1/runs/01HWAVEB858VPPX47Z65GR6P6R"),
            ("DELETE", "/v1/runs/01HWAVEB858VPPX47Z65GR6P6R"),
            ("GET", "/v1/cancellations"),
            ("DELETE", "/v1/cancellations/01HWAVEB858VPPX47Z65GR6P6R"),
        ):
            assert (await client.request(method, path)).status_code == 401, path
            authorized = await client.request(
                method, path, headers={"authorization": f"Bearer {API_TOKEN}"}
            )
            assert authorized.status_code in (200, 404), path


async def _napping(client: httpx.AsyncClient, t: TestEngine) -> tuple[str, Run]:
    """A nap/start event sent, and its run once it sleeps."""
    sent = await client.post("/e/key", json={"name": "nap/start"})
    [event_id] = sent.json()["ids"]
    run = await _run_of(t, event_id)
    await t.wait_for_status(run.run_id, "SLEEPING")
    return event_id, run


async def _run_of(t: TestEngine, event_id: str) -> Run:
    async def runs() -> list[Run]:
        return await t.app.runs(event_id=event_id)

    found: list[Run] = await until("the run of the event", runs)
    return found[0]


async def test_a_bulk_cancellation_cancels_every_matching_run_at_once(
    serve: ServeFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    listings: list[str] = []
    cancel_runs = App.cancel_runs

    async def counted(self: App, function_id: str, **options: Any) -> list[str]:
        listings.append(function_id)  # each call lists the function's unfinished runs
        return await cancel_runs(self, function_id, **options)

    monkeypatch.setattr(App, "cancel_runs", counted)
    clock = MockClock(start=1_800_000_000.0, autojump=False)
    async with serve(clock=clock) as (client, t):
        naps = [{"name": "nap/start", "data": {"user": u}} for u in ("a", "b", "a")]
        ids = (await client.post("/e/key", json=naps)).json()["ids"]
        runs = [await _run_of(t, event_id) for event_id in ids]
        for run in runs:
            await t.wait_for_status(run.run_id, "SLEEPING")
        clock.advance(60)
        late = await client.post("/e/key", json={"name": "nap/start", "data": {"user": "a"}})
        late_run = await _run_of(t, late.json()["ids"][0])
        body = {
            "app_id": t.app.id,
            "function_id": "nap",
            "started_after": "2027-01-15T07:59:00Z",
            "started_before": "2027-01-15T08:00:30Z",  # before the late run
            "if": "event.data.user == 'a'",
        }
        reply = await client.post("/v1/cancellations", json=body)
        assert reply.status_code == 200, reply.text
        shown = reply.json()["data"]
        assert ULID.match(shown["id"])
        assert {k: shown[k] for k in ("function_id", "if", "cancelled")} == {
            "function_id": "nap",
            "if": "event.data.user == 'a'",
            "cancelled": 2,
        }
        assert shown["environment_id"] == "00000000-0000-4000-b000-000000000000"
        assert datetime.fromisoformat(shown["started_before"]).timestamp() == 1_800_000_030
        assert listings == ["nap"]  # one listing, not one more to find nothing left
        statuses = [(await t.app.get_run(r.run_id)).status for r in [*runs, late_run]]
        # user b's run, and the run created after started_before, are not cancelled
        assert statuses[:3] == ["CANCELLED", "SLEEPING", "CANCELLED"]
        assert statuses[3] != "CANCELLED"


async def test_a_bulk_cancellation_is_checked_as_inngests(serve: ServeFn) -> None:
    clock = MockClock(start=1_800_000_000.0, autojump=False)
    async with serve(clock=clock) as (client, t):
        past = "2027-01-15T07:00:00Z"
        for body, status, says in (
            ({}, 400, "app_id is required\nfunction_id is required\nstarted_before is required"),
            (
                {
                    "app_id": t.app.id,
                    "function_id": "nap",
                    "started_before": "2027-01-15T09:00:00Z",
                },
                400,
                "started_before must be in the past",
            ),
            (
                {
                    "app_id": t.app.id,
                    "function_id": "nap",
                    "started_before": past,
                    "started_after": "2027-01-15T07:30:00Z",
                },
                400,
                "started_after must be before started_before",
            ),
            (
                {"app_id": t.app.id, "function_id": "nope", "started_before": past},
                404,
                "function not found",
            ),
            (
                {"app_id": "other", "function_id": "nap", "started_before": past},
                404,
                "function not found",
            ),
            (
                {
                    "app_id": t.app.id,
                    "function_id": "nap",
                    "started_before": past,
                    "if": "event.data ==",
                },
                400,
                "invalid expression",
            ),
        ):
            reply = await client.post("/v1/cancellations", json=body)
            assert reply.status_code == status, (body, reply.text)
            assert reply.json()["error"].startswith(says), reply.json()["error"]


def test_an_sdk_apps_function_is_found_by_its_slug() -> None:
    app = App("served")

    @app.function(id="shop-charge", trigger=TriggerEvent("x/y"))
    async def charge(ctx: Context) -> None:
        return None

    assert inngest_rest._function_of(app, "shop", "charge") == "shop-charge"
    assert inngest_rest._function_of(app, "served", "shop-charge") == "shop-charge"
    assert inngest_rest._function_of(app, "served", "charge") is None


async def test_app_events_pages_in_one_order_at_a_time(serve: ServeFn) -> None:
    async with serve() as (_, t):
        last = StoredEvent(EventRecord("e", "x/one", {}, {}, None, 1.0), 1.0, False)
        with pytest.raises(ValueError, match="after"):
            await t.app.events(after=last, id_below="7" + "Z" * 25)
