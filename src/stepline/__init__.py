"""Stepline: durable functions for Python.

Events trigger functions; a function's side effects live in steps whose results are persisted,
so a run survives crashes, restarts, retries, sleeps and waits. See ``App`` to start.
"""

import importlib
from typing import TYPE_CHECKING, Any

from stepline.errors import (
    ClockSkewError,
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

if TYPE_CHECKING:
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
else:
    # the SDK is imported on first use of one of its names (`from stepline import App`), so
    # `import stepline.cli` and `import stepline.errors` do not pay for the engine and the stores
    # (tests/acceptance/test_cli_startup.py)
    _LAZY = {
        "App": "stepline.sdk.app",
        "BatchEvents": "stepline.sdk.options",
        "CancelOn": "stepline.sdk.options",
        "Checkpointing": "stepline.sdk.options",
        "Concurrency": "stepline.sdk.options",
        "Context": "stepline.sdk.context",
        "Debounce": "stepline.sdk.options",
        "Event": "stepline.sdk.event",
        "EventRun": "stepline.sdk.run",
        "FunctionDef": "stepline.sdk.function",
        "HistoryEntry": "stepline.sdk.run",
        "Limits": "stepline.sdk.limits",
        "Priority": "stepline.sdk.options",
        "RateLimit": "stepline.sdk.options",
        "RetryBackoff": "stepline.sdk.backoff",
        "Run": "stepline.sdk.run",
        "Singleton": "stepline.sdk.options",
        "Step": "stepline.sdk.step",
        "StepInfo": "stepline.sdk.run",
        "SyncContext": "stepline.sdk.context",
        "SyncStep": "stepline.sdk.step",
        "Throttle": "stepline.sdk.options",
        "Timeouts": "stepline.sdk.options",
        "TriggerCron": "stepline.sdk.triggers",
        "TriggerEvent": "stepline.sdk.triggers",
    }

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'stepline' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "App",
    "BatchEvents",
    "CancelOn",
    "Checkpointing",
    "ClockSkewError",
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
