"""PostgreSQL going away and coming back (issue 8, "Reconnects"), on a cluster of the test's own:
calls during an outage raise ``StoreUnavailable`` (never hang, never a raw psycopg error), the
first call once the server is back succeeds, however long the outage lasted, a connection the
server drops is replaced without the caller seeing it, and a server that stops answering (its
processes stopped) fails the calls waiting on it within the store's ``answer_timeout``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvloop
from _held_step import HeldStep, run_through

import pgtest
from pgcluster import freeze, restart_cluster, start_again, stop_cluster, thaw
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


# a frozen server: its seconds to answer (the URL's answer_timeout), and how long a test waits
# for a call the server never answers before it says the call hangs (real time, generous)
ANSWER_TIMEOUT = 2
HANG = 45.0


@pytest.mark.timeout(240)
def test_send_to_a_frozen_server_raises_store_unavailable_and_a_retry_stores_once() -> None:
    """The server's processes stop (SIGSTOP: as a storage stall, the machine up, its kernel
    acknowledging what the sender writes and its keepalive probes, so neither
    ``tcp_user_timeout`` nor the keepalives fire): ``send`` waited as long as the server did
    (30 s measured, for ever if it never answers). It raises ``StoreUnavailable`` saying the
    server did not answer within the URL's ``answer_timeout``, and the sender's retry once the
    server answers again stores the event once (the first send's commit, sent before the cut,
    may still commit when the server resumes: the retry is then a duplicate)."""
    with pgtest.private_cluster(durable=False) as cluster:
        url = pgtest.migrated_database(cluster)
        url += f"?connect_timeout=2&answer_timeout={ANSWER_TIMEOUT}"
        app = App("frozen", db=url)
        stopped: list[int] = []
        outcome: dict[str, Any] = {}
        event = Event("during/freeze", id="sent-once")

        def send() -> None:
            began = time.monotonic()
            try:
                app.send(event)
                outcome["sent"] = True
            except StoreUnavailable as exc:
                outcome["error"] = str(exc)
            outcome["seconds"] = round(time.monotonic() - began, 1)

        try:
            app.send(Event("before/freeze"))  # the pools' connections are open and idle
            stopped = freeze(cluster)
            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            sender.join(HANG)
            blocked = sender.is_alive()
            thaw(stopped)
            stopped = []
            sender.join(HANG)
            assert not blocked, f"send still waiting after {HANG} s of a frozen server"
            assert f"did not answer within {ANSWER_TIMEOUT} s" in outcome["error"], outcome
            app.send(event)  # the sender's retry
            stored = app.engine.store.list_events(EventFilter(name="during/freeze"))
            assert sum(1 for s in stored if not s.duplicate) == 1, stored
        finally:
            thaw(stopped)
            app.close()


WORKER_STEPS = 5
FROZEN_STEP = 2  # the step whose commit goes to a frozen server


@pytest.mark.timeout(240)
@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_worker_whose_server_freezes_under_a_commit_backs_off_and_the_run_completes(
    loop_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's processes stop as a step's commit goes out: that commit waited for the
    server, as long as it was stopped. It fails within ``answer_timeout`` (its outcome unknown:
    the pass ends, ``StoreUnavailable``), the worker backs off, and once the server answers
    again the run completes: the steps committed before ran once, the one whose commit was cut
    at most twice (its commit may have landed when the server resumed, or not), the rest once."""
    caplog.set_level(logging.DEBUG, logger="stepline.worker")
    stopped: list[int] = []

    with pgtest.private_cluster(durable=False) as cluster:
        url = pgtest.migrated_database(cluster)
        url += f"?connect_timeout=2&answer_timeout={ANSWER_TIMEOUT}"
        # the held step's commit goes to a frozen server
        run = HeldStep(WORKER_STEPS, FROZEN_STEP, lambda: stopped.extend(freeze(cluster)))

        async def frozen() -> None:
            try:
                async with asyncio.timeout(HANG):  # a commit waiting for the server fails here
                    while not _pass_ended(caplog):
                        await asyncio.sleep(0.05)  # real time: a poll, under the bound
            finally:
                thaw(stopped)

        async def scenario() -> Any:
            app = App("frozen-worker", db=url)
            run.add_to(app)
            return await run_through(app, frozen, HANG, lease_ttl=3.0)

        try:
            loops = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
            with asyncio.Runner(loop_factory=loops[loop_name]) as runner:
                done = runner.run(scenario())
        finally:
            thaw(stopped)
    assert done.status == "COMPLETED"
    # the round trip cut: the step's commit, or the display of its executing steps ahead of it
    # in the writer's order (the commit then fails to connect to the frozen server)
    assert any(
        f"did not answer within {ANSWER_TIMEOUT} s" in r.getMessage() for r in caplog.records
    )
    run.check_ran(done.output)


def _pass_ended(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether the worker said a pass ended on the store being unavailable."""
    return any("pass ended, the store is unavailable" in r.getMessage() for r in caplog.records)
