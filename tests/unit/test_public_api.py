"""The public door: ``stepline.__all__`` is sorted and frozen (a change here is an API change)."""

from __future__ import annotations

import stepline
import stepline.testing

EXPECTED = [
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


def test_public_names_are_frozen_and_sorted() -> None:
    assert stepline.__all__ == EXPECTED
    assert sorted(stepline.__all__) == stepline.__all__


def test_every_public_name_exists() -> None:
    for name in stepline.__all__:
        assert hasattr(stepline, name), name
    assert stepline.testing.__all__ == ["MockClock", "TestEngine"]


def test_errors_share_one_root() -> None:
    errors = [getattr(stepline, n) for n in stepline.__all__ if n.endswith("Error")]
    errors.append(stepline.StoreUnavailable)
    assert errors
    assert all(issubclass(e, stepline.SteplineError) for e in errors)
    # issue 6 review item 1: transient storage errors are one kind of store error
    assert issubclass(stepline.StoreUnavailable, stepline.StoreError)
