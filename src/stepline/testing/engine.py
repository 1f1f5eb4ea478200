"""``TestEngine``: run an app's functions in a test, on a memory or SQLite store, with virtual time.

    async with TestEngine(app) as t:
        run = await t.trigger(Event("order/created", {"id": 1}))
        assert run.status == "COMPLETED"

Sleeps, wait timeouts and retry backoffs complete instantly (``MockClock`` with autojump); steps
can be replaced by id with ``mock_step``.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from stepline.engine.worker import Worker
from stepline.sdk.app import App
from stepline.sdk.backoff import RetryBackoff
from stepline.sdk.event import Event
from stepline.sdk.run import HistoryEntry, Run
from stepline.store import MemoryStore, SQLiteStore, Store, open_store
from stepline.testing.clock import MockClock

_UNSET: Any = object()
_OCCURRENCE = re.compile(r":\d+$")  # "fetch:1" is the second "fetch"


class TestEngine:
    """An app bound to a test store and clock, with a worker running while the block runs.

    ``store`` is ``"memory"``, ``"sqlite"`` (a fresh file in ``path`` or a temporary folder), a
    ``postgresql://`` URL (a database the test has emptied) or a Store. ``clock`` defaults to
    ``MockClock(autojump=True)``.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        *,
        store: str | Store = "sqlite",
        path: str | Path | None = None,
        clock: MockClock | None = None,
        concurrency: int = 100,
    ) -> None:
        self.app = app
        self.clock = clock or MockClock()
        self._store_spec = store
        self._path = Path(path) if path is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._concurrency = concurrency
        self.worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None
        self._mocked: dict[str, bool] = {}  # mocked step id -> its mock was called

    def _open_store(self) -> Store:
        spec = self._store_spec
        if not isinstance(spec, str):
            return spec
        if spec == "memory":
            return MemoryStore()
        if spec == "sqlite":
            if self._path is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="stepline-test-")
                self._path = Path(self._tmp.name) / "stepline.db"
            return SQLiteStore(self._path, synchronous="NORMAL")
        if spec.startswith(("postgresql://", "postgres://")):
            return open_store(spec)
        raise ValueError(
            f"store must be 'memory', 'sqlite', a postgresql:// URL or a Store, got {spec!r}"
        )

    async def __aenter__(self) -> TestEngine:
        engine = self.app.attach(self._open_store(), self.clock)
        if self.app.retry_backoff is None:  # retries come back in (virtual) seconds in tests
            engine.backoff = RetryBackoff.FAST
        self.worker = self.app.make_worker(
            concurrency=self._concurrency, worker_id="test-worker", poll_interval=None
        )
        self._task = asyncio.create_task(self.worker.run())
        ready = asyncio.ensure_future(self.worker.ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():  # the worker failed to start: raise its error here
            ready.cancel()
            self._task.result()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.worker is not None and self._task is not None:
                self.worker.stop()
                await self._task
            if exc is None:
                await self._check_mocks_reached()
        finally:
            self.app.close()
            if self._tmp is not None:
                self._tmp.cleanup()

    async def _check_mocks_reached(self) -> None:
        """Fail the test for a ``mock_step`` id no run asked for (a typo mocks nothing)."""
        unreached = [step_id for step_id, called in self._mocked.items() if not called]
        if not unreached:
            return
        reached = {
            _OCCURRENCE.sub("", step.id)
            for run in await self.app.runs(limit=100_000)
            for step in run.steps
        }
        unreached = [step_id for step_id in unreached if step_id not in reached]
        if unreached:
            mocks = ", ".join(f"mock_step({step_id!r})" for step_id in unreached)
            raise AssertionError(
                f"{mocks}: no run reached a step with this id; the steps reached were: "
                f"{', '.join(sorted(reached)) or 'none'}"
            )

    # -- driving ----------------------------------------------------------------------------------
    async def send(self, events: Event | list[Event]) -> list[str]:
        """Send events; returns their ids."""
        return await self.app.send_async(events)

    async def trigger(self, event: Event, *, timeout: float = 30.0) -> Run:
        """Send one event that starts exactly one run and return that run once it ended."""
        [event_id] = await self.send(event)
        runs = await self.app.runs(event_id=event_id)
        if len(runs) != 1:
            raise AssertionError(f"event {event.name!r} started {len(runs)} runs, expected 1")
        return await self.app.wait_for_run(runs[0].run_id, timeout)

    async def tick(self, timeout: float = 30.0) -> None:
        """Wake the worker and return once it has looked for work at least once since: after
        ``clock.advance()``, due sleeps, debounces, batches and cron ticks have been started."""
        assert self.worker is not None, "use TestEngine in 'async with'"
        target = self.worker.loops + 2
        deadline = time.monotonic() + timeout
        while self.worker.loops < target:
            self.worker.wake()
            if time.monotonic() > deadline:
                raise AssertionError("the worker did not look for work")
            await asyncio.sleep(0.001)

    async def wait_for_run(self, run_id: str, timeout: float = 30.0) -> Run:
        """The run once it has ended."""
        return await self.app.wait_for_run(run_id, timeout)

    async def wait_for_status(self, run_id: str, status: str, timeout: float = 30.0) -> Run:
        """Poll until the run has ``status`` (``AssertionError`` after ``timeout`` real seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            run = await self.app.get_run(run_id)
            if run is not None and run.status == status:
                return run
            if time.monotonic() > deadline:
                seen = run.status if run else "missing"
                raise AssertionError(f"run {run_id} did not reach {status} (it is {seen})")
            await asyncio.sleep(0.002)

    async def runs(self, **filters: Any) -> list[Run]:
        """See ``App.runs``."""
        return await self.app.runs(**filters)

    async def history(self, run_id: str) -> list[HistoryEntry]:
        """See ``App.history``."""
        return await self.app.history(run_id)

    def mock_step(
        self, step_id: str, value: Any = _UNSET, *, fn: Callable[..., Any] | None = None
    ) -> None:
        """Replace the body of every step named ``step_id``: return ``value``, or call ``fn``
        with the step's arguments (it may raise to simulate a failure).

        A mocked id that no run reaches by the end of the ``async with`` block fails the test
        (``AssertionError`` listing the step ids that were reached): a typo mocks nothing."""
        if (value is _UNSET) == (fn is None):
            raise ValueError("pass exactly one of value= or fn=")
        replacement = fn if fn is not None else (lambda *args, **kwargs: value)
        self._mocked[step_id] = False

        def body(*args: Any, **kwargs: Any) -> Any:
            self._mocked[step_id] = True
            return replacement(*args, **kwargs)

        async def async_body(*args: Any, **kwargs: Any) -> Any:
            self._mocked[step_id] = True
            return await replacement(*args, **kwargs)

        coroutine = inspect.iscoroutinefunction(replacement)
        self.app.engine.step_mocks[step_id] = async_body if coroutine else body

    def unmock_step(self, step_id: str) -> None:
        """Undo ``mock_step``."""
        self.app.engine.step_mocks.pop(step_id, None)
        self._mocked.pop(step_id, None)
