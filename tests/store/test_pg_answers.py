"""The deadline on PostgreSQL's answers (``store/postgres/_answers.py``): the URL's
``answer_timeout``, and the watchdog's looks, made here at given times (its thread looks at real
times; ``test_pg_reconnect.py`` freezes a server's processes under a send and a worker)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import psycopg
import pytest

from stepline.errors import ConfigError
from stepline.store.postgres import PostgresStore
from stepline.store.postgres._answers import (
    DEFAULT_ANSWER_TIMEOUT,
    Connection,
    Unanswered,
    _shut_down,
    _Watchdog,
    lifted,
)

BASE = "postgresql://someone@127.0.0.1:1/db"  # never connected to


@pytest.mark.parametrize(
    ("url", "seconds", "kept"),
    [
        (BASE, DEFAULT_ANSWER_TIMEOUT, BASE),
        (f"{BASE}?answer_timeout=5", 5.0, BASE),
        (
            f"{BASE}?connect_timeout=3&answer_timeout=2.5&options=-c%20jit%3Doff",
            2.5,
            f"{BASE}?connect_timeout=3&options=-c%20jit%3Doff",
        ),
        (f"{BASE}?application_name=x&answer_timeout=0", None, f"{BASE}?application_name=x"),
    ],
)
def test_the_urls_answer_timeout_is_the_stores_and_never_reaches_libpq(
    url: str, seconds: float | None, kept: str
) -> None:
    """Stepline's own parameter (libpq refuses one it does not know), taken out of the URL the
    store connects with, the others left as written; 0: no deadline."""
    store = PostgresStore(url)
    assert (store.answer_timeout, store.url) == (seconds, kept)
    psycopg.conninfo.conninfo_to_dict(store.url)  # libpq's own parse takes it


def test_the_stores_argument_wins_over_the_url_and_a_bad_value_is_refused() -> None:
    assert PostgresStore(f"{BASE}?answer_timeout=5", answer_timeout=7).answer_timeout == 7.0
    assert PostgresStore(BASE, answer_timeout=0).answer_timeout is None
    with pytest.raises(ConfigError, match="answer_timeout must be a number of seconds"):
        PostgresStore(f"{BASE}?answer_timeout=soon")


@pytest.fixture
def watched(pg_url: str) -> Iterator[tuple[Connection, _Watchdog]]:
    """A connection looked at by a watchdog of the test's own (no thread: ``look`` is called
    with the times given), its deadline 5 s."""
    conn = Connection.connect(pg_url, autocommit=True)
    dog = _Watchdog()
    dog.add(conn, 5.0)
    try:
        yield conn, dog
    finally:
        conn.close()


def _looks(dog: _Watchdog, start: float, end: float) -> None:
    """The watchdog's looks from ``start`` to ``end`` (seconds), at its period."""
    now = start
    while now <= end + 1e-9:
        dog.look(now)
        now += dog.between_looks


def test_a_round_trip_unanswered_past_its_deadline_is_cut_and_its_error_says_so(
    watched: tuple[Connection, _Watchdog],
) -> None:
    conn, dog = watched
    conn.asked = object()  # a round trip in flight (as far as the watchdog can tell)
    _looks(dog, 100.0, 104.0)  # first seen at 100
    assert conn.cut_after is None
    conn.asked = None
    _looks(dog, 105.0, 106.0)
    assert conn.execute("SELECT 1").fetchone() == (1,)  # not cut: it answers
    conn.asked = object()
    _looks(dog, 107.0, 112.0)  # seen in the same round trip its deadline later: cut
    assert conn.cut_after == 5.0
    conn.asked = None
    with pytest.raises(Unanswered, match=r"did not answer within 5 s \(answer_timeout\)"):
        conn.execute("SELECT 1")
    assert conn.broken  # its pool replaces it; a commit in flight has an unknown outcome


def test_a_connection_whose_round_trips_go_on_or_whose_deadline_is_lifted_is_never_cut(
    watched: tuple[Connection, _Watchdog],
) -> None:
    conn, dog = watched
    for look in range(20):  # another round trip at each look: the server answers
        conn.asked = object()
        dog.look(look * dog.between_looks)
    conn.asked = None
    with lifted(conn):  # a migration's, db copy's
        conn.asked = object()
        _looks(dog, 100.0, 120.0)
        conn.asked = None
    assert conn.answer_within == 5.0  # back after the block
    assert conn.cut_after is None
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_time_this_process_did_not_run_is_not_the_servers_silence(
    watched: tuple[Connection, _Watchdog],
) -> None:
    """Stopped (SIGSTOP, a suspended machine) while a round trip waited, the process finds its
    answer in the socket when it runs again, and the watchdog may look first: the time between
    two looks much further apart than its period is not counted."""
    conn, dog = watched
    conn.asked = object()
    _looks(dog, 0.0, 3.0)
    _looks(dog, 600.0, 601.0)  # the process ran again at 600
    assert conn.cut_after is None
    dog.look(602.0)  # 3 s before the pause, 2 s after it
    assert conn.cut_after == 5.0


def test_a_descriptor_that_names_another_socket_now_is_never_shut_down(
    watched: tuple[Connection, _Watchdog],
) -> None:
    """The watchdog looks at a connection another thread may close meanwhile, and the
    descriptor's number be given to another file: it shuts down only the socket whose inode it
    noted (a socket pair's end stands for the other file here)."""
    conn, _ = watched
    ours, other = socket.socketpair()
    with ours, other:
        assert conn._socket is not None
        conn._socket = (ours.fileno(), conn._socket[1])  # the connection's inode, not ours'
        _shut_down(conn)
        other.send(b"x")
        assert ours.recv(1) == b"x"  # still open both ways
        ours.send(b"y")
        assert other.recv(1) == b"y"
        conn._socket = (ours.fileno(), os.fstat(ours.fileno()).st_ino)
        _shut_down(conn)  # now it names the socket noted
        assert ours.recv(1) == b""  # shut down
