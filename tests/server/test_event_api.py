"""POST /e/{key}: Inngest's event API (ids, partial batches, validation, seeds, limits, auth)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stepline import App, Context, TriggerEvent
from stepline.server.event_api import seeded_ids

from .conftest import EVENT_KEY, ServeFn, keyed_settings, open_settings

SEED = "1743130137367," + base64.b64encode(bytes(range(10))).decode()


@pytest.fixture
def app() -> App:
    app = App("events-app")

    @app.function(id="on-order", trigger=TriggerEvent("order/created"))
    async def on_order(ctx: Context) -> dict[str, Any]:
        return {"order": ctx.event.data.get("orderId"), "event_id": ctx.event.id}

    return app


async def _stored(app: App, ids: list[str]) -> list[str]:
    engine = app.engine
    return [e.internal_id for e in await engine.read(engine.store.get_events, ids)]


async def test_one_event_is_stored_and_starts_its_run(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        response = await client.post(
            "/e/anykey", json={"name": "order/created", "data": {"orderId": 7}}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == 200
        [event_id] = body["ids"]
        assert await _stored(app, [event_id]) == [event_id]
        [run] = await app.runs(event_id=event_id)
        done = await app.wait_for_run(run.run_id)
        assert done.output == {"order": 7, "event_id": event_id}


async def test_a_list_gives_ids_in_order(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        events = [{"name": "order/created", "data": {"orderId": i}} for i in range(5)]
        response = await client.post("/e/k", json=events)
        assert response.status_code == 200
        ids = response.json()["ids"]
        assert len(ids) == 5 and len(set(ids)) == 5
        stored = await app.engine.read(app.engine.store.get_events, ids)
        assert [e.data["orderId"] for e in stored] == [0, 1, 2, 3, 4]


async def test_an_empty_list_is_accepted(serve: ServeFn) -> None:
    async with serve() as (client, _):
        response = await client.post("/e/k", json=[])
        assert (response.status_code, response.json()) == (200, {"ids": [], "status": 200})


async def test_events_before_a_bad_one_are_accepted(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        events: list[Any] = [
            {"name": "order/created", "data": {"orderId": 1}},
            {"name": "order/created", "data": {"orderId": 2}},
            {"name": "order/created", "data": "oops"},
            {"name": "order/created", "data": {"orderId": 4}},
        ]
        response = await client.post("/e/k", json=events)
        assert response.status_code == 400
        body = response.json()
        assert body["status"] == 400
        assert body["index"] == 2
        assert body["error"] == (
            "event at index 2 ('order/created'): data must be an object, got a string"
        )
        assert len(body["ids"]) == 2
        assert await _stored(app, body["ids"]) == body["ids"]
        assert len(await app.runs(function_id="on-order")) == 2


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"data": {}}, "event name is empty"),
        ({"name": ""}, "event name is empty"),
        ({"name": 5}, "event name must be a string, got a number"),
        ({"name": "inngest/function.finished"}, "reserved"),
        ({"name": " lead"}, "event name ' lead' starts with a space"),
        ({"name": "x" * 256}, "is 256 characters long (at most 255)"),
        ({"name": "a\nb"}, "contains a line break"),
        ({"name": "a", "data": [1]}, "data must be an object, got an array"),
        ({"name": "a", "user": "u"}, "user must be an object, got a string"),
        ({"name": "a", "id": 12}, "id must be a string, got a number"),
        # PostgreSQL's text cannot hold NUL: refused on every store (before: a 503 on PostgreSQL)
        ({"name": "a\u0000b"}, "contains a NUL character"),
        ({"name": "a", "id": "x\u0000y"}, "contains a NUL character"),
        ({"name": "a", "ts": "now"}, "ts must be epoch milliseconds (a number), got a string"),
        ({"name": "a", "ts": True}, "ts must be epoch milliseconds"),
        ({"name": "a", "ts": 1_700_000_000}, "is before Jan 1, 1980"),
        ({"name": "a", "ts": 5_000_000_000_000}, "is after Jan 1, 2100"),
        ({"name": "a", "data": {"s": "x" * 600_000}}, "over the 524288-byte event size limit"),
        ([1], "expected an event object, got a number"),
    ],
)
async def test_each_invalid_event_is_named(serve: ServeFn, event: Any, message: str) -> None:
    async with serve() as (client, _):
        payload = event if isinstance(event, list) else [event]
        response = await client.post("/e/k", json=payload)
        assert response.status_code == 400
        body = response.json()
        assert body["ids"] == [] and body["index"] == 0
        assert body["error"].startswith("event at index 0")
        assert message in body["error"]


async def test_inngest_fields_are_dropped_and_absent_fields_defaulted(
    serve: ServeFn, app: App
) -> None:
    async with serve() as (client, _):
        payload = {"name": "audit", "data": {"a": 1, "_inngest": {"x": 1}}, "v": "1", "ts": 0}
        response = await client.post("/e/k", json=payload)
        [event] = await app.engine.read(app.engine.store.get_events, response.json()["ids"])
        assert event.data == {"a": 1}
        assert event.user == {}
        assert event.id is None


async def test_a_future_ts_and_a_sender_id_are_kept(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        payload = {"name": "audit", "id": "mine", "ts": 1_800_000_000_000}
        response = await client.post("/e/k", json=payload)
        [event] = await app.engine.read(app.engine.store.get_events, response.json()["ids"])
        assert (event.id, event.ts) == ("mine", 1_800_000_000.0)


async def test_a_repeated_sender_id_is_stored_but_starts_no_run(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        event = {"name": "order/created", "id": "order-1", "data": {"orderId": 1}}
        first = (await client.post("/e/k", json=event)).json()["ids"]
        second = (await client.post("/e/k", json=event)).json()["ids"]
        assert first != second
        assert len(await _stored(app, first + second)) == 2
        assert len(await app.runs(function_id="on-order")) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{", "application/json", 400, "invalid JSON"),
        (b"", "application/json", 400, "the request body is empty"),
        (b"\xff\xfe", "application/json", 400, "invalid JSON"),
        (b'{"name": "a", "data": {"n": NaN}}', "application/json", 400, "invalid JSON"),
        (b'{"name": "a", "data": {"n": 1e400}}', "application/json", 400, "invalid JSON"),
        (
            b'{"name": "a", "data": {"n": 123456789012345678901234567890}}',
            "application/json",
            400,
            "does not fit in 64 bits",
        ),
        (b"[" * 100 + b"]" * 100, "application/json", 400, "nested deeper than 64 levels"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "invalid JSON"),
        (b'"order/created"', "application/json", 400, "got a string"),
        (b'{"name": "a"}', "text/html", 415, "expected Content-Type application/json"),
        (b"name=a", "application/x-www-form-urlencoded", 415, "expected Content-Type"),
    ],
)
async def test_bad_bodies_are_4xx(
    serve: ServeFn, body: bytes, content_type: str, status: int, message: str
) -> None:
    async with serve() as (client, _):
        response = await client.post("/e/k", content=body, headers={"content-type": content_type})
        assert response.status_code == status
        assert response.json()["status"] == status
        assert message in response.json()["error"]


async def test_json_content_types_are_accepted(serve: ServeFn) -> None:
    async with serve() as (client, _):
        for content_type in ("application/json; charset=utf-8", "application/vnd.x+json"):
            response = await client.post(
                "/e/k", content=b'{"name": "a"}', headers={"content-type": content_type}
            )
            assert response.status_code == 200, content_type


async def test_compressed_bodies_are_refused(serve: ServeFn) -> None:
    async with serve() as (client, _):
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        response = await client.post("/e/k", content=b"\x1f\x8b", headers=headers)
        assert response.status_code == 415


async def test_an_oversize_body_is_refused_before_it_is_read(serve: ServeFn) -> None:
    read = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(1000):
            read += 1
            yield b" " * 1024

    async with serve(open_settings(max_body_bytes=10_000)) as (client, _):
        declared = await client.post(
            "/e/k",
            content=b"[" + b" " * 20_000 + b"]",
            headers={"content-type": "application/json"},
        )
        assert declared.status_code == 413
        assert "over the 10000-byte limit" in declared.json()["error"]
        streamed = await client.post("/e/k", content=chunks())
        assert streamed.status_code == 413
        assert read < 1000  # refused while streaming, not after buffering it all


async def test_too_many_events_in_one_request(serve: ServeFn, app: App) -> None:
    async with serve(open_settings(max_batch_events=3)) as (client, _):
        response = await client.post("/e/k", json=[{"name": "a"}] * 4)
        assert response.status_code == 413
        assert "4 events in one request, over the limit of 3" in response.json()["error"]


async def test_get_is_not_allowed(serve: ServeFn) -> None:
    async with serve() as (client, _):
        assert (await client.get("/e/k")).status_code == 405


async def test_event_keys(serve: ServeFn) -> None:
    async with serve(keyed_settings()) as (client, _):
        wrong = await client.post("/e/nope", json={"name": "a"})
        assert wrong.status_code == 401
        assert wrong.json() == {"error": "Event key not found", "status": 401}
        right = await client.post(f"/e/{EVENT_KEY}", json={"name": "a"})
        assert right.status_code == 200


async def test_several_keys_and_revoking_one(serve: ServeFn) -> None:
    settings = keyed_settings(event_keys=("old", "new"))
    async with serve(settings) as (client, _):
        assert (await client.post("/e/old", json={"name": "a"})).status_code == 200
        assert (await client.post("/e/new", json={"name": "a"})).status_code == 200
        settings.event_keys = ("new",)  # revoked
        assert (await client.post("/e/old", json={"name": "a"})).status_code == 401
        assert (await client.post("/e/new", json={"name": "a"})).status_code == 200


async def test_without_keys_a_closed_server_answers_503(serve: ServeFn) -> None:
    from stepline.server import ServerSettings

    async with serve(ServerSettings()) as (client, _):
        response = await client.post("/e/k", json={"name": "a"})
        assert response.status_code == 503
        assert "no event keys are configured" in response.json()["error"]


async def test_a_seed_makes_ids_deterministic_and_a_retry_is_not_ingested_twice(
    serve: ServeFn, app: App
) -> None:
    async with serve() as (client, _):
        events = [{"name": "order/created", "data": {"orderId": i}} for i in range(2)]
        headers = {"x-inngest-event-id-seed": SEED}
        first = (await client.post("/e/k", json=events, headers=headers)).json()["ids"]
        retry = (await client.post("/e/k", json=events, headers=headers)).json()["ids"]
        assert first == retry == seeded_ids(SEED, 2)
        assert len(set(first)) == 2
        assert await _stored(app, first) == first
        assert len(await app.runs(function_id="on-order")) == 2


def _ulid(millis: int, entropy: bytes) -> str:
    """Stepline's id text: the 128 bits left-aligned in 26 base32 characters (stepline._ids)."""
    value = ((millis << 80) | int.from_bytes(entropy, "big")) << 2
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_seeded_ids_follow_inngest() -> None:
    # Inngest's SeededIDFromString: the event's 1-based position added to the last 4 bytes
    head = bytes(range(6))
    expected = [_ulid(1743130137367, head + (0x06070809 + n).to_bytes(4, "big")) for n in (1, 2)]
    assert seeded_ids(SEED, 2) == expected
    wrapping = "1," + base64.b64encode(bytes(6) + b"\xff" * 4).decode()
    assert seeded_ids(wrapping, 1) == [_ulid(1, bytes(10))]


@pytest.mark.parametrize(
    "seed", ["", "abc", "12,zz", "0," + base64.b64encode(bytes(10)).decode(), "5,AAAA"]
)
def test_an_invalid_seed_gives_fresh_ids(seed: str) -> None:
    assert seeded_ids(seed, 1) is None


async def test_large_floats_and_64_bit_integers_are_accepted(serve: ServeFn, app: App) -> None:
    async with serve() as (client, _):
        data = b'{"f": 1e30, "u": 18446744073709551615, "i": -9223372036854775808}'
        body = b'{"name": "a", "data": ' + data + b"}"
        response = await client.post("/e/k", content=body)
        assert response.status_code == 200, response.text
        [event] = await app.engine.read(app.engine.store.get_events, response.json()["ids"])
        assert event.data == {"f": 1e30, "u": 2**64 - 1, "i": -(2**63)}
