"""``GET /api/v1/events/{id}`` (issue 9): an event with every run it started, resumed (a wait it
resolved) and cancelled (a ``cancel_on`` it matched), each labelled with its effect."""

from __future__ import annotations

import httpx
import pytest

from effects_app import payment_app
from stepline import App
from stepline.testing import MockClock

from .conftest import ServeFn


@pytest.fixture
def app() -> App:
    return payment_app("effects-app")


async def _send(client: httpx.AsyncClient, name: str, order_id: str) -> str:
    response = await client.post("/e/key", json={"name": name, "data": {"orderId": order_id}})
    assert response.status_code == 200, response.text
    [event_id] = response.json()["ids"]
    return str(event_id)


async def _runs_of(client: httpx.AsyncClient, event_id: str) -> list[tuple[str, str, str]]:
    found = (await client.get(f"/api/v1/events/{event_id}")).json()["runs"]
    return [(r["effect"], r["function_id"], r["run_id"]) for r in found]


async def test_an_event_lists_the_runs_it_started_resumed_and_cancelled(
    serve: ServeFn, app: App
) -> None:
    # no autojump: the waits must not time out while the test sends the next events
    async with serve(clock=MockClock(autojump=False)) as (client, t):
        created = [await _send(client, "order/created", f"o-{i}") for i in (1, 2)]
        started = [await _runs_of(client, e) for e in created]
        assert [[(e, f) for e, f, _ in runs] for runs in started] == [
            [("started", "await-payment")]
        ] * 2
        run_ids = [runs[0][2] for runs in started]
        for run_id in run_ids:
            await t.wait_for_status(run_id, "WAITING")
        paid = await _send(client, "payment/received", "o-1")
        cancel = await _send(client, "order/cancelled", "o-2")
        assert await _runs_of(client, paid) == [("resumed", "await-payment", run_ids[0])]
        assert await _runs_of(client, cancel) == [("cancelled", "await-payment", run_ids[1])]
        assert await _runs_of(client, await _send(client, "order/shipped", "o-1")) == []
        assert (await app.wait_for_run(run_ids[0])).output is True
        document = (await client.get("/openapi.json")).json()
        effect = document["components"]["schemas"]["EventRun"]["allOf"][1]["properties"]
        assert effect["effect"]["enum"] == ["started", "resumed", "cancelled"]
