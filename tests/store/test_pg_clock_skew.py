"""PostgreSQL compares lease expiries and due times across machines (issue 8, "Time"): a
machine whose clock is further than ``max_clock_skew`` from the server's is refused when it
opens the database, with a message that says by how much and what to do."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

import pgtest
from stepline import App, Event
from stepline.errors import ConfigError
from stepline.store.postgres import PostgresStore


def skewed(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This machine's clock ``seconds`` behind the server's, as ``clock_skew`` measures it (the
    server's clock minus this machine's)."""
    monkeypatch.setattr(PostgresStore, "clock_skew", lambda self: seconds)


def refusal(pg_url: str) -> str:
    """The message of the ``ConfigError`` a store opening ``pg_url`` raises."""
    store = PostgresStore(pg_url)
    try:
        with pytest.raises(ConfigError) as refused:
            store.migrate()
    finally:
        store.close()
    return str(refused.value)


def test_a_clock_too_far_from_the_servers_is_refused_at_open(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    skewed(monkeypatch, 5.0)
    message = refusal(pg_url)
    assert "this machine's clock is -5.000 s from the database server's (behind it;" in message
    assert "within 1.0 s" in message
    assert message.endswith("synchronize the clocks (NTP)")


def test_an_app_on_a_skewed_machine_sends_nothing(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    skewed(monkeypatch, -2.5)
    app = App("skewed", db=pg_url)
    try:
        with pytest.raises(ConfigError, match=r"clock is \+2\.500 s from the database server's"):
            app.send(Event(name="x"))
    finally:
        app.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


@pytest.mark.parametrize("seconds", [0.9, -0.9])
def test_a_skew_within_the_bound_is_accepted(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, seconds: float
) -> None:
    skewed(monkeypatch, seconds)
    store = PostgresStore(pg_url)
    try:
        store.migrate()
    finally:
        store.close()


def test_a_machine_ahead_of_the_server_is_told_it_is_ahead(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the measured skew, not a mocked one (review: the message had the sign the other way)
    pgtest.clock_ahead(monkeypatch, 5.0)
    message = refusal(pg_url)
    # measured across a round trip to the server: about 5 s, a few ms either way under load
    measured = re.search(r"this machine's clock is ([+-][0-9.]+) s from", message)
    assert measured is not None, message
    assert 4.5 < float(measured.group(1)) < 5.5, message
    assert measured.group(1).startswith("+"), message
    assert "(ahead of it;" in message


class _SlowMeasurements:
    """``clock_skew`` answering ``skews`` one after the other, each over a round trip of the
    matching ``took`` seconds on the store module's clock (``time``: a fake, no real wait)."""

    def __init__(self, skews: list[float], took: list[float]) -> None:
        self.now = 1000.0
        self._answers = list(zip(skews, took, strict=True))
        self.asked = 0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def clock_skew(self, now: object = None) -> float:
        skew, took = self._answers[min(self.asked, len(self._answers) - 1)]
        self.asked += 1
        self.now += took
        return skew


def measured(monkeypatch: pytest.MonkeyPatch, skews: list[float], took: list[float]) -> Any:
    from stepline.store.postgres import store as store_module

    fake = _SlowMeasurements(skews, took)
    monkeypatch.setattr(store_module, "time", fake)
    monkeypatch.setattr(PostgresStore, "clock_skew", fake.clock_skew)
    return fake


def test_a_slow_measurement_of_a_clock_within_the_bound_is_not_a_refusal(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server reads its clock somewhere within the round trip: a 1.5 s skew measured over
    2 s round trips (a loaded server, a stalled reader) is 0.5 to 2.5 s, maybe within the 1 s
    bound: the store opens (its workers' clock watch measures again). Before, the middle of one
    round trip was judged alone and a machine whose clock was right exited (ConfigError)."""
    fake = measured(monkeypatch, [-1.5, -1.5, -1.5], [2.0, 2.0, 2.0])
    store = PostgresStore(pg_url)
    try:
        store.migrate()
    finally:
        store.close()
    assert fake.asked == 3  # the quickest of a few measurements is judged


def test_a_skew_beyond_the_bound_all_over_a_slow_round_trip_is_refused(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured(monkeypatch, [5.0, 5.0, 5.0], [2.0, 2.0, 2.0])
    assert "this machine's clock is -5.000 s" in refusal(pg_url)


def test_the_quickest_measurement_is_the_one_judged(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two slow measurements that could not tell, then a quick one that can: refused."""
    fake = measured(monkeypatch, [1.4, 1.4, 1.4], [3.0, 3.0, 0.002])
    assert "this machine's clock is -1.400 s" in refusal(pg_url)
    assert fake.asked == 3
