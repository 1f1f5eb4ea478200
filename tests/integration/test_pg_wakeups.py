"""PostgreSQL wake-ups across processes: a commit that makes work due sends NOTIFY; a listening
store wakes its workers, so a worker that never polls still starts runs another process sent."""

from __future__ import annotations

import asyncio
import contextvars
import json
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import psycopg
import pytest
from _polling import until

from stepline import App, Context, Event, TriggerEvent
from stepline.engine.worker import Worker
from stepline.errors import StoreUnavailable
from stepline.store.interface import WouldBlock
from stepline.store.postgres import PostgresStore, wakeups
from stepline.store.postgres.wakeups import NOTIFY


async def test_a_commit_that_makes_work_due_wakes_the_watchers(pg_url: str) -> None:
    watcher, sender = PostgresStore(pg_url), PostgresStore(pg_url)
    watcher.migrate()
    woken = threading.Event()
    stop = watcher.watch(lambda named: woken.set())
    try:
        await until("the listener to say it listens", woken.is_set)  # woken once connected
        woken.clear()
        with sender.transaction() as tx:
            tx.set_paused("f", True, "app")  # may change what is due: a wake-up
        await until("the notification", woken.is_set)
    finally:
        stop()
        watcher.close()
        sender.close()


class Takes:
    """What each wake-up of a worker said (``Worker.on_wake``), and how many loops the worker
    had made before it (``loops()``: the wake-up starts the next one)."""

    def __init__(self, loops: Callable[[], int]) -> None:
        self.taken: list[tuple[bool, dict[str, str], int]] = []
        self.claimed: list[str] = []  # runs named by takes made in the wake-up's own callback
        self.named: list[str] = []  # runs named by any take
        self._loops = loops

    def __call__(self, plain: bool, named: Mapping[str, str]) -> None:
        self.taken.append((plain, dict(named), self._loops()))
        self.named += named
        if asyncio.current_task() is None:  # not the worker's task: its claim (Worker._claim)
            self.claimed += named

    def seen(self, run_id: str) -> list[bool]:
        """Whether each take that named ``run_id`` was also plain."""
        return [plain for plain, named, _ in self.taken if run_id in named]

    def done_with(self, run_id: str) -> bool:
        """Whether a take named ``run_id`` and the loop it started has ended."""
        loops = [n for _, named, n in self.taken if run_id in named]
        return bool(loops) and self._loops() > loops[0]


@pytest.mark.parametrize("way", ["alone", "by-the-writer"])
async def test_a_worker_that_never_polls_starts_a_run_sent_by_another_process(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """...leasing it by name as the notification is read, without waking the worker's task
    (``Worker._claim``), in a transaction of its own (``lease_named_alone``: one statement;
    before: a loop commit of the writer's job, its transaction's set-up around it), else
    (``WouldBlock``: nothing was sent) by the writer."""
    app = App("wakeups", db=pg_url)
    done = asyncio.Event()

    @app.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet(ctx: Context) -> str:
        done.set()
        return "hello"

    # the sender: another App on the same database (its own engine and store, as another
    # process would have), so only PostgreSQL's NOTIFY can wake the worker
    sender = App("wakeups", db=pg_url)

    @sender.function(id="greet", trigger=TriggerEvent("greet/please"))
    async def greet_too(ctx: Context) -> str:
        return "never here"

    async def send() -> str:
        done.clear()
        [event_id] = await asyncio.to_thread(sender.send, Event("greet/please"))
        await asyncio.wait_for(done.wait(), 30)
        [run] = await app.runs(event_id=event_id)
        await until("the worker idle", lambda: not worker.active)
        return run.run_id

    try:
        async with leasing_by_name(app, worker_id="listener", poll_interval=None) as worker:
            await asyncio.wait_for(worker.ready.wait(), 30)
            await until("the worker to have looked for work once", lambda: worker.loops >= 1)
            worker.on_wake = takes = Takes(lambda: worker.loops)
            await send()  # the sender's first send registers it too (a plain wake-up)
            written: list[str] = []  # the jobs the writer was given from now on
            write = app.engine.writer.write

            def recording(job: Callable[..., Any], **options: Any) -> Any:
                written.append(job.__qualname__)
                return write(job, **options)

            monkeypatch.setattr(app.engine.writer, "write", recording)
            store = app.engine.store
            alone: list[str] = []  # the runs leased alone
            lease_alone = store.lease_named_alone

            async def leasing_alone(*args: Any) -> Any:
                leases = await lease_alone(*args)
                alone.extend(lease.run_id for lease in leases)
                return leases

            monkeypatch.setattr(store, "lease_named_alone", leasing_alone)
            if way == "by-the-writer":
                monkeypatch.setattr(store, "lease_named_alone", _would_block)
            # each send now: after every notification before it was taken and the loop it
            # started ended (a notification of our own, naming no run of the worker's, marks
            # the point: they come in commit order), so its notification comes alone, names
            # its new run, and the idle worker leases it by name (one round trip), never by
            # looking for any due work
            with psycopg.connect(pg_url, autocommit=True) as conn:
                for n in range(3):
                    await _barrier(conn, takes, f"barrier-{n}")
                    by_name = worker.leased_by_name
                    run_id = await send()
                    assert takes.seen(run_id) == [False], takes.taken  # named, alone
                    assert run_id in takes.claimed, takes.taken
                    assert worker.leased_by_name == by_name + 1
                    assert (run_id in alone) == (way == "alone")
            by_writer = [job for job in written if job.startswith("NamedRuns.lease.")]
            assert len(by_writer) == (3 if way == "by-the-writer" else 0), written
    finally:
        sender.close()
        app.close()


@asynccontextmanager
async def leasing_by_name(app: App, **options: Any) -> AsyncIterator[Worker]:
    """``app.worker(**options)`` taking no hand-offs (``test_pg_handoffs.py``): the runs other
    processes send are named to it, and it leases them itself."""
    worker = Worker(app.engine, handoffs=False, **options)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.tried.wait(), 30)
        yield worker
    finally:
        worker.stop()
        await task


async def _would_block(*args: Any) -> Any:
    raise WouldBlock("no idle connection")


async def _barrier(conn: psycopg.Connection[Any], takes: Takes, name: str) -> None:
    """Notify, naming no run of the worker's, until such a notification comes alone (no plain
    wake-up in its take) and the loop it started ended: that loop leased nothing and went back
    to sleep without reading when work is due next. A barrier taken with a plain wake-up (the
    worker's own, when a pass ended: its loop may still be reading) started a loop that looks
    for any due work and then reads the next due time; a send meanwhile made that read see its
    run due, and the worker leased it by looking for due work before the notification naming
    it was taken (a red at line 106 under load)."""
    for attempt in range(20):
        barrier = f"{name}-{attempt}"
        conn.execute(NOTIFY, (json.dumps([["no-such-function", barrier]]),))
        await until("the barrier's loop ended", partial(takes.done_with, barrier))
        if takes.seen(barrier) == [False]:
            return
    raise AssertionError(f"no barrier came alone: {takes.taken}")


class CountedSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The listener's selector, recording the timeout of each of its waits."""

    timeouts: list[float | None] = []

    def select(self, timeout: float | None = None) -> list[Any]:
        CountedSelector.timeouts.append(timeout)
        return super().select(timeout)  # type: ignore[no-any-return]


async def _heard_three(
    watch: Callable[[Callable[[Sequence[tuple[str, str]]], None]], Callable[[], None]],
    pg_url: str,
) -> tuple[list[int], wakeups.WakeupListener]:
    """Watch (``watch``: the store's, called here or in a thread), hear three notifications,
    stop; the thread each ``on_wake`` ran in (the first: "listening") and the listener."""
    watcher, sender = PostgresStore(pg_url), PostgresStore(pg_url)
    watcher.migrate()
    heard: list[int] = []
    stop = await watch(partial(watcher.watch), lambda named: heard.append(threading.get_ident()))
    listener = stop.__self__  # type: ignore[attr-defined]
    try:
        await until("the listener to say it listens", lambda: heard)
        for n in range(3):
            with sender.transaction() as tx:
                tx.set_paused(f"f{n}", True, "app")
            await until(f"notification {n + 1}", lambda n=n: len(heard) == n + 2)
    finally:
        stop()
        watcher.close()
        sender.close()
    assert not listener._thread.is_alive()
    return heard, listener


async def _here(watch: Callable[..., Any], on_wake: Any) -> Any:
    return watch(on_wake)


async def _in_a_thread(watch: Callable[..., Any], on_wake: Any) -> Any:
    return await asyncio.to_thread(watch, on_wake)


async def test_the_listener_sleeps_until_a_notification_or_its_stop(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watched outside an event loop, the listening thread reads the notifications, and no
    timer wakes it (a 50 ms poll cost it ~14 ms of CPU a second): it waits on the connection's
    socket and its stop socket only, and ``stop()`` ends it."""
    monkeypatch.setattr(wakeups.selectors, "DefaultSelector", CountedSelector)
    CountedSelector.timeouts = []
    heard, listener = await _heard_three(_in_a_thread, pg_url)
    assert set(heard) == {listener._thread.ident}
    assert CountedSelector.timeouts and set(CountedSelector.timeouts) == {None}


async def test_a_listener_started_in_a_loop_reads_the_notifications_in_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watched in a running loop (a worker's), the notifications are read and ``on_wake``
    called in that loop (before: the listening thread woke, then handed each to the loop);
    the thread, which connected and said it listens, waits meanwhile for its stop, the
    connection given back, or the loop closed (looked at once a second), never per
    notification."""
    monkeypatch.setattr(wakeups.selectors, "DefaultSelector", CountedSelector)
    CountedSelector.timeouts = []
    heard, listener = await _heard_three(_here, pg_url)
    assert heard[0] == listener._thread.ident
    assert heard[1:] == [threading.get_ident()] * 3
    assert set(CountedSelector.timeouts) == {wakeups._LOOP_CHECK}


def test_a_listener_whose_loop_closed_reads_the_notifications_in_its_thread(
    pg_url: str,
) -> None:
    """The loop the listener read in closed (an engine that outlives an ``asyncio.run``): its
    thread reads the notifications from then on."""
    watcher, sender = PostgresStore(pg_url), PostgresStore(pg_url)
    watcher.migrate()
    heard: list[int] = []

    async def watch() -> Callable[[], None]:
        stop = watcher.watch(lambda named: heard.append(threading.get_ident()))
        await until("the listener to say it listens", lambda: heard)
        with sender.transaction() as tx:
            tx.set_paused("f0", True, "app")
        await until("a notification read in the loop", lambda: len(heard) == 2)
        return stop

    stop = asyncio.run(watch())  # the loop closes
    listener = stop.__self__  # type: ignore[attr-defined]
    try:
        with sender.transaction() as tx:
            tx.set_paused("f1", True, "app")
        _until_the_thread_hears(heard, 3)
    finally:
        stop()
        watcher.close()
        sender.close()
    assert heard[0] == heard[2] == listener._thread.ident != heard[1]


def _until_the_thread_hears(heard: list[int], count: int) -> None:
    """Until ``heard`` holds ``count`` notifications: polled in real time, as the listener's
    thread looks at the loop it handed the reading to once a second (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    while len(heard) < count:
        assert time.monotonic() < deadline, f"notification {count} was never read"
        time.sleep(0.01)  # real time: a poll of the listener thread's list, under the deadline


def test_a_listener_whose_loop_stopped_without_closing_reads_in_its_thread(pg_url: str) -> None:
    """The loop the listener read in stopped and nobody closed it (review R2: before, no
    notification was read until that loop ran again): its thread takes the reading back
    (it looks once a second) and hears the next notification."""
    watcher, sender = PostgresStore(pg_url), PostgresStore(pg_url)
    watcher.migrate()
    heard: list[int] = []
    loop = asyncio.new_event_loop()

    async def watch() -> Callable[[], None]:
        stop = watcher.watch(lambda named: heard.append(threading.get_ident()))
        await until("the listener to say it listens", lambda: heard)
        return stop

    stop = loop.run_until_complete(watch())  # the loop stops here; nobody closes it (yet)
    listener = stop.__self__  # type: ignore[attr-defined]
    try:
        with sender.transaction() as tx:
            tx.set_paused("f1", True, "app")
        _until_the_thread_hears(heard, 2)
    finally:
        stop()
        loop.close()
        watcher.close()
        sender.close()
    assert heard == [listener._thread.ident] * 2


def test_an_engine_whose_listening_loop_closed_reads_in_the_loop_of_its_next_waker(
    pg_url: str,
) -> None:
    """The loop the engine's notifications were read in closed and its thread took the
    reading back; a worker registering in another running loop (``Engine.add_waker``) has
    that loop read them again (before: the thread read them for good, each then handed to
    the loop a turn later)."""
    app = App("reattach", db=pg_url)
    sender = PostgresStore(pg_url)
    engine = app.engine

    def read_in(loop: asyncio.AbstractEventLoop | None) -> bool:
        listener = engine._unwatch.__self__  # type: ignore[union-attr]
        reading = listener._reading
        return (reading is None) if loop is None else (reading is not None and reading[0] is loop)

    async def register() -> None:
        woken = asyncio.Event()
        engine.add_waker(woken)
        await until("the notifications read in this loop", partial(read_in, _running()))
        engine.remove_waker(woken)

    try:
        asyncio.run(register())  # its loop closes
        deadline = time.monotonic() + 30  # the thread looks at that loop once a second
        while not read_in(None):
            assert time.monotonic() < deadline, "the thread never took the reading back"
            time.sleep(0.01)  # real time: a poll of the listener thread, under the deadline

        async def again() -> None:
            woken = asyncio.Event()
            engine.add_waker(woken)
            await until("the notifications read in this loop", partial(read_in, _running()))
            with sender.transaction() as tx:
                tx.set_paused("f", True, "reattach")
            await until("the worker woken", woken.is_set)

        asyncio.run(again())
    finally:
        sender.close()
        app.close()


def _running() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


_SEND = """
import sys
from stepline import App, Event, TriggerEvent
app = App("two-loops", db=sys.argv[1])
@app.function(id="f", trigger=TriggerEvent("go"))
async def f(ctx):
    return 1
[event_id] = app.send(Event(name="go"))
print(event_id)
app.close()
"""


def test_a_worker_in_a_second_loop_starts_a_run_another_process_sent(pg_url: str) -> None:
    """The engine's first worker ran in a loop the program keeps (stopped, not closed); a
    second worker, in another loop and never polling, is woken by another process's send
    (review R2: before, the listener stayed bound to the first loop and nothing woke it)."""
    app = App("two-loops", db=pg_url)

    @app.function(id="f", trigger=TriggerEvent("go"))
    async def f(ctx: Context) -> int:
        return 1

    first = asyncio.new_event_loop()

    async def briefly() -> None:
        async with app.worker(poll_interval=None):
            pass

    first.run_until_complete(briefly())

    async def second() -> str:
        async with app.worker(poll_interval=None) as worker:
            await asyncio.wait_for(worker.ready.wait(), 30)
            await until("the worker to have looked for work once", lambda: worker.loops >= 1)
            sender = await asyncio.create_subprocess_exec(  # another process sends the event
                sys.executable, "-c", _SEND, pg_url, stdout=subprocess.PIPE
            )
            out, _ = await sender.communicate()
            assert sender.returncode == 0
            event_id = out.decode().strip()

            async def ended() -> bool:
                runs = await app.runs(event_id=event_id)
                return bool(runs) and runs[0].status == "COMPLETED"

            await until("the run sent by another process to end", ended, timeout=30)
            return "COMPLETED"

    try:
        assert asyncio.run(second()) == "COMPLETED"
    finally:
        first.close()
        app.close()


async def test_a_listener_whose_session_ended_listens_again(pg_url: str) -> None:
    """The server ends the listening session: the listener connects again, says so (a look for
    any work, for what was committed meanwhile) and hears the next notification."""
    watcher, sender = PostgresStore(pg_url), PostgresStore(pg_url)
    watcher.migrate()
    heard: list[Sequence[tuple[str, str]]] = []
    stop = watcher.watch(heard.append)
    try:
        await until("the listener to say it listens", lambda: heard)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query = %s",
                (f"LISTEN {wakeups.CHANNEL}",),
            ).fetchall()
        assert ended == [(True,)]
        await until("the listener to listen again", lambda: len(heard) == 2)
        with sender.transaction() as tx:
            tx.set_paused("f", True, "app")
        await until("the next notification", lambda: len(heard) == 3)
    finally:
        stop()
        watcher.close()
        sender.close()


class Sent:
    """An app whose worker never polls, and another App on the same database sending to it
    (its own engine and store, as another process would have: only NOTIFY wakes the worker);
    ``send`` once the worker waits for work (``_barrier``), so that a claim may take it."""

    def __init__(self, pg_url: str) -> None:
        self.url = pg_url
        self.app = App("claims", db=pg_url)
        self.sender = App("claims", db=pg_url)
        self.started: list[int] = []
        self.go = asyncio.Event()  # a step of a run sent with {"wait": True} waits for it
        self.go.set()
        go, started = self.go, self.started

        @self.app.function(id="job", trigger=TriggerEvent("job/please"))
        async def job(ctx: Context) -> int:
            n = int(ctx.event.data["n"])
            started.append(n)
            if ctx.event.data.get("wait"):
                await go.wait()
            return n

        @self.sender.function(id="job", trigger=TriggerEvent("job/please"))
        async def job_too(ctx: Context) -> int:
            return -1

    async def send(self, n: int, *, barrier: bool = True, **data: Any) -> str:
        if barrier:
            with psycopg.connect(self.url, autocommit=True) as conn:
                await _barrier(conn, self.takes, f"barrier-{n}")
        event = Event("job/please", {"n": n, **data})
        [event_id] = await asyncio.to_thread(self.sender.send, event)
        await until(f"run {n} started", lambda: n in self.started)
        [run] = await self.app.runs(event_id=event_id)
        return run.run_id

    @asynccontextmanager
    async def worker(self, **options: Any) -> AsyncIterator[Worker]:
        try:
            async with leasing_by_name(
                self.app, worker_id="claims", poll_interval=None, **options
            ) as w:
                await asyncio.wait_for(w.ready.wait(), 30)
                await until("the worker to have looked for work once", lambda: w.loops >= 1)
                w.on_wake = self.takes = Takes(lambda: w.loops)
                await self.send(0, barrier=False)  # registers the sender (a plain wake-up)
                await until("the worker idle", lambda: not w.active)
                yield w
        finally:
            self.sender.close()
            self.app.close()


async def _nothing(*args: Any) -> list[Any]:
    return []  # as if a run ahead of the named one kept it from being leased by name


async def _unavailable(*args: Any) -> list[Any]:
    raise StoreUnavailable("the database restarts", "test")


_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


async def test_a_claimed_runs_pass_sees_the_context_the_worker_started_in(pg_url: str) -> None:
    """A pass started by a claim (in the callback that read the lease's reply, not in the
    worker's task) runs in a copy of the context the worker was started in, as the passes its
    task starts do: a context variable set before the worker started is seen in a step."""
    sent = Sent(pg_url)
    seen: list[str] = []

    @sent.app.function(id="tenant", trigger=TriggerEvent("tenant/please"))
    async def tenant(ctx: Context) -> str:
        seen.append(_TENANT.get())
        return await ctx.step.run("read", lambda: _TENANT.get())

    @sent.sender.function(id="tenant", trigger=TriggerEvent("tenant/please"))
    async def tenant_too(ctx: Context) -> str:
        return "never here"

    _TENANT.set("acme")
    async with sent.worker():
        with psycopg.connect(pg_url, autocommit=True) as conn:
            await _barrier(conn, sent.takes, "barrier-tenant")
        await asyncio.to_thread(sent.sender.send, Event("tenant/please"))
        await until("the run started", lambda: seen)
        [run] = await sent.app.runs(function_id="tenant")
        assert run.run_id in sent.takes.claimed
    assert seen == ["acme"]


@pytest.mark.parametrize("lease", [_nothing, _unavailable], ids=["leased-nothing", "unavailable"])
async def test_a_named_run_the_claim_did_not_lease_is_left_to_the_workers_loop(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, lease: Callable[..., Any]
) -> None:
    """...woken plainly (it never polls: else never leased), which leases it in the fair order
    (``lease_due``); a store that failed (``StoreUnavailable``) counts as one outage, and the
    loop backs off and leases the run once the store answers."""
    sent = Sent(pg_url)
    async with sent.worker() as worker:
        monkeypatch.setattr(sent.app.engine.store, "lease_named_alone", lease)
        by_name = worker.leased_by_name
        run_id = await sent.send(1)
        assert run_id in sent.takes.claimed
        assert worker.leased_by_name == by_name  # lease_due took it
        assert worker.outage.outages == (1 if lease is _unavailable else 0)


async def test_a_worker_without_a_free_slot_claims_nothing(pg_url: str) -> None:
    """A claim never takes the worker past its concurrency: a run named while its one slot is
    busy is leased by the worker's loop once the pass in that slot ended."""
    sent = Sent(pg_url)
    async with sent.worker(concurrency=1) as worker:
        sent.go.clear()
        first = await sent.send(1, wait=True)
        assert first in sent.takes.claimed
        event = Event("job/please", {"n": 2})
        [event_id] = await asyncio.to_thread(sent.sender.send, event)
        [second] = await sent.app.runs(event_id=event_id)
        await until("the wake-up naming it", lambda: second.run_id in sent.takes.named)
        assert 2 not in sent.started and len(worker.active) == 1
        sent.go.set()
        await until("the second run started", lambda: 2 in sent.started)
        assert second.run_id not in sent.takes.claimed
