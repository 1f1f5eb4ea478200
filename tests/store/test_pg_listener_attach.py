"""PostgreSQL wake-ups: the listening thread hands its connection to a worker's loop with a
queued ``_attach``; if the listener stops (and the thread closes the connection) before that
call runs, the call reads nothing and raises nothing (it raised ``OperationalError: the
connection is closed`` in the loop's exception handler: 7 of 65 PostgreSQL engines started and
stopped at once logged it)."""

from __future__ import annotations

import asyncio

import psycopg

from stepline.store.postgres.wakeups import WakeupListener


def test_an_attach_queued_before_a_stop_does_not_read_the_closed_connection(pg_url: str) -> None:
    listener = WakeupListener(pg_url, lambda named: None)
    conn = psycopg.connect(pg_url, autocommit=True)

    async def queued_attach_runs() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        # as _listen_in_loop does: handed to the loop, the attach queued ...
        with listener._lock:
            listener._handed = conn
        loop.call_soon(listener._attach, conn)
        # ... then stop(), and the thread leaves its `with psycopg.connect(...)` block
        listener.stop()
        conn.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert errors == []
        assert listener._reading is None  # nothing reads the closed connection

    try:
        asyncio.run(queued_attach_runs())
    finally:
        conn.close()
        listener.stop()
