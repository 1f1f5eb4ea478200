"""An SDK app's sync writes this machine's times where other machines compare them (its cron
triggers' next fire times, the skip records of events its removed functions leave, its
functions judged served by live workers' expiries): refused, as a send is, while this
machine's clock is beyond the database's bound (``ClockWatch.refuse_writes``)."""

from __future__ import annotations

import pytest
from _stepline_dev import tiny_registration

from stepline import App, ClockSkewError
from stepline.drivers.inngest import SdkApps
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
