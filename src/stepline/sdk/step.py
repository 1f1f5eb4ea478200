"""``ctx.step``: the durable steps a function is made of.

Every method takes a step id. Ids may repeat: the second ``"fetch"`` in a run is ``"fetch:1"``.
A step's result is persisted before the function sees it; when the run is re-entered (after a
crash, a retry, a sleep or a wait) the stored result is returned and the step body does not run
again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, overload

from stepline._text import text_problem
from stepline.durations import parse_duration, parse_instant
from stepline.errors import ConfigError, EventError, NonRetriableError
from stepline.expressions import compile_condition, match_shorthand
from stepline.sdk.event import Event, check_event_name, check_event_version
from stepline.sdk.function import FunctionDef
from stepline.serde import dumps

T = TypeVar("T")
DurationLike = str | timedelta | int | float
InstantLike = datetime | str | int | float


class StepDriver(Protocol):
    """What the engine provides to ``Step`` (one per pass)."""

    def now(self) -> float: ...

    async def step_run(
        self, step_id: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...

    async def step_sleep_until(self, step_id: str, due_at: float) -> None: ...

    async def step_wait(
        self, step_id: str, event: str, expression: str | None, timeout: float
    ) -> Event | None: ...

    async def step_invoke(
        self,
        step_id: str,
        function_id: str,
        data: dict[str, Any],
        user: dict[str, Any],
        timeout: float | None = None,
        v: str | None = None,
    ) -> Any: ...

    async def step_send(self, step_id: str, events: list[Event]) -> list[str]: ...


# the attempt of the step whose body runs in this context (``ctx.attempt``), None outside bodies
STEP_ATTEMPT: ContextVar[int | None] = ContextVar("stepline_step_attempt", default=None)


# step ids found storable (a function's ids repeat at every step call of every run: each is
# looked at once); bounded, for an app that makes a new id per call
_CHECKED_IDS: set[str] = set()
_MOST_CHECKED_IDS = 4096


def _check_id(step_id: str) -> None:
    if type(step_id) is not str or step_id not in _CHECKED_IDS:
        if not isinstance(step_id, str) or not step_id:
            raise ConfigError(f"step id must be a non-empty string, got {step_id!r}")
        problem = text_problem(step_id)
        if problem is not None:  # stored as text (the same on every store)
            raise ConfigError(f"step id {step_id!r} {problem[0]}")
        if type(step_id) is str and len(_CHECKED_IDS) < _MOST_CHECKED_IDS:
            _CHECKED_IDS.add(step_id)
    if STEP_ATTEMPT.get() is not None:  # a body's own context, and the tasks it starts
        # the pass waits for that body, so a step it waits for would never be run: refused, as
        # Inngest's SDKs refuse nested steps; not retried, as the code would do it again
        raise NonRetriableError(
            f"step {step_id!r} was called inside the body of another step: steps cannot be "
            "nested; call it from the function itself, after that step"
        )


class Step:
    """The step API for ``async def`` functions."""

    def __init__(self, driver: StepDriver) -> None:
        self._driver = driver

    # Overloads for a coroutine function (or a callable returning a coroutine), one returning
    # an asyncio future (a task), and anything else. Not ``Callable[..., Awaitable[T]]``: an
    # ``async def`` matches it and ``Callable[..., T]`` with different parameter types, which
    # mypy counts as ambiguous when the function's signature mentions ``Any`` (``-> dict[str,
    # Any]``): the result was ``Any``. With ``Coroutine[Any, Any, T]`` both matches infer the
    # same parameter type, which is no ambiguity. Nor one union parameter: with
    # ``Callable[..., Awaitable[T]] | Callable[..., T]`` mypy inferred ``Never`` for an
    # ``async def``. A function returning a future whose type mentions ``Any`` still gets
    # ``Any`` (it matches the last overload with another parameter type); another awaitable a
    # plain function returns is awaited too, typed as returned.
    @overload
    async def run(
        self, step_id: str, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
    ) -> T: ...

    @overload
    async def run(
        self, step_id: str, fn: Callable[..., asyncio.Future[T]], *args: Any, **kwargs: Any
    ) -> T: ...

    @overload
    async def run(self, step_id: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    async def run(
        self,
        step_id: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` once, retried on error per the function's policy.

        Returns its result as JSON round-trips it (what a replay will return too). Raises
        ``StepError`` when the step has failed for good. Sync ``fn`` runs in a worker thread.
        """
        _check_id(step_id)
        if not callable(fn):
            raise ConfigError(f"step {step_id!r}: fn must be callable")
        result: T = await self._driver.step_run(step_id, fn, args, kwargs)
        return result

    async def sleep(self, step_id: str, duration: DurationLike) -> None:
        """Pause the run for ``duration`` ("30s", "1h30m", timedelta, seconds). A sleeping run
        holds no worker, memory or slot."""
        _check_id(step_id)
        seconds = parse_duration(duration).total_seconds()
        await self._driver.step_sleep_until(step_id, self._driver.now() + seconds)

    async def sleep_until(self, step_id: str, until: InstantLike) -> None:
        """Pause the run until ``until`` (datetime, ISO-8601 string, epoch seconds); a time in
        the past returns at once."""
        _check_id(step_id)
        await self._driver.step_sleep_until(step_id, parse_instant(until).timestamp())

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: DurationLike,
        if_: str | None = None,
        match: str | None = None,
    ) -> Event | None:
        """Pause until an event named ``event`` arrives (after this wait began) that satisfies
        ``if_`` (CEL: ``event`` is this run's triggering event, ``async`` the candidate) or
        ``match`` (a field path equal on both), or ``timeout`` passes (returns None)."""
        _check_id(step_id)
        try:  # a name an event can have (no NUL: stored as text, see check_event_name)
            check_event_name(event)
        except EventError as exc:
            raise ConfigError(f"step {step_id!r}: {exc}") from None
        if if_ is not None and match is not None:
            raise ConfigError(f"step {step_id!r}: pass if_= or match=, not both")
        expression = match_shorthand(match) if match is not None else if_
        if expression is not None:
            compile_condition(expression, variables=("event", "async"))
        seconds = parse_duration(timeout).total_seconds()
        return await self._driver.step_wait(step_id, event, expression, seconds)

    async def invoke(
        self,
        step_id: str,
        *,
        function: FunctionDef | str,
        data: dict[str, Any] | None = None,
        user: dict[str, Any] | None = None,
        timeout: DurationLike | None = None,
        v: str | None = None,
    ) -> Any:
        """Start ``function`` with ``data`` as its event data and return its result; its
        failure raises ``StepError`` here. With ``timeout`` ("1h", timedelta, seconds), a child
        that has not finished in time fails this step with ``StepError``
        (``error_name="InngestInvokeTimeoutError"``, "Timed out waiting for invoked function to
        complete", as in Inngest); the child keeps running unless cancelled. ``v`` becomes the
        invoked event's ``v`` (the child's ``ctx.event.v``), as the Inngest SDKs' ``v``;
        ``EventError`` unless a string."""
        _check_id(step_id)
        function_id = function.id if isinstance(function, FunctionDef) else function
        if not isinstance(function_id, str):
            raise ConfigError(f"step {step_id!r}: function must be a FunctionDef or an id")
        # values JSON cannot give back are refused here, in the caller's code (serde's rule)
        dumps(data, f"data of step.invoke {step_id!r}")
        dumps(user, f"user of step.invoke {step_id!r}")
        if v is not None:
            check_event_version("inngest/function.invoked", v)  # the event it makes
        seconds = None if timeout is None else parse_duration(timeout).total_seconds()
        return await self._driver.step_invoke(
            step_id, function_id, data or {}, user or {}, seconds, v or None
        )

    async def send_event(self, step_id: str, events: Event | Sequence[Event]) -> list[str]:
        """Send events once (memoized); returns their ids. The events, and the runs they start,
        are committed together with the step."""
        _check_id(step_id)
        batch = [events] if isinstance(events, Event) else list(events)
        for event in batch:  # values JSON cannot give back are refused here (serde's rule)
            if isinstance(event, Event):
                where = f"event {event.name!r} in step.send_event {step_id!r}"
                dumps(event.data, f"data of {where}")
                dumps(event.user, f"user of {where}")
        return await self._driver.step_send(step_id, batch)

    async def parallel(self, *steps: tuple[str, Callable[[], Any]]) -> tuple[Any, ...]:
        """Run ``(step_id, fn)`` pairs concurrently; results in the order given."""
        results = await asyncio.gather(*(self.run(step_id, fn) for step_id, fn in steps))
        return tuple(results)


class SyncStep:
    """The step API for plain ``def`` functions: the same names, blocking."""

    def __init__(self, step: Step, loop: asyncio.AbstractEventLoop) -> None:
        self._step = step
        self._loop = loop

    def _call(self, coro: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result()

    @overload
    def run(
        self, step_id: str, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
    ) -> T: ...

    @overload
    def run(
        self, step_id: str, fn: Callable[..., asyncio.Future[T]], *args: Any, **kwargs: Any
    ) -> T: ...

    @overload
    def run(self, step_id: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def run(self, step_id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """See ``Step.run`` (the same overloads)."""
        return self._call(self._step.run(step_id, fn, *args, **kwargs))

    def sleep(self, step_id: str, duration: DurationLike) -> None:
        """See ``Step.sleep``."""
        self._call(self._step.sleep(step_id, duration))

    def sleep_until(self, step_id: str, until: InstantLike) -> None:
        """See ``Step.sleep_until``."""
        self._call(self._step.sleep_until(step_id, until))

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: DurationLike,
        if_: str | None = None,
        match: str | None = None,
    ) -> Event | None:
        """See ``Step.wait_for_event``."""
        return self._call(
            self._step.wait_for_event(step_id, event=event, timeout=timeout, if_=if_, match=match)
        )

    def invoke(
        self,
        step_id: str,
        *,
        function: FunctionDef | str,
        data: dict[str, Any] | None = None,
        user: dict[str, Any] | None = None,
        timeout: DurationLike | None = None,
        v: str | None = None,
    ) -> Any:
        """See ``Step.invoke``."""
        return self._call(
            self._step.invoke(
                step_id, function=function, data=data, user=user, timeout=timeout, v=v
            )
        )

    def send_event(self, step_id: str, events: Event | Sequence[Event]) -> list[str]:
        """See ``Step.send_event``."""
        return self._call(self._step.send_event(step_id, events))

    def parallel(self, *steps: tuple[str, Callable[[], Any]]) -> tuple[Any, ...]:
        """See ``Step.parallel``."""
        return self._call(self._step.parallel(*steps))
