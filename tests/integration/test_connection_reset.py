"""A worker's connections to PostgreSQL reset by the network (a TCP RST: a proxy or a firewall
dropping them, or a server killed with input it had not read, as ``pg_ctl restart -m
immediate`` may) while a step's commit waits for its reply, with or without a last message
before the reset: the commit fails, the worker reconnects and the run completes, on asyncio's
loop and on uvloop's.

uvloop (libuv) calls a reader of a socket that reports an error (``POLLERR``) once and drops
its registration: the reader a loop keeps for its commit connection (``_kept.Kept``), told of
the reset while no round trip waited on it, or while one read the last message and waited on,
was never called again, and a worker on uvloop waited for that reply forever, deaf to SIGTERM
(``test_crash.py::test_database_restart_mid_run``, 2 runs in ~10 under load in December 2026).
``stepline._readers`` registers such a reader again while its socket has ended. A commit
whose large write waits for room when the reset comes has a writer registered beside that
reader: uvloop calls both once and then clears both, the reader registered again inside its
call with them, so ``_readers`` registers it again at the next turn too."""

from __future__ import annotations

import asyncio
import fcntl
import selectors
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool
import pytest
import uvloop
from _held_step import HeldStep, run_through

from stepline import App, Limits, _readers
from stepline.store.postgres._kept import Kept, LoopConnections
from stepline.store.postgres.wakeups import WakeupListener

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
STEPS = 6
LARGE = 8 << 20  # a step output larger than the sockets' buffers (4 MB the client's at most)
HELD_STEP = 2  # the step whose commit is held by the proxy, then reset
# a NoticeResponse (PostgreSQL's protocol): read and passed over by the client, which waits on
# for its reply; what a server that ends a session sends before it goes (its FATAL error) is
# read as the connection's end instead, but either comes before the reset
_NOTICE_BODY = b"SNOTICE\x00VNOTICE\x00C00000\x00Mthe proxy resets this connection\x00\x00"
NOTICE = b"N" + struct.pack("!i", len(_NOTICE_BODY) + 4) + _NOTICE_BODY


class ResettingProxy:
    """A TCP proxy to ``upstream``, one thread with a selector, that can hold what clients
    send (``hold``: their round trips get no reply), stop reading it (``stall``: their writes
    fill the sockets' buffers, then wait) and reset every connection open (``reset``: an RST
    to each client, after ``last_words``). Its thread does every read, write and close (a
    socket closed under another thread's blocked ``recv`` is released, and its RST sent, only
    once that call returns). ``receive_buffer``: the size of its clients' sockets' receive
    buffers (the kernel's, which grow to 32 MB here, otherwise)."""

    def __init__(self, upstream: tuple[str, int], receive_buffer: int | None = None) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        if receive_buffer is not None:  # the accepted sockets' (set before they connect)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._peers: dict[socket.socket, socket.socket] = {}  # each end -> the other
        self._clients: set[socket.socket] = set()
        self._held: dict[socket.socket, bytearray] = {}  # clients' bytes not sent on
        self._holding = False
        self._orders: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.held_bytes = 0
        self.resets = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        user, _, _ = parts.netloc.rpartition("@")
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))

    def hold(self) -> None:
        """From now on what clients send is kept here, unsent (until ``reset``)."""
        self._order(self._hold)

    def stall(self) -> None:
        """From now on nothing clients send is read (until ``reset``); waited for."""
        done = threading.Event()

        def stall() -> None:
            for client in self._clients:
                self._selector.unregister(client)
            done.set()

        self._order(stall)
        done.wait(10)

    def unread(self) -> int:
        """How many bytes clients sent wait unread in the proxy's sockets (``stall``)."""
        found: list[int] = []
        done = threading.Event()

        def unread() -> None:
            for client in self._clients:
                found.append(
                    struct.unpack("i", fcntl.ioctl(client, termios.FIONREAD, b"\0" * 4))[0]
                )
            done.set()

        self._order(unread)
        done.wait(10)
        return sum(found)

    def reset(self, last_words: bytes = b"") -> None:
        """``last_words`` then an RST to every client connection open (waited for); what was
        held is dropped, and new connections are forwarded again."""
        done = threading.Event()

        def reset() -> None:
            for client in list(self._clients):
                if last_words:
                    try:
                        client.send(last_words)
                    except OSError:
                        pass
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._drop(client)
                self.resets += 1
            self._holding = False
            done.set()

        self._order(reset)
        done.wait(10)

    def close(self) -> None:
        self.reset()
        self._closed = True
        self._order(lambda: None)
        self._thread.join(10)
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _hold(self) -> None:
        self._holding = True
        self.held_bytes = 0

    def _order(self, order: Callable[[], None]) -> None:
        with self._lock:
            self._orders.append(order)
        self._wake_w.send(b"\0")

    def _serve(self) -> None:
        while not self._closed:
            for key, _ in self._selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_r:
                    sock.recv(4096)
                    with self._lock:
                        orders, self._orders = self._orders, []
                    for order in orders:
                        order()
                elif sock is self._listener:
                    self._accept()
                elif sock in self._peers:
                    self._forward(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        server = socket.create_connection(self._upstream)
        self._peers[client], self._peers[server] = server, client
        self._clients.add(client)
        for end in (client, server):
            self._selector.register(end, selectors.EVENT_READ)

    def _forward(self, source: socket.socket) -> None:
        try:
            data = source.recv(65536)
        except OSError:
            data = b""
        if not data:  # one end closed: so is the other
            self._drop(source)
            return
        if source in self._clients and self._holding:
            self._held.setdefault(source, bytearray()).extend(data)
            self.held_bytes += len(data)
            return
        try:
            self._peers[source].sendall(data)
        except OSError:
            self._drop(source)

    def _drop(self, end: socket.socket) -> None:
        other = self._peers.pop(end, None)
        for sock in (end, other):
            if sock is None:
                continue
            self._peers.pop(sock, None)
            self._clients.discard(sock)
            self._held.pop(sock, None)
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()


@pytest.mark.parametrize(
    ("last_words", "large"),
    [(b"", False), (NOTICE, False), (NOTICE, True)],
    ids=["reset", "notice-then-reset", "large-write-notice-then-reset"],
)
@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_commit_whose_connection_is_reset_fails_and_the_run_completes(
    loop_name: str, last_words: bytes, large: bool, pg_url: str
) -> None:
    """``large``: the held step's output is larger than the sockets' buffers and the proxy
    stops reading (``stall``): its commit's write waits for room, its writer registered beside
    the kept connection's reader, when the reset comes."""
    parts = urlsplit(pg_url)
    proxy = ResettingProxy(
        (parts.hostname or "127.0.0.1", parts.port or 5432), 65536 if large else None
    )
    # the held step's commit gets no reply (the proxy holds it), or is not read (the proxy
    # stalls, its output larger than the buffers): then an RST
    run = HeldStep(STEPS, HELD_STEP, proxy.stall if large else proxy.hold, LARGE if large else 0)

    async def reset() -> None:
        # the held commit sent (its reply awaited, or about to be): reset under it (either way
        # a reader on uvloop was dropped without _readers)
        while not run.ran.get(f"s{HELD_STEP}") or not (
            await asyncio.to_thread(proxy.unread) if large else proxy.held_bytes
        ):
            await asyncio.sleep(0.01)
        await asyncio.to_thread(proxy.reset, last_words)

    async def scenario() -> tuple[Any, str]:
        limits = Limits(max_step_output_bytes=LARGE + 1024)
        app = App("resets", db=proxy.url(pg_url), limits=limits)
        run.add_to(app)
        done = await run_through(app, reset, 30)
        return done, type(asyncio.get_running_loop()).__module__

    try:
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            done, loop_module = runner.run(scenario())
    finally:
        proxy.close()
    assert loop_module.startswith(loop_name)
    assert proxy.resets >= 1
    assert done.status == "COMPLETED"
    run.check_ran(done.output)  # the held commit never reached the server


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
            # the reset seen by the socket, then loop turns: the loop's reader told of it while
            # the kept one is not armed
            while not _readers.ended(kept._poller):
                await asyncio.sleep(0.01)
            for _ in range(5):
                await asyncio.sleep(0)
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


def _until_ended(kept: Kept) -> None:
    """Until ``kept``'s socket shows the reset (this thread waits: its loop does not turn)."""
    for _ in range(10000):  # 10 s
        if _readers.ended(kept._poller):
            return
        time.sleep(0.001)
    raise AssertionError("the reset never reached the socket")


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_kept_connection_reset_while_a_commit_waits_to_write_resumes_each_wait(
    loop_name: str, pg_url: str
) -> None:
    """A large commit on the kept connection whose write does not finish (the proxy stopped
    reading: its round trip waits for the socket to be writable or readable, a writer
    registered beside the kept reader, as ``_pipeline._drive`` does), then the server's last
    message and a reset: that wait is resumed, and so is the next one (a read of the last
    message, after the writer is removed, waits on), on both loops. uvloop calls a socket's
    reader and writer once when it reports an error and then clears both: a reader
    registered again inside that call (``_readers.keep_reading``) was cleared with them."""
    parts = urlsplit(pg_url)
    proxy = ResettingProxy((parts.hostname or "127.0.0.1", parts.port or 5432), 65536)
    pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
        proxy.url(pg_url), min_size=2, max_size=3, open=True
    )

    async def resumed(kept: Kept) -> int | None:
        told: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        kept.arm(lambda ready: told.done() or told.set_result(ready))
        try:
            return await asyncio.wait_for(told, 10)
        except TimeoutError:
            return None
        finally:
            kept.disarm()

    async def scenario() -> tuple[int | None, int | None, bool]:
        loop = asyncio.get_running_loop()
        owner = LoopConnections()
        kept = owner.take(loop, pool)
        assert kept is not None and kept.busy
        pgconn = kept.conn.pgconn
        try:
            await asyncio.to_thread(proxy.stall)
            pgconn.nonblocking = 1
            # more than the sockets' buffers hold (4 MB at most for a sender's, 64 KB the
            # proxy's): the write stops, the rest waits in libpq's buffer
            pgconn.send_query(b"SELECT '" + b"x" * (16 << 20) + b"'")
            assert pgconn.flush() == 1
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(kept.socket, lambda: writable.done() or writable.set_result(None))
            try:
                first = asyncio.ensure_future(resumed(kept))
                for _ in range(5):
                    await asyncio.sleep(0)
                # the last message and the reset both there when the loop next looks (this
                # thread waits for them without letting it turn): one report of the error
                proxy.reset(NOTICE)
                _until_ended(kept)
                ready = await first
                wrote = writable.done()
            finally:
                loop.remove_writer(kept.socket)
            return ready, await resumed(kept), wrote
        finally:
            owner.done(kept)
            owner.close()

    try:
        pool.wait(10)
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            first, second, wrote = runner.run(scenario())
    finally:
        pool.close()
        proxy.close()
    assert first is not None, "the commit's wait was never resumed by the reset"
    assert wrote, "the commit's writer was never told of the reset"
    assert second == 1, "the wait after the reset was never resumed"


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_the_wakeup_listener_read_in_a_loop_hears_again_after_its_connection_is_reset(
    loop_name: str, pg_url: str
) -> None:
    """The wake-up listener's connection, read in the worker's loop (a reader registered for
    good), gets the server's last message and then a reset: the loop gives it back, the
    listener's thread connects again and a notification sent after that wakes the loop, on
    both loops. (Here the first read after the reset already raised: this did not fail on
    uvloop without ``_readers.keep_reading`` in the listener, as the kept connection's test
    did; the listener keeps its reader for good as that connection does.)"""
    parts = urlsplit(pg_url)
    proxy = ResettingProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    woken: list[tuple[tuple[str, str], ...]] = []

    async def until(what: str, check: Callable[[], bool]) -> None:
        for _ in range(1000):  # 10 s
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    async def scenario() -> None:
        listener = WakeupListener(proxy.url(pg_url), lambda named: woken.append(tuple(named)))
        listener.start()  # in the running loop: read there
        try:
            await until("the connection read in the loop", lambda: listener._reading is not None)
            first = listener._handed
            await asyncio.to_thread(proxy.reset, NOTICE)
            await until(
                "the listener connected again and read in the loop",
                lambda: listener._reading is not None and listener._handed is not first,
            )
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("SELECT pg_notify('stepline', %s)", ('[["fn","after"]]',))
            await until("a wake-up after the reset", lambda: (("fn", "after"),) in woken)
        finally:
            listener.stop()

    try:
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            runner.run(scenario())
    finally:
        proxy.close()
    assert proxy.resets >= 1
