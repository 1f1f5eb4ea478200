"""A function definition: its id, triggers, retry policy, flow control and body."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stepline.errors import ConfigError
from stepline.expressions import Expression
from stepline.sdk.options import (
    BatchEvents,
    CancelOn,
    Checkpointing,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    _expression,
)
from stepline.sdk.triggers import TriggerCron, TriggerEvent

Handler = Callable[[Any], Any]  # (ctx: Context) -> result, or (ctx: SyncContext) for def
Trigger = TriggerEvent | TriggerCron

MAX_TRIGGERS = 10
MAX_CONCURRENCY_CONSTRAINTS = 2
MAX_CANCELLATIONS = 5  # Inngest: pkg/consts/consts.go MaxCancellations
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")


@dataclass(frozen=True)
class FunctionOptions:
    """Flow control and cancellation of a function (all optional)."""

    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch_events: BatchEvents | None = None
    priority: Priority | None = None
    singleton: Singleton | None = None
    idempotency: Expression | None = None
    cancel_on: tuple[CancelOn, ...] = ()
    timeouts: Timeouts | None = None
    checkpointing: Checkpointing | None = None


@dataclass(frozen=True)
class FunctionDef:
    """A registered function. Pass it to ``step.invoke(function=...)``; call ``.handler`` to test
    the body directly."""

    id: str
    handler: Handler
    triggers: tuple[TriggerEvent, ...]
    retries: int
    is_async: bool
    crons: tuple[TriggerCron, ...] = ()
    options: FunctionOptions = FunctionOptions()
    on_failure_of: str | None = None
    driver: str = "python"  # who drives its runs: "python" runs ``handler`` in this process
    served_by: tuple[str, str] | None = None  # an SDK app's function: (app name, function URL)

    @property
    def name(self) -> str:
        """The function's id (Inngest calls it the slug)."""
        return self.id


def _check(name: str, value: object, kind: type | tuple[type, ...], fn_id: str) -> None:
    if value is not None and not isinstance(value, kind):
        expected = (
            kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        )
        raise ConfigError(
            f"function {fn_id!r}: {name} must be a {expected}, got {type(value).__name__}"
        )


def _concurrency(fn_id: str, value: object) -> tuple[Concurrency, ...]:
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        return (Concurrency(limit=value),)
    items = [value] if isinstance(value, Concurrency) else value
    if not isinstance(items, list | tuple) or not all(isinstance(c, Concurrency) for c in items):
        raise ConfigError(
            f"function {fn_id!r}: concurrency must be an int, a Concurrency or a list of them"
        )
    if len(items) > MAX_CONCURRENCY_CONSTRAINTS:
        raise ConfigError(
            f"function {fn_id!r}: concurrency takes at most {MAX_CONCURRENCY_CONSTRAINTS} "
            f"constraints, got {len(items)}"
        )
    return tuple(items)


def build_function(
    *,
    id: str,
    handler: Handler,
    trigger: Trigger | None,
    triggers: Sequence[Trigger] | None,
    retries: int,
    on_failure_of: str | None = None,
    concurrency: object = None,
    throttle: Throttle | None = None,
    rate_limit: RateLimit | None = None,
    debounce: Debounce | None = None,
    batch_events: BatchEvents | None = None,
    priority: Priority | None = None,
    singleton: Singleton | None = None,
    idempotency: str | None = None,
    cancel_on: CancelOn | Sequence[CancelOn] | None = None,
    timeouts: Timeouts | None = None,
    checkpointing: Checkpointing | None = None,
    driver: str = "python",
) -> FunctionDef:
    """Validate options and build a FunctionDef; every problem raises ``ConfigError`` naming
    the function and the option."""
    if not isinstance(id, str) or not _ID.match(id):
        raise ConfigError(
            f"function id {id!r} is invalid: use 1-128 letters, digits and _ . : / - "
            "(starting with a letter or digit)"
        )
    if trigger is not None and triggers is not None:
        raise ConfigError(f"function {id!r}: pass either trigger= or triggers=, not both")
    found: list[Trigger] = (
        [trigger] if trigger is not None else list(triggers) if triggers is not None else []
    )
    if len(found) > MAX_TRIGGERS:
        raise ConfigError(f"function {id!r}: at most {MAX_TRIGGERS} triggers, got {len(found)}")
    for item in found:
        if not isinstance(item, TriggerEvent | TriggerCron):
            raise ConfigError(
                f"function {id!r}: triggers must be TriggerEvent or TriggerCron, got {item!r}"
            )
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
        raise ConfigError(f"function {id!r}: retries must be an integer from 0 to 20")
    if not callable(handler):
        raise ConfigError(f"function {id!r}: the decorated object is not callable")
    _check("throttle", throttle, Throttle, id)
    _check("rate_limit", rate_limit, RateLimit, id)
    _check("debounce", debounce, Debounce, id)
    _check("batch_events", batch_events, BatchEvents, id)
    _check("priority", priority, Priority, id)
    _check("singleton", singleton, Singleton, id)
    _check("timeouts", timeouts, Timeouts, id)
    _check("checkpointing", checkpointing, Checkpointing, id)
    cancels = (cancel_on,) if isinstance(cancel_on, CancelOn) else tuple(cancel_on or ())
    for cancel in cancels:
        _check("cancel_on", cancel, CancelOn, id)
    if len(cancels) > MAX_CANCELLATIONS:  # Inngest: pkg/consts/consts.go MaxCancellations
        raise ConfigError(
            f"function {id!r}: at most {MAX_CANCELLATIONS} cancel_on, got {len(cancels)}"
        )
    if batch_events is not None and debounce is not None:
        raise ConfigError(f"function {id!r}: batch_events and debounce cannot be combined")
    if batch_events is not None and (idempotency is not None or singleton is not None):
        raise ConfigError(
            f"function {id!r}: batch_events cannot be combined with idempotency or singleton"
        )
    options = FunctionOptions(
        concurrency=_concurrency(id, concurrency),
        throttle=throttle,
        rate_limit=rate_limit,
        debounce=debounce,
        batch_events=batch_events,
        priority=priority,
        singleton=singleton,
        idempotency=_expression(f"function {id!r}", "idempotency", idempotency),
        cancel_on=cancels,
        timeouts=timeouts,
        checkpointing=checkpointing,
    )
    return FunctionDef(
        id=id,
        handler=handler,
        triggers=tuple(t for t in found if isinstance(t, TriggerEvent)),
        retries=retries,
        is_async=inspect.iscoroutinefunction(handler),
        crons=tuple(t for t in found if isinstance(t, TriggerCron)),
        options=options,
        on_failure_of=on_failure_of,
        driver=driver,
    )


def ignored_options(fn: FunctionDef) -> list[str]:
    """What a definition sets that its runs never use, one message each: the ``cancel_on``
    and ``timeouts.start`` of a ``batch_events`` function without ``if_``. A batch's run gets
    neither, as in Inngest (its executor, ``Schedule``, creates cancellations and the start
    timeout only for a run that is not a batch's); with ``if_``, the runs of the events it
    rejects (each alone, not a batch's) get them. Stepline's own definitions say so at
    registration (``App.function`` warns), an SDK app's sync logs it."""
    options = fn.options
    if options.batch_events is None or options.batch_events.if_ is not None:
        return []
    ignored = []
    if options.cancel_on:
        names = ", ".join(repr(c.event) for c in options.cancel_on)
        ignored.append(
            f"function {fn.id!r}: cancel_on ({names}) is ignored: a batch_events function's "
            "runs are never cancelled by an event, as in Inngest (cancelling a run by hand "
            "still works)"
        )
    if options.timeouts is not None and options.timeouts.start is not None:
        ignored.append(
            f"function {fn.id!r}: timeouts.start is ignored: a batch_events function's run "
            "starts when its batch fires (as in Inngest); timeouts.finish applies"
        )
    return ignored
