"""A coroutine run without a task (``stepline._driven.Driven``): the writer's loop commit. It
starts at once, a socket's readiness resumes it in the loop's callback itself, a future it
awaits resumes it as a task would, and ``cancel`` throws ``CancelledError`` where it waits."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Generator
from typing import Any

import pytest
from psycopg.waiting import Ready, Wait

from stepline._driven import Driven, SocketWait, driving
from stepline.store.postgres import _pipeline


def _pair() -> tuple[socket.socket, socket.socket]:
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    return left, right


async def test_it_starts_at_once_and_a_ready_socket_resumes_it_in_that_turn() -> None:
    loop = asyncio.get_running_loop()
    left, right = _pair()
    seen: list[Any] = []

    async def body() -> str:
        seen.append(("started", driving()))
        ready = await SocketWait(left.fileno(), 1)
        seen.append(("ready", ready, driving()))
        return left.recv(10).decode()

    try:
        driven = Driven(body(), loop)
        assert seen == [("started", True)] and not driving()  # ran in the constructor
        resumed = asyncio.Event()
        driven.add_done_callback(lambda _: resumed.set())
        right.send(b"hi")
        # the reader callback itself resumes it: done in the turn that saw the socket ready
        await asyncio.wait_for(resumed.wait(), 10)
        assert driven.result() == "hi"
        assert seen[1] == ("ready", 1, True)
        assert not loop.remove_reader(left.fileno())  # its reader was removed
    finally:
        left.close()
        right.close()


async def test_an_awaited_future_resumes_it_and_an_error_is_its_outcome() -> None:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[int] = loop.create_future()

    async def body() -> int:
        value = await reply
        raise ValueError(f"got {value}")

    driven = Driven(body(), loop)
    assert not driven.done()
    reply.set_result(3)
    with pytest.raises(ValueError, match="got 3"):
        await driven


async def test_cancel_during_a_socket_wait_is_raised_where_it_waits() -> None:
    loop = asyncio.get_running_loop()
    left, right = _pair()
    cleaned: list[str] = []

    async def body() -> None:
        try:
            await SocketWait(left.fileno(), 1)
        except asyncio.CancelledError:
            cleaned.append("cancelled at the wait")
            raise

    try:
        driven = Driven(body(), loop)
        assert driven.cancel()
        with pytest.raises(asyncio.CancelledError):
            await driven
        assert cleaned == ["cancelled at the wait"]
        assert not loop.remove_reader(left.fileno())  # no reader left behind
        assert not driven.cancel()  # ended
    finally:
        left.close()
        right.close()


async def test_cancel_during_a_future_wait_cancels_that_future() -> None:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[None] = loop.create_future()

    async def body() -> None:
        await reply

    driven = Driven(body(), loop)
    driven.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driven
    assert reply.cancelled()


async def test_a_closed_socket_is_raised_where_it_waits() -> None:
    loop = asyncio.get_running_loop()
    left, right = _pair()
    fileno = left.fileno()
    left.close()
    right.close()

    async def body() -> str:
        try:
            await SocketWait(fileno, 1)
        except (OSError, ValueError) as exc:
            return type(exc).__name__
        return "resumed"

    assert await Driven(body(), loop) in ("OSError", "ValueError")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are Python 3.12+")
async def test_a_task_started_eagerly_inside_a_step_is_not_told_it_is_driven() -> None:
    # a task whose first step runs inside a Driven's step (asyncio.eager_task_factory) is a
    # task: it must await a future, never yield a SocketWait to itself ("Task got bad yield"
    # in the round trip it had written) (review R1 of the twelfth stop)
    loop = asyncio.get_running_loop()
    left, right = _pair()
    told: list[bool] = []
    made: list[asyncio.Task[str]] = []

    def reading_once() -> Generator[Wait, Ready, str]:
        ready = yield Wait.R  # a round trip written, now waiting for the reply
        return f"read {ready}"

    async def inner() -> str:  # a task a callback run in the Driven's step started
        told.append(driving())
        return await _pipeline._drive(reading_once(), left.fileno())

    async def body() -> None:
        told.append(driving())
        made.append(loop.create_task(inner()))  # eager: its first step runs here, now
        told.append(driving())

    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        await Driven(body(), loop)
        right.send(b"x")
        assert await asyncio.wait_for(made[0], 5) == f"read {Ready.R}"
        assert told == [True, False, True]
    finally:
        loop.set_task_factory(None)
        left.close()
        right.close()
