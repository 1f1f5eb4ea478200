"""The writer's jobs as it holds them (``_Pending``) and how their outcomes are handed to the
callers that wait for them (``engine/writer.py``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple

from stepline.errors import StoreError
from stepline.store.interface import StoreTx
from stepline.store.records import PassCommit

Job = Callable[[StoreTx], Any]
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception to raise)

log = logging.getLogger("stepline.writer")


class _Pending(NamedTuple):
    job: Job
    loop: asyncio.AbstractEventLoop | None  # the waiting caller's loop; None: a blocked thread
    future: asyncio.Future[Any] | Future[Any]
    then: Callable[[Any], object] | None = None  # called with the result (``submit``)
    steps: PassCommit | None = None  # the pass commit the job applies (``submit``)
    now: float | None = None  # the time the job gives that commit (``submit``)


def _own_copy(error: StoreError) -> StoreError:
    """One exception per waiting caller (each raise adds to its traceback)."""
    copy = type(error)(error.reason, error.database)
    copy.__cause__ = error.__cause__ or error
    return copy


def _settle(future: asyncio.Future[Any] | Future[Any], outcome: Outcome) -> None:
    if future.done():  # the caller gave up waiting (cancelled)
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    elif isinstance(value, StopIteration | StopAsyncIteration):
        # a future refuses them (TypeError): wrapped as asyncio wraps a coroutine's
        error = RuntimeError(f"a write raised {type(value).__name__}")
        error.__cause__ = value
        future.set_exception(error)
    else:
        future.set_exception(value)


def _settle_all(settled: list[tuple[_Pending, Outcome]]) -> None:
    """Runs in the callers' loop."""
    for pending, outcome in settled:
        ok, value = outcome
        then = pending.then
        if ok and then is not None and not pending.future.done():
            try:  # first: what it wakes runs ahead of the caller at the next loop turn
                then(value)
            except Exception:  # its own caller's bug: the other callers still get theirs
                log.exception("a write's continuation failed")
        try:
            _settle(pending.future, outcome)
        except Exception:  # cannot happen; one caller's future never strands the others'
            log.exception("a write's result could not be delivered")
