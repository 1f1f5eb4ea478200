"""PostgreSQL going away and coming back (issue 8, "Reconnects"), on a cluster of the test's own:
calls during an outage raise ``StoreUnavailable`` (never hang, never a raw psycopg error), the
first call once the server is back succeeds, however long the outage lasted, and a connection
the server drops is replaced without the caller seeing it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import pgtest
from pgcluster import restart_cluster, start_again, stop_cluster
from stepline import App, Event, StoreUnavailable
from stepline.store.postgres import PostgresStore
from stepline.store.records import EventFilter
from store.builders import T0, lease, start

pytestmark = pytest.mark.slow  # each test starts (stops, crashes, restarts) a cluster of its own


@pytest.mark.timeout(120)
def test_the_first_call_after_a_long_outage_succeeds() -> None:
    """The server is down for 9 s while calls keep failing (each within its 1 s connect
    timeout); the first call once it is back succeeds: the pool's reconnect attempts never
    back off past what one call waits (before the fix they doubled up to minutes, and a call
    could fail for that long against a running server)."""
    with pgtest.private_cluster(durable=False) as cluster:
        url = pgtest.migrated_database(cluster) + "?connect_timeout=1"
        store = PostgresStore(url)
        try:
            assert store.get_run("nope") is None
            stop_cluster(cluster, mode="fast")
            failures = 0
            down_since = time.monotonic()
            while time.monotonic() - down_since < 9:  # the outage's length, not an assertion
                with pytest.raises(StoreUnavailable):
                    store.get_run("nope")
                failures += 1
            start_again(cluster)
            assert store.get_run("nope") is None
            assert failures >= 5
        finally:
            store.close()


@pytest.mark.timeout(300)
def test_send_across_a_silent_network_failure_raises_store_unavailable_not_a_hang(
    tmp_path: Path,
) -> None:
    """The link to the server goes down with no reset ever coming (a network failure; here the
    loopback of a network namespace of the test's own, with its own cluster): ``send`` on the
    pool's idle connection raised nothing and returned only once the link was back (107 s in
    a 90 s failure; Linux retransmits for ~15 min), as a send hangs. It raises
    ``StoreUnavailable`` within about its connect timeout (libpq's ``tcp_user_timeout`` and
    keepalives, ``_database.link_options``), and the sender's retry once the link is back
    stores the event once."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if os.geteuid() != 0 or unshare is None or ip is None:
        pytest.skip("a network namespace of the test's own needs root, unshare and ip")
    allowed = subprocess.run([unshare, "-n", ip, "link", "set", "lo", "up"], capture_output=True)
    if allowed.returncode != 0:  # root in a container without CAP_SYS_ADMIN, or CAP_NET_ADMIN
        pytest.skip(f"no network namespace here: {allowed.stderr.decode().strip()}")
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [unshare, "-n", sys.executable, str(Path(__file__).with_name("partitioned_send.py"))],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent / "src")])},
        capture_output=True,
        text=True,
        timeout=280,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"exit {done.returncode}: {done.stderr[-3000:]}"
    outcome = json.loads(lines[-1])
    assert not outcome["blocked"], f"send still waiting after the failure's 60 s: {outcome}"
    assert "the store is unavailable" in outcome["error"], outcome
    assert outcome["stored"] == 1, outcome
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.timeout(120)
def test_send_during_an_outage_raises_store_unavailable_and_a_retry_stores_once() -> None:
    """``send`` while the server is down raises ``StoreUnavailable`` (after the connect
    timeout, never a hang, never psycopg's own error) and stores nothing; once the server is
    back the sender's retry stores the event, and a second retry with its id is a duplicate."""
    with pgtest.private_cluster(durable=False) as cluster:
        url = pgtest.migrated_database(cluster) + "?connect_timeout=2"
        app = App("reconnect", db=url)
        try:
            app.send(Event("before/outage"))
            stop_cluster(cluster, mode="fast")
            event = Event("during/outage", id="retry-me")
            with pytest.raises(StoreUnavailable, match="retry later"):
                app.send(event)
            start_again(cluster)
            [first] = app.send(event)
            [again] = app.send(event)  # as after a lost acknowledgement: stored as a duplicate
            stored = app.engine.store.list_events(EventFilter(name="during/outage"))
            copies = {s.event.internal_id: s.duplicate for s in stored}
            assert copies == {first: False, again: True}
        finally:
            app.close()


@pytest.mark.timeout(60)
def test_a_dropped_connection_is_replaced_without_the_caller_seeing_it(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        assert store.get_run("nope") is None  # a pooled connection exists now
        pgtest.end_other_sessions(pg_url)
        assert store.get_run("nope") is None
        with store.transaction() as tx:
            tx.set_paused("f", True, "app")
        assert store.paused_functions("app") == {"f"}
    finally:
        store.close()


@pytest.mark.timeout(120)
def test_a_server_restart_does_not_hand_a_live_workers_leases_to_another() -> None:
    """A restart ends every session, so every worker's presence lock (presence.py) is gone at
    once, live workers' too. A lease taken under the server that was restarted is then an
    ordinary lease, taken over only when it expires: before the fix, the first worker to poll
    after the restart took over the other's live runs, whose step bodies then ran twice (a CI
    failure of ``test_crash.py::test_database_restart_mid_run``)."""
    with pgtest.private_cluster(durable=False) as cluster:
        url = pgtest.migrated_database(cluster)
        first, second = PostgresStore(url), PostgresStore(url)
        try:
            start(first, "r-live")
            [held] = lease(first, "w-first", now=T0, ttl=60.0)
            assert held.run_id == "r-live"
            restart_cluster(cluster, mode="fast")  # every session ends; nothing committed is lost
            # w-first lives (its process goes on) but has not polled since the restart
            assert lease(second, "w-second", now=T0 + 1) == []
            # a lease under the server as it is now is still taken over as soon as its owner dies
            start(first, "r-after", now=T0 + 1)
            [after] = lease(first, "w-first", now=T0 + 1, ttl=60.0)
            assert after.run_id == "r-after"
            first.close()
            # its session ends a moment after close() returns: poll until its lock is gone
            deadline = time.monotonic() + 30
            while not (taken := lease(second, "w-second", now=T0 + 2, ttl=60.0)):
                assert time.monotonic() < deadline, "w-first's runs were never taken over"
                time.sleep(0.05)  # real time: a poll of the server's state, under the deadline
            assert [t.run_id for t in taken] == ["r-after"]
            # the older lease is left to expire
            assert [t.run_id for t in lease(second, "w-second", now=T0 + 61)] == ["r-live"]
        finally:
            first.close()
            second.close()


def _crash_one_backend(url: str) -> None:
    """SIGKILL one backend: the server ends every session, resets and starts again (as after
    an out-of-memory kill or a segfault; ``restart_after_crash`` is on by default); wait until
    it accepts connections again after its reset (a connection made before the server has
    noticed the kill is no sign of that: it was red under load)."""
    victim = psycopg.connect(url, autocommit=True)
    row = victim.execute("SELECT pg_backend_pid(), " + _STATS_RESET).fetchone()
    assert row is not None
    pid, reset_before = row
    os.kill(int(pid), signal.SIGKILL)
    victim.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                after = conn.execute("SELECT " + _STATS_RESET).fetchone()
            if after is not None and after[0] != reset_before:
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, "the server never reset after the kill"
        # the server (a real process) is in recovery; poll it until it is back, bounded by the
        # deadline above
        time.sleep(0.1)  # real time: polls a real server's recovery


# the crash's reset of the shared statistics (the time the lease tokens' epoch reads too)
_STATS_RESET = "(SELECT stats_reset FROM pg_stat_bgwriter)"


@pytest.mark.timeout(120)
def test_a_crash_of_one_backend_does_not_hand_a_live_workers_leases_to_another() -> None:
    """A crash of any backend also ends every session (every presence lock) while the server's
    start time stays: the leases taken before it still wait for their expiry."""
    with pgtest.private_cluster(durable=True) as cluster:
        url = pgtest.migrated_database(cluster)
        first, second = PostgresStore(url), PostgresStore(url)
        try:
            start(first, "r-live")
            [held] = lease(first, "w-first", now=T0, ttl=60.0)
            assert held.run_id == "r-live"
            assert lease(second, "w-second", now=T0 + 1) == []  # second takes its own lock
            # a lease commits without waiting for its WAL flush; the next durable commit flushes
            # it (a run due much later, leased by no one here)
            start(first, "r-later", now=T0 + 3600)
            _crash_one_backend(url)
            assert lease(second, "w-second", now=T0 + 1) == []
            assert [t.run_id for t in lease(second, "w-second", now=T0 + 61)] == ["r-live"]
        finally:
            first.close()
            second.close()
