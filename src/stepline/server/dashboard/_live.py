"""Live updates: one hub per dashboard fans the engine's change feed out to browsers (SSE).

While at least one browser listens, the hub subscribes to ``engine.changes``, gathers what
changed for a moment (``COALESCE`` seconds, so a burst of commits is one update), reads the
changed runs and events once, renders their rows once, and hands the same message to every
browser. No browser polls the database; a thousand browsers cost one read per update.
A browser too slow to keep up (its queue full) is dropped; its page reconnects and reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from stepline.engine.changes import Change, Subscription
from stepline.sdk.run import Run

if TYPE_CHECKING:
    from stepline.sdk.app import App

COALESCE = 0.1  # seconds changes are gathered before one update is sent
KEEPALIVE = 15.0  # seconds between SSE comments on a quiet stream
MAX_RUNS = 200  # runs read per update (a larger burst tells pages to reload)
CLIENT_QUEUE = 64  # messages a browser may fall behind before it is dropped

Renderer = Callable[[list[Run], list[Change]], Awaitable[list[tuple[str, Any]]]]


class LiveHub:
    """Fans committed changes out to the browsers listening (``listen``)."""

    def __init__(self, app: App, render: Renderer) -> None:
        self.app = app
        self._render = render
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self.updates = 0  # updates sent (tests read it)

    @property
    def listeners(self) -> int:
        """Browsers listening now."""
        return len(self._clients)

    async def listen(self) -> AsyncIterator[bytes]:
        """One browser's stream of SSE messages (ends when the hub drops it)."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)
        if self._task is None or self._task.done():
            self._subscription = self.app.engine.changes.subscribe()
            self._task = asyncio.create_task(self._pump(self._subscription))
        try:
            yield b"retry: 2000\n: connected\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if message is None:
                    return
                yield message
        finally:
            self._clients.discard(queue)
            if not self._clients:
                await self.stop()

    async def stop(self) -> None:
        """Stop listening to the feed (no browser left)."""
        task, self._task = self._task, None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self, subscription: Subscription) -> None:
        while True:
            changes = await subscription.get()
            await asyncio.sleep(COALESCE)  # real time: gather a burst into one update
            changes += await _drain(subscription)
            if subscription.overflowed:
                subscription.overflowed = False
                self._send("reload", {})
                continue
            try:
                messages = await self._messages(changes)
            except Exception:  # a failed read must not end live updates: pages reload
                messages = [("reload", {})]
            for kind, data in messages:
                self._send(kind, data)
            self.updates += 1

    async def _messages(self, changes: list[Change]) -> list[tuple[str, Any]]:
        run_ids = list(dict.fromkeys(r for c in changes for r in c.run_ids))
        if len(run_ids) > MAX_RUNS:
            return [("reload", {})]
        engine = self.app.engine
        store = engine.store
        records = await engine.read(lambda: [store.get_run(r) for r in run_ids])
        runs = [Run.from_records(r, []) for r in records if r is not None]
        return await self._render(runs, changes)

    def _send(self, kind: str, data: Any) -> None:
        message = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for queue in list(self._clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow: drop it (its page reconnects and reloads)
                self._clients.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)


async def _drain(subscription: Subscription) -> list[Change]:
    """The changes pending now, without waiting."""
    if not subscription.pending:
        return []
    return await subscription.get()
