"""Inngest's REST API field by field, against Inngest's server source: an event as
``cqrs.Event`` encodes it (``pkg/cqrs/events.go``: ``internal_id``, ``account_id``,
``environment_id``, ``source``, ``source_id``, ``received_at``, then the event's own fields,
``user``, ``ts`` and ``v`` omitted when empty), ``GET /v1/events`` leaving out Inngest's own
events (``base_cqrs``'s ``newEventsQueryBuilder``: ``event_name NOT LIKE 'inngest/%'`` unless
``IncludeInternalEvents``, which the REST handler never sets), a run as ``cqrs.FunctionRun``
(``batch_id``, ``cron``, ``output`` omitted when empty), the run routes' 400 for an id that is
no ULID and the answers' cache times (``pkg/api/apiv1/runs.go``, ``events.go``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from stepline import App, CancelOn, Context, TriggerEvent
from stepline.drivers.inngest._signing import SigningKey
from stepline.testing import MockClock

from .conftest import API_TOKEN, ServeFn, keyed_settings, until

ZERO_UUID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def app() -> App:
    app = App("rest-fields")

    @app.function(id="greet", trigger=TriggerEvent("user/signed-up"))
    async def greet(ctx: Context) -> dict[str, Any]:
        return {"hello": ctx.event.data.get("name")}

    @app.function(
        id="nap",
        trigger=TriggerEvent("nap/start"),
        cancel_on=[CancelOn("nap/stop", if_="async.data.n == event.data.n")],
    )
    async def nap(ctx: Context) -> str:
        await ctx.step.sleep("long", "1000d")
        return "rested"

    return app


async def _send(client: httpx.AsyncClient, name: str, data: dict[str, Any] | None = None) -> str:
    sent = await client.post("/e/key", json={"name": name, "data": data or {}})
    [event_id] = sent.json()["ids"]
    assert isinstance(event_id, str)
    return event_id


async def test_an_event_as_inngests_cqrs_event(serve: ServeFn) -> None:
    clock = MockClock(start=1_800_000_000.25, autojump=False)
    async with serve(clock=clock) as (client, _):
        sent = await client.post(
            "/e/key",
            json=[
                {"name": "x/plain", "data": {"a": 1}},
                {"name": "x/full", "user": {"email": "a@b"}, "id": "o-7", "ts": 1_700_000_000_000},
            ],
        )
        plain, full = sent.json()["ids"]
        received = datetime.fromtimestamp(1_800_000_000.25, UTC)
        one = (await client.get(f"/v1/events/{plain}")).json()["data"]
        assert one == {
            "internal_id": plain,
            "account_id": ZERO_UUID,
            "environment_id": ZERO_UUID,
            "source": "",
            "source_id": None,
            "received_at": one["received_at"],
            "id": plain,
            "name": "x/plain",
            "data": {"a": 1},
            "ts": 1_800_000_000_250,
        }  # no user: Inngest's ``user,omitempty``
        assert datetime.fromisoformat(one["received_at"]) == received
        other = (await client.get(f"/v1/events/{full}")).json()["data"]
        assert (other["user"], other["id"], other["ts"]) == ({"email": "a@b"}, "o-7", 1.7e12)
        listed = (await client.get("/v1/events", params={"name": "x/plain"})).json()["data"]
        assert listed == [one]  # the list shows each event as the one-event route does


async def test_inngests_own_events_are_not_listed(serve: ServeFn) -> None:
    async with serve(clock=MockClock(autojump=False)) as (client, t):
        started = await _send(client, "user/signed-up")
        napping = await _send(client, "nap/start", {"n": 1})

        async def finished() -> list[dict[str, Any]]:
            reply = await client.get("/api/v1/events", params={"name": "inngest/function.finished"})
            shown: list[dict[str, Any]] = reply.json()["data"]
            return shown if len(shown) == 2 else []

        [run] = await until("the nap's run", lambda: t.app.runs(event_id=napping))
        await t.wait_for_status(run.run_id, "SLEEPING")
        stopped = await _send(client, "nap/stop", {"n": 1})
        announced = await until("both runs' announcements", finished)  # greet's, the nap's
        ours = await client.get("/api/v1/events", params={"limit": "50"})
        assert {e["name"] for e in ours.json()["data"]} >= {
            "inngest/function.finished",
            "inngest/function.cancelled",
        }
        listed = (await client.get("/v1/events", params={"limit": "50"})).json()["data"]
        assert [e["internal_id"] for e in listed] == [stopped, napping, started]
        for name in ("inngest/function.finished", "inngest/function.cancelled"):
            named = await client.get("/v1/events", params={"name": name})
            assert named.json()["data"] == []  # as Inngest: the name filter and the exclusion
        for event in announced:  # one event by its id is shown whatever its name
            shown = await client.get(f"/v1/events/{event['id']}")
            assert shown.json()["data"]["name"] == "inngest/function.finished"


async def test_a_run_as_inngests_function_run(serve: ServeFn) -> None:
    async with serve(clock=MockClock(autojump=False)) as (client, t):
        napping = await _send(client, "nap/start", {"n": 2})
        [run] = await until("the nap's run", lambda: t.app.runs(event_id=napping))
        await t.wait_for_status(run.run_id, "SLEEPING")
        sleeping = (await client.get(f"/v1/runs/{run.run_id}")).json()["data"]
        assert set(sleeping) == {
            "run_id",
            "run_started_at",
            "function_id",
            "function_version",
            "environment_id",
            "event_id",
            "status",
            "ended_at",
        }  # no output yet; batch_id and cron omitted (``omitempty``), ended_at null
        assert (sleeping["status"], sleeping["ended_at"]) == ("Running", None)
        # Inngest's dev server's environment (consts.DevServerEnvID), not an event's zero UUID
        assert sleeping["environment_id"] == "00000000-0000-4000-b000-000000000000"
        greeted = await _send(client, "user/signed-up")
        [done] = await until("greet's run", lambda: t.app.runs(event_id=greeted))
        await t.app.wait_for_run(done.run_id)
        [shown] = (await client.get(f"/v1/events/{greeted}/runs")).json()["data"]
        assert (shown["status"], shown["output"]) == ("Completed", {"hello": None})
        assert "batch_id" not in shown and "cron" not in shown


async def test_the_run_routes_refuse_an_id_that_is_no_ulid(serve: ServeFn) -> None:
    async with serve() as (client, _):
        for method in ("GET", "DELETE"):
            reply = await client.request(method, "/v1/runs/nope")
            assert reply.status_code == 400, method
            assert reply.json()["error"] == "Invalid run ID: nope"


async def test_answers_are_cacheable_as_long_as_inngests(serve: ServeFn) -> None:
    async with serve(clock=MockClock(autojump=False)) as (client, t):
        napping = await _send(client, "nap/start", {"n": 3})
        [run] = await until("the nap's run", lambda: t.app.runs(event_id=napping))
        for path, seconds in (
            (f"/v1/runs/{run.run_id}", 3),
            (f"/v1/events/{napping}/runs", 15),
            (f"/v1/events/{napping}", 5),
        ):
            reply = await client.get(path)
            assert reply.headers["cache-control"] == f"private, max-age={seconds}", path
            metadata = reply.json()["metadata"]
            fetched = datetime.fromisoformat(metadata["fetched_at"])
            cached = datetime.fromisoformat(metadata["cached_until"])
            assert (cached - fetched).total_seconds() == seconds, path


async def test_the_signing_key_opens_inngests_rest_api(serve: ServeFn) -> None:
    # Inngest's REST API takes the environment's signing key as its Bearer token (its
    # "Authentication" page; the "fetch run status and output" recipe sends
    # INNGEST_SIGNING_KEY): a server given the key its SDK apps hold takes it there too
    key, fallback = "signkey-prod-" + "ab" * 32, "signkey-prod-" + "cd" * 32
    settings = keyed_settings(signing_key=key, signing_key_fallback=fallback)
    hashed = SigningKey.parse(key).hashed
    async with serve(settings) as (client, _):
        for token in (key, "ab" * 32, f"signkey-prod-{hashed}", fallback):
            for path in ("/v1/events", "/v1/runs/01HWAVEB858VPPX47Z65GR6P6R"):
                reply = await client.get(path, headers={"authorization": f"Bearer {token}"})
                assert reply.status_code in (200, 404), (token, path, reply.text)
        wrong = {"authorization": "Bearer signkey-prod-" + "ef" * 32}
        assert (await client.get("/v1/events", headers=wrong)).status_code == 401
        assert (await client.get("/v1/events")).status_code == 401
        # Stepline's own API stays behind its API tokens
        ours = await client.get("/api/v1/events", headers={"authorization": f"Bearer {key}"})
        assert ours.status_code == 401
        token = {"authorization": f"Bearer {API_TOKEN}"}
        assert (await client.get("/v1/events", headers=token)).status_code == 200


async def test_cancellations_are_listed_and_deleted_as_inngests_none_being_kept(
    serve: ServeFn,
) -> None:
    # Inngest's GET /v1/cancellations and DELETE /v1/cancellations/{id} (cancellation.go):
    # here a cancellation has done its work when POST answers, so none is kept to list or delete
    async with serve() as (client, _):
        listed = await client.get("/v1/cancellations")
        assert listed.status_code == 200, listed.text
        assert listed.json()["data"] == []
        gone = await client.delete("/v1/cancellations/01HWAVEB858VPPX47Z65GR6P6R")
        assert (gone.status_code, gone.json()["error"]) == (404, "Cancellation not found")
        bad = await client.delete("/v1/cancellations/nope")
        assert (bad.status_code, bad.json()["error"]) == (400, "Invalid cancellation ID")


async def test_errors_have_inngests_shape(serve: ServeFn) -> None:
    # pkg/publicerr's Error as WriteHTTP encodes it: {"error", "data", "status"} ("code" only
    # when set, never here), whatever refused the request
    async with serve() as (client, _):
        for method, path, params, status in (
            ("GET", "/v1/events/nope", {}, 400),
            ("GET", "/v1/events/01HWAVEB858VPPX47Z65GR6P6R", {}, 404),
            ("GET", "/v1/events", {"cursor": "nope"}, 400),
            ("GET", "/v1/events", {"received_after": "yesterday"}, 400),
            ("GET", "/v1/runs/nope", {}, 400),
            ("DELETE", "/v1/runs/01HWAVEB858VPPX47Z65GR6P6R", {}, 404),
            ("DELETE", "/v1/cancellations/nope", {}, 400),
        ):
            reply = await client.request(method, path, params=params)
            body = reply.json()
            assert (reply.status_code, set(body)) == (status, {"error", "data", "status"}), path
            assert (body["data"], body["status"]) == (None, status), path
    async with serve(keyed_settings()) as (client, _):
        refused = await client.get("/v1/events")
        assert refused.status_code == 401
        assert refused.json()["data"] is None


async def test_the_event_lists_times_are_read_as_inngests_dateutil_reads_them(
    serve: ServeFn,
) -> None:
    # pkg/dateutil.ParseString: RFC 3339 and the Go layouts (RFC 1123, 822, 850, Ruby, Unix,
    # ANSI C dates, a date alone); epoch milliseconds too (Stepline's); 400 "Invalid
    # received_after query parameter" otherwise (pkg/api/apiv1/events.go)
    clock = MockClock(start=1_800_000_000.0, autojump=False)  # 2027-01-15T08:00:00Z
    async with serve(clock=clock) as (client, _):
        [sent] = (await client.post("/e/key", json={"name": "x/dated"})).json()["ids"]

        async def listed(**params: str) -> list[str]:
            reply = await client.get("/v1/events", params={"name": "x/dated", **params})
            assert reply.status_code == 200, (params, reply.text)
            return [e["internal_id"] for e in reply.json()["data"]]

        for before in (
            "Fri, 15 Jan 2027 07:59:59 GMT",
            "Friday, 15-Jan-27 07:59:59 GMT",
            "15 Jan 27 08:59 +0100",
            "Fri Jan 15 07:59:59 2027",
            "Fri Jan 15 07:59:59 +0000 2027",
            "2027-01-15",
            "2027-01-15T07:59:59",
        ):
            assert await listed(received_after="2027-01-01", received_before=before) == [], before
        assert await listed(received_after="Fri, 15 Jan 2027 07:59:59 GMT") == [sent]
        for name in ("received_after", "received_before"):
            reply = await client.get("/v1/events", params={name: "yesterday"})
            assert reply.status_code == 400
            assert reply.json()["error"] == f"Invalid {name} query parameter"
