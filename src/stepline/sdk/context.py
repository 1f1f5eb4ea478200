"""``Context``: what a function receives, and its replay-aware logger."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from stepline.sdk.event import Event
from stepline.sdk.step import STEP_ATTEMPT as STEP_ATTEMPT  # where the engine sets it
from stepline.sdk.step import Step, SyncStep


class ReplayAwareLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A stdlib logger adapter that drops records while the run replays memoized code, so a log
    line outside any step appears once per run, not once per pass. Adds ``run_id`` and
    ``function_id`` to every record's ``extra``."""

    def __init__(
        self, logger: logging.Logger, extra: dict[str, Any], replaying: Callable[[], bool]
    ) -> None:
        super().__init__(logger, extra)
        self._replaying = replaying

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._replaying():
            return
        super().log(level, msg, *args, **kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class _BaseContext:
    def __init__(
        self,
        *,
        event: Event,
        events: list[Event],
        run_id: str,
        function_id: str,
        logger: ReplayAwareLogger,
        attempt: int,
    ) -> None:
        self.event = event
        self.events = events
        self.run_id = run_id
        self.function_id = function_id
        self.logger = logger
        self._attempt = attempt

    @property
    def attempt(self) -> int:
        """The 0-based attempt of the step body now executing (each of several parallel steps
        sees its own); outside step bodies, the attempt of the step this pass retries, or of the
        function itself."""
        current = STEP_ATTEMPT.get()
        return self._attempt if current is None else current

    @attempt.setter
    def attempt(self, value: int) -> None:
        self._attempt = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(function_id={self.function_id!r}, run_id={self.run_id!r})"


class Context(_BaseContext):
    """What an ``async def`` function receives: its view of its run.

    ``event`` is the triggering event (the first of ``events`` for batches), ``run_id`` and
    ``function_id`` identify the run, ``attempt`` is the 0-based attempt of the step now
    executing (or of the function itself), ``step`` the step API (awaitable methods),
    ``logger`` the replay-aware logger.
    """

    def __init__(self, *, step: Step, **fields: Any) -> None:
        super().__init__(**fields)
        self.step = step


class SyncContext(_BaseContext):
    """What a plain ``def`` function receives: as ``Context``, with blocking step methods
    (``ctx.step.run(...)`` returns the result)."""

    def __init__(self, *, step: SyncStep, **fields: Any) -> None:
        super().__init__(**fields)
        self.step = step
