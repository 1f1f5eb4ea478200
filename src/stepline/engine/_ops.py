"""What a pass works with: the control-flow signals, step keys, operations and outcomes."""

from __future__ import annotations

import asyncio
import hashlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from stepline._text import bounded, escaped_surrogates
from stepline.sdk.event import Event


class Suspended(BaseException):
    """Raised into a blocked step call when the run suspends; never catch it."""


class _Abort(BaseException):
    """Raised into the function when the run must fail at once (a limit was breached)."""


_PRUNED = 64  # the step calls' futures kept before the resolved ones are dropped (at least)


class StepGate:
    """The futures a pass hands to its function's step calls, and their release.

    Every step call of the function awaits a future made here. ``refuse`` makes every later step
    call raise at once; ``release`` ends every future still pending. Once a pass has done both
    (``close``), nothing the function does (a step awaited in ``finally:`` or after catching
    ``BaseException``) can leave one of its step calls, or a sync function's thread, waiting.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # the step calls' futures; the resolved ones are dropped now and then (_PRUNED), not
        # each by a done callback (a loop callback scheduled for every step)
        self._pending: set[asyncio.Future[Any]] = set()
        self._prune_at = _PRUNED
        self._refusal: type[BaseException] | None = None

    @property
    def refusing(self) -> bool:
        """True once new step calls are refused."""
        return self._refusal is not None

    def check(self) -> None:
        """Raise the refusal signal if new step calls are refused."""
        if self._refusal is not None:
            raise self._refusal()

    def future(self) -> asyncio.Future[Any]:
        """A future for a step call (raises the refusal signal once refused)."""
        self.check()
        future: asyncio.Future[Any] = self._loop.create_future()
        pending = self._pending
        if len(pending) >= self._prune_at:
            pending = self._pending = {f for f in pending if not f.done()}
            self._prune_at = max(_PRUNED, 2 * len(pending))
        pending.add(future)
        return future

    def holds(self, future: object) -> bool:
        """True if ``future`` is a step call's, not resolved yet."""
        return isinstance(future, asyncio.Future) and future in self._pending and not future.done()

    def refuse(self, signal: type[BaseException] = Suspended) -> None:
        """Make every later step call raise ``signal`` (the first refusal wins)."""
        if self._refusal is None:
            self._refusal = signal

    def release(self, signal: type[BaseException] = Suspended) -> None:
        """Raise ``signal`` into every step call still waiting."""
        for future in list(self._pending):
            if not future.done():
                future.set_exception(signal())
                future.exception()  # retrieved: nobody may be left awaiting it

    def close(self, signal: type[BaseException] = Suspended) -> None:
        """``refuse`` then ``release``: the pass lets go of its function."""
        self.refuse(signal)
        self.release(signal)


@lru_cache(maxsize=8192)
def step_hash(key: str) -> str:
    """The memo key of a step occurrence (``"fetch"``, ``"fetch:1"``…).

    Cached: every pass of a run hashes again the keys of all the steps before it, and the first
    ``hashlib.sha1`` of a pass cost ~25 us (OpenSSL 3 fetching its digest, measured by pglat);
    the keys are few per function, so the cache stays small.
    """
    return hashlib.sha1(key.encode()).hexdigest()


# the longest error message kept (an HTTP client's error may carry a whole response body: it
# was stored whole in the step's error, the run's and every attempt's history row)
MAX_ERROR_MESSAGE_CHARS = 16_384
MAX_ERROR_STACK_CHARS = 8_000  # an error's stack: its last characters (where it was raised)


def error_dict(exc: BaseException) -> dict[str, Any]:
    """How an error is stored: name, message (its first ``MAX_ERROR_MESSAGE_CHARS``
    characters, saying how many more were cut), stack (its last ``MAX_ERROR_STACK_CHARS``
    characters); each lone surrogate in them written as its escape
    (``_text.escaped_surrogates``: else SQLite and PostgreSQL could not serialize it, and a step
    that raised it failed the whole run with a ``SerializationError`` in its place)."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "name": type(exc).__name__,
        "message": escaped_surrogates(bounded(str(exc), MAX_ERROR_MESSAGE_CHARS)),
        "stack": escaped_surrogates(stack[-MAX_ERROR_STACK_CHARS:]),
    }


@dataclass(eq=False)
class _Op:
    kind: str
    step_id: str
    key: str
    hash: str
    future: asyncio.Future[Any]
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    due_at: float | None = None
    event_name: str | None = None
    expression: str | None = None
    function_id: str | None = None
    data: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    v: str | None = None  # an invoke's event's
    events: list[Event] | None = None


@dataclass
class _Outcome:
    output_json: bytes | None = None
    error: BaseException | None = None
    retry_at: float | None = None
    final: bool = False
    started_at: float = 0.0
    duration: float = 0.0
    ended_at: float = 0.0
