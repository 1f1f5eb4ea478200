"""Fuzzing POST /e/{key} (random JSON, random bytes, random headers): never a 5xx, never a
crash, and every event the server accepted (its id returned, in a 200 or with a 400's partial
batch) is stored exactly once."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepline import App, Context, TriggerEvent
from stepline.server import create_app
from stepline.store import SQLiteStore
from stepline.testing import MockClock

from .conftest import open_settings

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
names = st.one_of(
    st.sampled_from(["order/created", "a", "inngest/x", "", " x", "x" * 300]),
    st.text(max_size=12),
    json_values,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "name": names,
        "data": st.one_of(json_values, st.dictionaries(st.text(max_size=8), json_values)),
        "user": json_values,
        "id": st.one_of(st.text(max_size=8), json_values),
        "ts": st.one_of(st.integers(min_value=-(2**40), max_value=2**43), json_values, st.just(0)),
        "v": json_values,
    },
)
good_event = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["order/created", "order/paid", "a"]),
        "data": st.dictionaries(st.text(max_size=6), json_scalars, max_size=4),
    },
    optional={"id": st.sampled_from(["e1", "e2", "e3"]), "ts": st.just(1_750_000_000_000)},
)
valid_seed = st.builds(
    lambda ms, entropy: f"{ms},{base64.b64encode(entropy).decode()}",
    st.integers(min_value=1, max_value=2**48 - 1),
    st.binary(min_size=10, max_size=10),
)


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer past 64 bits: written by hand, as a client might
        return str(value).encode()


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(_encode),
    event_like.map(_encode),
    st.lists(event_like, max_size=6).map(_encode),
    good_event.map(_encode),
    st.lists(st.one_of(good_event, good_event, event_like), max_size=8).map(_encode),
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.one_of(
            st.sampled_from(
                ["application/json", "text/plain", "application/x+json", "", "multipart/form-data"]
            ),
            header_values,
        ),
        "x-inngest-event-id-seed": st.one_of(
            valid_seed, header_values, st.just("1700000000000,AAAAAAAAAAAAAA==")
        ),
        "content-encoding": st.one_of(st.sampled_from(["identity", "gzip"]), header_values),
        "x-random": header_values,
    },
)


def test_fuzz_event_api(tmp_path: Path) -> None:
    db = tmp_path / "fuzz.db"
    app = App("fuzz-app")

    @app.function(id="on-order", trigger=TriggerEvent("order/created"))
    async def on_order(ctx: Context) -> None:
        return None

    app.attach(SQLiteStore(db, synchronous="NORMAL"), MockClock())
    loop = asyncio.new_event_loop()
    transport = httpx.ASGITransport(app=create_app(app, open_settings(max_body_bytes=2_000)))
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    accepted: set[str] = set()

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=bodies, extra=headers)
    def post(body: bytes, extra: dict[str, str]) -> None:
        response = loop.run_until_complete(client.post("/e/key", content=body, headers=extra))
        assert response.status_code < 500, (response.status_code, response.text)
        answer = response.json()
        assert answer["status"] == response.status_code
        if response.status_code == 200:
            assert isinstance(answer["ids"], list)
        else:
            assert isinstance(answer["error"], str) and answer["error"]
        accepted.update(answer.get("ids", []))

    try:
        post()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
        app.close()
    with closing(sqlite3.connect(db)) as conn, conn:
        stored = [row[0] for row in conn.execute("SELECT internal_id FROM events")]
    conn.close()
    assert len(stored) == len(set(stored))  # none stored twice
    assert set(stored) == accepted  # each accepted one stored, nothing else
