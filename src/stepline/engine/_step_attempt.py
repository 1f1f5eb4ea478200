"""One attempt of a ``run`` step: its body called (a coroutine function on the loop, anything
else in a step thread, an awaitable it returns awaited), its result serialized and checked
against the output limit, its error read as the retry policy says (``NonRetriableError`` and
an unserializable result fail the step; ``RetryAfterError`` retries at the time it names;
another error after the function's backoff), while it has retries left."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import Callable
from functools import partial
from inspect import CO_COROUTINE
from types import FunctionType
from typing import Any

from stepline.engine._ops import _Op, _Outcome
from stepline.engine.engine import Engine
from stepline.engine.retry import retry_after_time
from stepline.errors import (
    LimitExceededError,
    NonRetriableError,
    RetryAfterError,
    SerializationError,
)
from stepline.sdk.context import STEP_ATTEMPT
from stepline.serde import dumps, dumps_if_exact


def _is_coroutine_function(fn: Any) -> bool:
    """``inspect.iscoroutinefunction(fn)``, read straight off a plain function's code (what
    inspect ends up reading, after unwrapping methods and partials: ~45 bytecodes a step)."""
    if type(fn) is FunctionType:
        return bool(fn.__code__.co_flags & CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


async def attempt_step(
    engine: Engine, loop: asyncio.AbstractEventLoop, retries: int, op: _Op, record: bool = True
) -> _Outcome:
    """Execute one attempt of ``op`` (a ``run`` step of a function with ``retries``); never
    raises: the outcome holds the result's JSON or the error, and when to retry. ``record``:
    the attempt counted in the engine's metrics here (else by the caller: ``recorded``)."""
    fn = engine.step_mocks.get(op.step_id, op.fn)
    assert fn is not None
    attempt_token = STEP_ATTEMPT.set(op.attempts)  # ctx.attempt inside this step body
    started = engine.clock.now()
    t0 = time.perf_counter()
    outcome = _Outcome(started_at=started)
    retried: Exception | None = None  # an error retried while retries are left
    try:
        if _is_coroutine_function(fn):
            value = await fn(*op.args, **op.kwargs)
        else:
            call = partial(contextvars.copy_context().run, fn, *op.args, **op.kwargs)
            value = await loop.run_in_executor(engine.step_threads, call)
            if inspect.isawaitable(value):
                value = await value
        output = dumps_if_exact(value)  # the text naming the step made only for an error
        outcome.output_json = (
            dumps(value, f"output of step {op.key!r}") if output is None else output
        )
        limit = engine.limits.max_step_output_bytes
        if len(outcome.output_json) > limit:
            outcome.error = LimitExceededError(
                "step_output",
                f"output of step {op.key!r} is {len(outcome.output_json)} bytes, over the "
                f"limit of {limit} bytes",
            )
    except (NonRetriableError, SerializationError) as exc:
        outcome.error = exc
    except Exception as exc:  # RetryAfterError's time, or the backoff's
        outcome.error = retried = exc
    outcome.duration = time.perf_counter() - t0
    # one reading of the clock: the retry is due its delay after the failure its history line
    # shows (two readings were up to a GIL switch apart: a retry 4 ms early by its history)
    now = outcome.ended_at = engine.clock.now()
    if retried is not None and op.attempts < retries:
        if isinstance(retried, RetryAfterError):
            outcome.retry_at = retry_after_time(retried, now, engine.backoff, op.attempts)
        else:
            outcome.retry_at = now + engine.backoff.delay(op.attempts)
    if record:
        engine.metrics.step_attempt(outcome.duration, outcome.error is None)
    STEP_ATTEMPT.reset(attempt_token)
    return outcome


def recorded(engine: Engine, outcome: _Outcome) -> Callable[[], None]:
    """The metrics' count of the attempt ``outcome`` ended, to be made later (``attempt_step``
    with ``record=False``): while its commit is in flight."""
    return partial(engine.metrics.step_attempt, outcome.duration, outcome.error is None)
