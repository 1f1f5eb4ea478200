"""A worker's connections to PostgreSQL reset by the network (a TCP RST: a proxy or a firewall
dropping them, or a server killed with input it had not read, as ``pg_ctl restart -m
immediate`` may) while a step's commit waits for its reply: the commit fails, the worker
reconnects and the run completes, on asyncio's loop and on uvloop's.

uvloop (libuv) calls no reader of a socket that reports an error (``POLLERR``): it closes the
reader's registration silently, and a worker on uvloop waited for that reply forever, deaf to
SIGTERM (``test_crash.py::test_database_restart_mid_run``, 2 runs in ~10 under load in
December 2026). ``stepline._sockets`` tells a waiter of such a socket on every loop."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg_pool
import pytest
import uvloop

from stepline import App, Context, Event, TriggerEvent
from stepline.store.postgres._kept import LoopConnections

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
STEPS = 6
HELD_STEP = 2  # the step whose commit is held by the proxy, then reset


class ResettingProxy:
    """A TCP proxy to ``upstream`` that can hold what clients send (``hold``: their round
    trips get no reply) and reset every connection open (``reset``: an RST to each client)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._reset: set[socket.socket] = set()
        self.held_bytes = 0
        self.resets = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        user, _, _ = parts.netloc.rpartition("@")
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))

    def hold(self) -> None:
        with self._lock:
            self.held_bytes = 0
        self._forwarding.clear()

    def reset(self) -> None:
        """An RST to every client connection open; new ones are forwarded again."""
        with self._lock:
            pairs, self._open = self._open, []
            self.resets += len(pairs)
            self._reset.update(client for client, _ in pairs)
        for client, server in pairs:
            try:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # its pump's recv woken (a socket closed under a blocked recv is released,
                # and its RST sent, only once that recv returns), then closed: the RST
                client.shutdown(socket.SHUT_RD)
            except OSError:  # the client closed it already
                pass
            client.close()
            server.close()
        self._forwarding.set()

    def close(self) -> None:
        self._listener.close()
        self.reset()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            with self._lock:
                self._open.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, client), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, client: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source is client and not self._forwarding.is_set():
                    with self._lock:
                        self.held_bytes += len(data)
                    self._forwarding.wait()
                if client in self._reset:  # reset meanwhile: nothing more passes
                    return
                sink.sendall(data)
        except OSError:
            return
        if client not in self._reset:  # one end closed its side: passed on to the other
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_commit_whose_connection_is_reset_fails_and_the_run_completes(
    loop_name: str, pg_url: str
) -> None:
    parts = urlsplit(pg_url)
    proxy = ResettingProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    ran: dict[str, int] = {}

    async def scenario() -> tuple[Any, str]:
        app = App("resets", db=proxy.url(pg_url))

        @app.function(id="steps", trigger=TriggerEvent("go"))
        async def steps(ctx: Context) -> int:
            total = 0
            for i in range(STEPS):

                def body(i: int = i) -> int:
                    ran[f"s{i}"] = ran.get(f"s{i}", 0) + 1
                    if i == HELD_STEP and proxy.resets == 0:
                        proxy.hold()  # this step's commit gets no reply: then an RST
                    return i

                total += await ctx.step.run(f"s{i}", body)
            return total

        worker = app.make_worker(worker_id="w", poll_interval=0.05)
        task = asyncio.create_task(worker.run())
        try:
            [event_id] = await app.send_async(Event("go"))
            while proxy.held_bytes == 0 or ran.get(f"s{HELD_STEP}", 0) == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # the held commit's reply is awaited: reset under it
            await asyncio.to_thread(proxy.reset)
            runs = []
            while not runs:
                runs = await app.runs(event_id=event_id)
                await asyncio.sleep(0.05)
            done = await app.wait_for_run(runs[0].run_id, timeout=60)
            return done, type(asyncio.get_running_loop()).__module__
        finally:
            worker.stop()
            try:
                await asyncio.wait_for(task, 30)
            finally:
                app.close()

    try:
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            done, loop_module = runner.run(scenario())
    finally:
        proxy.close()
    assert loop_module.startswith(loop_name)
    assert proxy.resets >= 1
    assert done.status == "COMPLETED" and done.output == sum(range(STEPS))
    # the steps committed before the reset ran once; the held one at most twice (its commit
    # never reached the server); the rest once
    assert {name: n for name, n in ran.items() if name != f"s{HELD_STEP}"} == {
        f"s{i}": 1 for i in range(STEPS) if i != HELD_STEP
    }
    assert ran[f"s{HELD_STEP}"] in (1, 2)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_kept_connection_reset_while_busy_between_round_trips_resumes_its_next_wait(
    loop_name: str, pg_url: str
) -> None:
    """The connection a loop keeps for its commits (``_kept.Kept``: its reader registered for
    good, armed by each round trip's wait), reset while a commit holds it between two round
    trips (busy, not armed: the reader is told and passes): the next wait is resumed (its
    read then raises), never left waiting. uvloop tells a reader of an errored socket once
    and drops its registration; asyncio's loop tells it on every turn."""
    parts = urlsplit(pg_url)
    proxy = ResettingProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
        proxy.url(pg_url), min_size=2, max_size=3, open=True
    )

    async def scenario() -> int | None:
        loop = asyncio.get_running_loop()
        owner = LoopConnections()
        kept = owner.take(loop, pool)
        assert kept is not None and kept.busy
        try:
            await asyncio.to_thread(proxy.reset)
            await asyncio.sleep(0.2)  # loop turns: the reset seen while the kept one is not armed
            resumed: asyncio.Future[int] = loop.create_future()
            kept.arm(lambda ready: resumed.done() or resumed.set_result(ready))
            try:
                return await asyncio.wait_for(resumed, 10)
            except TimeoutError:
                return None
        finally:
            kept.disarm()
            owner.done(kept)
            owner.close()

    try:
        pool.wait(10)
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            ready = runner.run(scenario())
    finally:
        pool.close()
        proxy.close()
    assert ready == 1, "the wait after the reset was never resumed"
