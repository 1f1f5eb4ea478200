"""An SDK app's sync writes this machine's times where other machines compare them (its cron
triggers' next fire times, the skip records of events its removed functions leave, its
functions judged served by live workers' expiries): refused, as a send is, while this
machine's clock is beyond the database's bound (``ClockWatch.refuse_writes``)."""

from __future__ import annotations

import httpx
import pytest
from _stepline_dev import tiny_registration

from stepline import App, ClockSkewError
from stepline.drivers.inngest import SdkApps
from stepline.server import create_app
from stepline.server.settings import ServerSettings
from stepline.store.postgres import PostgresStore
from steppedclock import SteppedClock


async def test_a_sync_is_refused_beyond_the_bound(pg_url: str) -> None:
    app = App("skew-sdk", db=pg_url)
    clock = SteppedClock()
    engine = app.attach(PostgresStore(pg_url), clock)
    try:
        apps = SdkApps(app)
        clock.offset = 5.0  # this machine's clock stepped 5 s ahead
        await engine.clock_watch.measure()
        assert engine.clock_watch.refusal is not None
        with pytest.raises(ClockSkewError):
            await apps.register(tiny_registration())
        assert apps.apps == {} and engine.store.sdk_apps("skew-sdk") == []  # nothing synced
        clock.offset = 0.0
        await engine.clock_watch.measure()
        await apps.register(tiny_registration())
        assert [name for name, _ in engine.store.sdk_apps("skew-sdk")] == ["tiny"]
    finally:
        app.close()


async def test_the_503_of_a_clock_beyond_the_bound_names_no_database(pg_url: str) -> None:
    """The bodies of a sync's and a send's refusal say what is wrong (the skew, the bound)
    without the database's label, as any store error's (``store_failure_text``: its host, port
    and name are the operator's; the event API answers anyone with an event key, a dev
    server's ``/fn/register`` anyone): the refusal's text named it."""
    app = App("skew-sdk", db=pg_url)
    clock = SteppedClock()
    store = PostgresStore(pg_url)
    engine = app.attach(store, clock)
    server = create_app(app, ServerSettings(dev=True, allow_unauthenticated=True))
    try:
        SdkApps(app)
        clock.offset = 5.0
        await engine.clock_watch.measure()
        assert engine.clock_watch.refusal is not None
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            synced = await client.post("/fn/register", json=tiny_registration())
            sent = await client.post("/e/key", json={"name": "skew/go", "data": {}})
        for response in (synced, sent):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            body = response.json()["error"]
            assert "from the database server's" in body and "within 1.0 s" in body, body
            assert store.label not in body, body
    finally:
        app.close()
