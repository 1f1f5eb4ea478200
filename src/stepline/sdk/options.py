"""Flow-control and cancellation options for ``@app.function`` (Inngest's semantics).

Every option is validated when it is built: a bad value raises ``ConfigError`` naming the option
and the field; key expressions are compiled CEL (``ExpressionError`` with the position).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from stepline._text import clipped
from stepline.durations import parse_duration
from stepline.errors import ConfigError, DurationError, ExpressionError
from stepline.expressions import (
    Expression,
    compile_condition,
    compile_expression,
    match_shorthand,
)
from stepline.sdk._location import located
from stepline.sdk.event import event_name_problem

DurationLike = str | timedelta | int | float


def _seconds(owner: str, name: str, value: DurationLike | None, *, optional: bool = False) -> float:
    if value is None:
        if optional:
            return 0.0
        raise ConfigError(f"{owner}.{name} is required")
    try:
        seconds = parse_duration(value).total_seconds()
    except DurationError as exc:
        raise ConfigError(f"{owner}.{name}: {exc}") from exc
    if seconds <= 0:
        raise ConfigError(f"{owner}.{name} must be longer than zero, got {value!r}")
    return seconds


CONCURRENCY_LIMIT_MAX = 2**31 - 1


def _positive_int(owner: str, name: str, value: object, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{owner}.{name} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{owner}.{name} must be at most {maximum}, got {value}")
    return value


def _expression(
    owner: str, name: str, text: str | None, *, condition: bool = False, **kw: Any
) -> Expression | None:
    """Compile an option's expression; ``condition``: it must be able to give a boolean."""
    if text is None:
        return None
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{owner}.{name} must be a non-empty CEL expression, got {text!r}")
    try:
        return (compile_condition if condition else compile_expression)(text, **kw)
    except ExpressionError as exc:
        raise ExpressionError(
            exc.expression, f"{owner}.{name}: {exc.reason}", exc.position
        ) from exc
    except ConfigError as exc:
        raise ConfigError(f"{owner}.{name}: {exc}") from exc


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` of this function's runs execute at once: a run holds a slot while it
    executes its steps (its parallel steps share that one slot); sleeping and waiting runs hold
    none. With ``key`` the limit applies per key value (e.g. ``"event.data.userId"``);
    ``scope="app"`` shares the limit across the app's functions that use the same key."""

    limit: int
    key: str | None = None
    scope: Literal["fn", "app"] = "fn"
    key_expr: Expression | None = field(default=None, init=False, repr=False, compare=False)

    @located
    def __post_init__(self) -> None:
        # stored as a 32-bit integer (PostgreSQL's refused a larger one in the commit that
        # created the run: a send failed, a step.send_event or step.invoke failed its pass)
        _positive_int("Concurrency", "limit", self.limit, maximum=CONCURRENCY_LIMIT_MAX)
        if self.scope not in ("fn", "app"):
            raise ConfigError(f"Concurrency.scope must be 'fn' or 'app', got {self.scope!r}")
        object.__setattr__(self, "key_expr", _expression("Concurrency", "key", self.key))


@dataclass(frozen=True)
class Throttle:
    """Start at most ``limit`` runs per ``period`` per ``key`` value (GCRA, as Inngest): ``limit``
    runs may start at once after a quiet period, ``burst`` more on top of them (default 0); runs
    over the limit are delayed in order, never dropped."""

    limit: int
    period: DurationLike
    burst: int = 0
    key: str | None = None
    key_expr: Expression | None = field(default=None, init=False, repr=False, compare=False)
    period_seconds: float = field(default=0.0, init=False, compare=False)

    @located
    def __post_init__(self) -> None:
        _positive_int("Throttle", "limit", self.limit)
        if not isinstance(self.burst, int) or isinstance(self.burst, bool) or self.burst < 0:
            raise ConfigError(f"Throttle.burst must be a non-negative integer, got {self.burst!r}")
        seconds = _seconds("Throttle", "period", self.period)
        if seconds > 7 * 86400:
            raise ConfigError("Throttle.period must be at most 7 days")
        object.__setattr__(self, "period_seconds", seconds)
        object.__setattr__(self, "key_expr", _expression("Throttle", "key", self.key))


@dataclass(frozen=True)
class RateLimit:
    """Rate-limit runs per ``key`` value with GCRA, as Inngest's server does: ``limit // 10 + 1``
    runs may start at once (a burst of a tenth of the limit), then one more every
    ``period / limit``; events over the limit are skipped (recorded as skipped, see
    ``App.skipped``), not delayed. Decided per incoming event, before a debounce; batched
    functions are not rate-limited."""

    limit: int
    period: DurationLike
    key: str | None = None
    key_expr: Expression | None = field(default=None, init=False, repr=False, compare=False)
    period_seconds: float = field(default=0.0, init=False, compare=False)

    @located
    def __post_init__(self) -> None:
        _positive_int("RateLimit", "limit", self.limit)
        seconds = _seconds("RateLimit", "period", self.period)
        if seconds > 24 * 3600:
            raise ConfigError("RateLimit.period must be at most 24 hours")
        object.__setattr__(self, "period_seconds", seconds)
        object.__setattr__(self, "key_expr", _expression("RateLimit", "key", self.key))


@dataclass(frozen=True)
class Debounce:
    """Run once with the last event after ``period`` without a new one (per ``key`` value), and
    at most ``timeout`` after the first event."""

    period: DurationLike
    key: str | None = None
    timeout: DurationLike | None = None
    key_expr: Expression | None = field(default=None, init=False, repr=False, compare=False)
    period_seconds: float = field(default=0.0, init=False, compare=False)
    timeout_seconds: float | None = field(default=None, init=False, compare=False)

    @located
    def __post_init__(self) -> None:
        seconds = _seconds("Debounce", "period", self.period)
        if seconds > 7 * 86400:
            raise ConfigError("Debounce.period must be at most 7 days")
        object.__setattr__(self, "period_seconds", seconds)
        if self.timeout is not None:
            timeout = _seconds("Debounce", "timeout", self.timeout)
            if timeout < seconds:
                raise ConfigError("Debounce.timeout must be at least Debounce.period")
            object.__setattr__(self, "timeout_seconds", timeout)
        object.__setattr__(self, "key_expr", _expression("Debounce", "key", self.key))


@dataclass(frozen=True)
class BatchEvents:
    """Start one run for up to ``max_size`` events (in ``ctx.events``), or for what arrived
    within ``timeout`` of the first; per ``key`` value. With ``if_``, only the events that pass
    it are batched; the others start a run of their own at once."""

    max_size: int
    timeout: DurationLike
    key: str | None = None
    if_: str | None = None
    key_expr: Expression | None = field(default=None, init=False, repr=False, compare=False)
    if_expr: Expression | None = field(default=None, init=False, repr=False, compare=False)
    timeout_seconds: float = field(default=0.0, init=False, compare=False)

    @located
    def __post_init__(self) -> None:
        _positive_int("BatchEvents", "max_size", self.max_size, maximum=1000)
        seconds = _seconds("BatchEvents", "timeout", self.timeout)
        if seconds > 3600:
            raise ConfigError("BatchEvents.timeout must be at most 1 hour")
        object.__setattr__(self, "timeout_seconds", seconds)
        object.__setattr__(self, "key_expr", _expression("BatchEvents", "key", self.key))
        object.__setattr__(
            self, "if_expr", _expression("BatchEvents", "if_", self.if_, condition=True)
        )


@dataclass(frozen=True)
class Priority:
    """``run`` is a CEL expression giving seconds (-600…600) by which a run jumps ahead of (or
    falls behind) runs queued at the same time."""

    run: str
    run_expr: Expression | None = field(default=None, init=False, repr=False, compare=False)

    @located
    def __post_init__(self) -> None:
        object.__setattr__(self, "run_expr", _expression("Priority", "run", self.run))


@dataclass(frozen=True)
class Singleton:
    """At most one run at a time (per ``key`` value): ``mode="skip"`` drops new runs while one
    is active, ``mode="cancel"`` cancels the active run and starts the new one."""

    key: str | None = None
    mode: Literal["skip", "cancel"] = "skip"
    key_expr: Expression | None = field(default=None, init=False, repr=False, compare=False)

    @located
    def __post_init__(self) -> None:
        if self.mode not in ("skip", "cancel"):
            raise ConfigError(f"Singleton.mode must be 'skip' or 'cancel', got {self.mode!r}")
        object.__setattr__(self, "key_expr", _expression("Singleton", "key", self.key))


@dataclass(frozen=True)
class CancelOn:
    """Cancel the run when an ``event`` arrives that satisfies ``if_`` (``event`` is the run's
    triggering event, ``async`` the incoming one) or ``match`` (a field path equal on both),
    within ``timeout`` of the run's creation (default: for the run's whole life)."""

    event: str
    if_: str | None = None
    match: str | None = None
    timeout: DurationLike | None = None
    timeout_seconds: float | None = field(default=None, init=False, compare=False)

    @located
    def __post_init__(self) -> None:
        problem = event_name_problem(self.event)
        if problem is not None:  # no event can have it (check_event_name)
            shown = clipped(self.event) if isinstance(self.event, str) else self.event
            raise ConfigError(f"CancelOn.event {shown!r} {problem}")
        if self.if_ is not None and self.match is not None:
            raise ConfigError("CancelOn: pass if_= or match=, not both")
        try:
            text = self.expression
        except ConfigError as exc:
            raise ConfigError(f"CancelOn.match: {exc}") from exc
        name = "match" if self.match is not None else "if_"
        _expression("CancelOn", name, text, condition=True, variables=("event", "async"))
        if self.timeout is not None:
            seconds = _seconds("CancelOn", "timeout", self.timeout)
            object.__setattr__(self, "timeout_seconds", seconds)

    @property
    def expression(self) -> str | None:
        """The matching expression (``match`` expanded)."""
        return match_shorthand(self.match) if self.match is not None else self.if_


@dataclass(frozen=True)
class Timeouts:
    """Cancel a run not started within ``start`` of its event, or not finished within
    ``finish`` of its start."""

    start: DurationLike | None = None
    finish: DurationLike | None = None
    start_seconds: float | None = field(default=None, init=False, compare=False)
    finish_seconds: float | None = field(default=None, init=False, compare=False)

    @located
    def __post_init__(self) -> None:
        if self.start is None and self.finish is None:
            raise ConfigError("Timeouts needs start= or finish=")
        if self.start is not None:
            object.__setattr__(self, "start_seconds", _seconds("Timeouts", "start", self.start))
        if self.finish is not None:
            object.__setattr__(self, "finish_seconds", _seconds("Timeouts", "finish", self.finish))


@dataclass(frozen=True)
class Checkpointing:
    """Commit step results in groups instead of one by one: up to ``buffered_steps`` results,
    or what completed within ``max_interval``, are committed together (faster; a crash re-runs
    at most the steps not yet committed). ``max_runtime`` bounds one continuous pass: past it the
    run commits and goes back to the queue, and the next pass replays to where it was. A failing
    step, a sleep, a wait, an invoke or a sent event flushes the group first."""

    buffered_steps: int = 1
    max_interval: DurationLike | None = None
    max_runtime: DurationLike | None = None
    max_interval_seconds: float | None = field(default=None, init=False, compare=False)
    max_runtime_seconds: float | None = field(default=None, init=False, compare=False)

    @located
    def __post_init__(self) -> None:
        _positive_int("Checkpointing", "buffered_steps", self.buffered_steps, maximum=1000)
        if self.max_interval is not None:
            seconds = _seconds("Checkpointing", "max_interval", self.max_interval)
            object.__setattr__(self, "max_interval_seconds", seconds)
        if self.max_runtime is not None:
            seconds = _seconds("Checkpointing", "max_runtime", self.max_runtime)
            object.__setattr__(self, "max_runtime_seconds", seconds)

    @property
    def buffers(self) -> bool:
        """Whether step results may wait in memory before their commit."""
        return self.buffered_steps > 1 or self.max_interval_seconds is not None
