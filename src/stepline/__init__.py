"""Stepline: durable functions for Python.

Events trigger functions; a function's side effects live in steps whose results are persisted,
so a run survives crashes, restarts, retries, sleeps and waits. See ``App`` to start.
"""

from stepline.errors import (
    ConfigError,
    CronError,
    DurationError,
    EventError,
    ExpressionError,
    LimitExceededError,
    NonRetriableError,
    RetryAfterError,
    RunFailedError,
    SerializationError,
    StepError,
    SteplineError,
    StoreError,
    StoreUnavailable,
)
from stepline.sdk.app import App
from stepline.sdk.backoff import RetryBackoff
from stepline.sdk.context import Context, SyncContext
from stepline.sdk.event import Event
from stepline.sdk.function import FunctionDef
from stepline.sdk.limits import Limits
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
)
from stepline.sdk.run import EventRun, HistoryEntry, Run, StepInfo
from stepline.sdk.step import Step, SyncStep
from stepline.sdk.triggers import TriggerCron, TriggerEvent

__version__ = "0.1.0"

__all__ = [
    "App",
    "BatchEvents",
    "CancelOn",
    "Checkpointing",
    "Concurrency",
    "ConfigError",
    "Context",
    "CronError",
    "Debounce",
    "DurationError",
    "Event",
    "EventError",
    "EventRun",
    "ExpressionError",
    "FunctionDef",
    "HistoryEntry",
    "LimitExceededError",
    "Limits",
    "NonRetriableError",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "RetryBackoff",
    "Run",
    "RunFailedError",
    "SerializationError",
    "Singleton",
    "Step",
    "StepError",
    "StepInfo",
    "SteplineError",
    "StoreError",
    "StoreUnavailable",
    "SyncContext",
    "SyncStep",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
    "__version__",
]
