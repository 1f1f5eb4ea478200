"""The PostgreSQL wake-up listener connects as the store's other connections do: within the
store's ``connect_timeout`` (libpq's default, none, left it waiting on the OS's SYN retries,
~130 s, when the server's machine was unreachable: no wake-ups meanwhile), and backs off
between attempts as the workers do after a store failure (``stepline._reconnects``)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from stepline import _reconnects
from stepline.store.postgres import _answers, wakeups
from stepline.store.postgres.store import PostgresStore

_ATTEMPTS = 4


def test_the_listener_connects_within_the_stores_timeout_and_backs_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[dict[str, Any]] = []
    delays: list[tuple[int, float]] = []
    tried = threading.Event()

    def connect(url: str, **options: Any) -> Any:
        asked.append(options)
        if len(asked) >= _ATTEMPTS:
            tried.set()
        raise psycopg.OperationalError("the server's machine is unreachable")

    def delay(failures: int) -> float:
        delays.append((failures, _reconnects.reconnect_delay(failures)))
        return 0.0  # no real wait between the attempts here

    monkeypatch.setattr(_answers, "connect", connect)
    monkeypatch.setattr(wakeups, "reconnect_delay", delay)
    store = PostgresStore("postgresql://u@192.0.2.1:5432/db", connect_timeout=3)
    try:
        stop = store.watch(lambda named: None)
        try:
            assert tried.wait(30), "the listener did not try to connect again"
        finally:
            stop()
    finally:
        store.close()
    assert all(options.get("connect_timeout") == 3 for options in asked), asked
    assert all(options.get("tcp_user_timeout") == 3000 for options in asked), asked
    assert [failures for failures, _ in delays[:3]] == [1, 2, 3]
    # the workers' backoff: 0.1 s doubling (jittered down to half of it), at most 5 s
    assert 0.05 <= delays[0][1] <= 0.1
    assert all(0.05 <= d <= 5.0 for _, d in delays)


def test_the_reconnect_delay_doubles_up_to_its_cap() -> None:
    for failures, top in ((1, 0.1), (2, 0.2), (3, 0.4), (7, 5.0), (40, 5.0)):
        delay = _reconnects.reconnect_delay(failures)
        assert top / 2 <= delay <= top


@pytest.mark.parametrize("session", ["_presence", "_gates"])
def test_the_presence_and_gate_sessions_connect_within_the_stores_timeout(
    monkeypatch: pytest.MonkeyPatch, session: str
) -> None:
    """The sessions of the workers' presence locks and of the take gates connected with a
    timeout of their own (5 s), not the store's: one the user lowered or raised was ignored
    there."""
    asked: list[dict[str, Any]] = []

    def connect(url: str, **options: Any) -> Any:
        asked.append(options)
        raise psycopg.OperationalError("the server's machine is unreachable")

    monkeypatch.setattr(_answers, "connect", connect)
    store = PostgresStore("postgresql://u@192.0.2.1:5432/db", connect_timeout=2)
    try:
        with pytest.raises(psycopg.OperationalError):
            getattr(store, session)._connection()
    finally:
        store.close()
    assert [options.get("connect_timeout") for options in asked] == [2], asked
    assert asked[0].get("tcp_user_timeout") == 2000, asked
