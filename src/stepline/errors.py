"""Stepline's exceptions: one root, layered by how a caller recovers.

``SteplineError``
    ``ConfigError``          bad definition-time input (expressions, cron, durations, options)
        ``ExpressionError``  an invalid CEL expression (carries the text and the position)
        ``DurationError``    an invalid duration or time
        ``CronError``        an invalid cron string or timezone
    ``EventError``           an event rejected at the edge (bad name, payload not JSON, too large)
    ``LimitExceededError``   a hard limit breached by a run (steps, output size, run state)
    ``SerializationError``   a value that cannot be stored as JSON
    ``StoreError``           the store failed: read-only, corrupt, cannot be opened; retrying
                             will not help until someone fixes the database (names it)
        ``StoreUnavailable`` the store cannot be written or read for now (disk full, I/O error,
                             locked past the busy timeout, connection lost): retry later
            ``ClockSkewError``  this machine's clock is too far from the database's (PostgreSQL)
    ``StepError``            raised inside a function when one of its steps failed for good
    ``RunFailedError``       raised to a caller waiting for a run that failed
    ``NonRetriableError``    raised by user code: fail now, no retries
    ``RetryAfterError``      raised by user code: retry at a given time
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


class SteplineError(Exception):
    """The root of every error Stepline raises."""


class ConfigError(SteplineError, ValueError):
    """Invalid input at definition time (a function's options, an expression, a cron string).

    Raised while a run executes (a bad duration given to ``step.sleep``), it fails the run at
    once: no retry would fix it."""


class ExpressionError(ConfigError):
    """An invalid CEL expression.

    ``expression`` is the text, ``position`` the 0-based column of the problem when known, and
    ``reason`` what the CEL compiler said.
    """

    def __init__(self, expression: str, reason: str, position: int | None = None) -> None:
        self.expression = expression
        self.reason = reason
        self.position = position
        where = f" at column {position + 1}" if position is not None else ""
        super().__init__(f"invalid expression {expression!r}{where}: {reason}")


class DurationError(ConfigError):
    """An invalid duration (``"1h30m"``, ``timedelta``, seconds) or point in time."""


class CronError(ConfigError):
    """An invalid cron expression or timezone."""


class EventError(SteplineError, ValueError):
    """An event rejected when sent: bad name, data that is not JSON, or over the size limit."""


class LimitExceededError(SteplineError):
    """A run breached a hard limit; the run fails with this error, nothing committed is lost.

    ``limit`` names the limit (``"steps"``, ``"step_output"``, ``"run_state"``).
    """

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(message)


class SerializationError(SteplineError, TypeError):
    """A value (a step output, a function result, event data) that JSON cannot give back as it
    is: ``what`` names the value ("output of step 'fetch'"), ``path`` the offending part inside
    it (``$.items[2].at``), ``type_name`` its type and ``reason`` what to store instead."""

    def __init__(self, what: str, path: str, type_name: str, reason: str) -> None:
        self.what = what
        self.path = path
        self.type_name = type_name
        self.reason = reason
        super().__init__(f"{what} is not JSON-serializable: {type_name} at {path} ({reason})")


class StoreError(SteplineError):
    """The store failed and will not recover by itself: the database is read-only, corrupt,
    cannot be opened, or is not a database. ``reason`` is the backend's own message (e.g.
    ``"attempt to write a readonly database"``), ``database`` names the database (a path or
    URL; empty when unknown). The operation that raised it was not acknowledged. Workers stop
    on it (see ``StoreUnavailable`` for the errors they wait out, ``StoreRefusedValue`` for a
    value of one run's pass)."""

    def __init__(self, reason: str, database: str = "") -> None:
        self.reason = reason
        self.database = database
        where = f" (database {database})" if database else ""
        super().__init__(f"the store failed: {reason}{where}")


class StoreUnavailable(StoreError):
    """The store cannot be used for now but may recover by itself: the disk is full, an I/O
    error, the database locked past its busy timeout, a dropped database connection.

    The operation that raised it was not acknowledged. It was rolled back, except when the
    failure hit the commit itself, whose outcome a database cannot always report (a lost
    connection during ``COMMIT``): to make a retried ``send`` safe, give events an ``id``, which
    deduplicates them. Workers never stop on it: they back off and resume once the store
    recovers. ``reason`` is the backend's own message (e.g. ``"database or disk is full"``),
    ``database`` names the database (a path or URL; empty when unknown), as for ``StoreError``.
    """

    def __init__(self, reason: str, database: str = "") -> None:
        self.reason = reason
        self.database = database
        where = f" (database {database})" if database else ""
        SteplineError.__init__(self, f"the store is unavailable: {reason}{where}; retry later")


class ClockSkewError(StoreUnavailable):
    """This machine's clock is further from the database server's than the store allows
    (PostgreSQL: ``max_clock_skew``, 1 s by default), measured while the process runs (a clock
    stepped by NTP, a virtual machine resumed): lease expiries and due times written by
    different machines would disagree. ``send`` raises it (nothing is written), as do
    ``replay_run``, ``cancel_run``, ``cancel_runs``, ``remove_app`` and an Inngest SDK app's
    sync (``SdkApps.register``), while the process last found the clock beyond the bound;
    retry once the clocks agree
    (``StoreUnavailable``: a retry may succeed). ``skew`` is the measured database clock minus
    this machine's, in seconds."""

    def __init__(self, refusal: str, skew: float, database: str = "") -> None:
        super().__init__(refusal, database)
        self.skew = skew


class StoreRefusedValue(StoreError):
    """The store refused a value it was asked to write, for good (PostgreSQL: a data exception,
    SQLSTATE class 22, e.g. an integer out of range): the data's fault, not the store's. The
    operation was rolled back. A pass's commit refused so is a failed attempt of its run
    (retried after the backoff, failed once its attempts are spent); workers go on."""

    def __init__(self, reason: str, database: str = "") -> None:
        self.reason = reason
        self.database = database
        where = f" (database {database})" if database else ""
        SteplineError.__init__(self, f"the store refused a value: {reason}{where}")


class StepError(SteplineError):
    """Raised inside a function when a step failed for good (retries exhausted or non-retriable).

    Catch it to fall back (the seed's error-recovery pattern). ``step_id`` is the step's id,
    ``error_name`` and ``error_message`` describe the last error the step raised.
    """

    def __init__(self, step_id: str, error_name: str, error_message: str) -> None:
        self.step_id = step_id
        self.error_name = error_name
        self.error_message = error_message
        super().__init__(f"step {step_id!r} failed: {error_name}: {error_message}")


class RunFailedError(SteplineError):
    """Raised to a caller awaiting a run's result when the run failed or was cancelled."""

    def __init__(self, run_id: str, status: str, error: dict[str, Any] | None) -> None:
        self.run_id = run_id
        self.status = status
        self.error = error
        detail = f": {error.get('name')}: {error.get('message')}" if error else ""
        super().__init__(f"run {run_id} ended {status}{detail}")


class NonRetriableError(SteplineError):
    """Raise from a step or a function to fail at once, without further retries."""


class RetryAfterError(SteplineError):
    """Raise to retry at a given time: ``retry_after`` is a ``timedelta``, a number of seconds,
    a ``datetime``, or a string: a duration (``"30s"``, ``"1m"``), whole seconds (``"120"``, as an
    HTTP ``Retry-After`` header has them) or an HTTP date. An unreadable string retries with the
    normal backoff."""

    def __init__(self, message: str, retry_after: timedelta | float | int | datetime | str) -> None:
        if not isinstance(retry_after, timedelta | float | int | datetime | str) or isinstance(
            retry_after, bool
        ):
            raise TypeError(
                "retry_after must be a timedelta, a number of seconds, a datetime or a string"
            )
        self.retry_after = retry_after
        super().__init__(message)


class LeaseLostError(SteplineError):
    """Internal: a pass lost its lease (another worker owns the run now); its commit was refused."""


class PassCancelledError(SteplineError):
    """Internal: the run was cancelled while this pass executed it; the pass's commit kept only
    the result of the step that was executing, and the pass ends there."""
