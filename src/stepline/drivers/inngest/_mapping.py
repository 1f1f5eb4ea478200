"""An Inngest function config mapped to a Stepline function definition, or refused.

Every field of a config either becomes Stepline's option with the same behaviour or is refused
with a reason naming the function and the field (``SyncRefused``): nothing is silently ignored.
What is refused, and why:

* ``triggers[].event`` with a wildcard (``app/*``), ``triggers[].jitter`` (cron jitter);
* ``concurrency[].scope`` ``"env"`` or ``"account"`` (Stepline shares a concurrency key within
  one function or one app; an Inngest environment spans apps), a limit below 1;
* ``steps`` other than the one entry step, a ``ws`` (Connect) runtime;
* ``batchEvents`` without ``timeout``; any field or sub-field Stepline does not know;
* whatever Stepline's own options refuse (a period over its maximum, a bad CEL expression,
  ``batchEvents`` with ``debounce``, ``idempotency`` or ``singleton``, more than 10 triggers ...).

A mapped function's ``driver`` is ``"inngest"``: an engine runs it only once that driver is added
(``Engine.add_driver``); the in-process driver never calls its handler.

The on-failure twin an SDK registers (``<slug>-failure``, triggered by
``inngest/function.failed`` with ``event.data.function_id == '<slug>'``) becomes a function
with ``on_failure_of=<slug>``, as ``App.function(on_failure=...)`` makes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stepline.drivers.inngest._errors import SyncRefused
from stepline.drivers.inngest._register import AppRegistration, FunctionConfig
from stepline.errors import ConfigError
from stepline.sdk.function import FunctionDef, build_function
from stepline.sdk.options import (
    BatchEvents,
    CancelOn,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
)
from stepline.sdk.triggers import TriggerCron, TriggerEvent

DEFAULT_RETRIES = 4  # Inngest's default: 4 retries, 5 attempts
DRIVER = "inngest"  # FunctionDef.driver of an SDK app's function (engine/driver.py)
FUNCTION_FAILED = "inngest/function.failed"

_TOP_LEVEL = {
    "id",
    "name",
    "triggers",
    "steps",
    "idempotency",
    "batchEvents",
    "rateLimit",
    "throttle",
    "singleton",
    "cancel",
    "debounce",
    "timeouts",
    "priority",
    "concurrency",
}


class _Refusal(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _object(
    value: object, path: str, allowed: set[str], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Refusal(path, f"expected an object, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _Refusal(f"{path}.{unknown[0]}", "Stepline does not support this field")
    for key in required:
        if value.get(key) is None:
            raise _Refusal(f"{path}.{key}", "is required")
    return value


def _text(value: object, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Refusal(path, f"expected a string, got {value!r}")
    return value


def _triggers(raw: object) -> tuple[list[TriggerEvent | TriggerCron], list[tuple[str, str]]]:
    triggers: list[TriggerEvent | TriggerCron] = []
    problems: list[tuple[str, str]] = []
    if raw is None:
        return triggers, problems
    if not isinstance(raw, list):
        return triggers, [("triggers", f"expected a list, got {raw!r}")]
    for i, item in enumerate(raw):
        path = f"triggers[{i}]"
        try:
            if isinstance(item, dict) and "cron" in item:
                spec = _object(item, path, {"cron", "jitter"}, ("cron",))
                if spec.get("jitter") is not None:
                    raise _Refusal(f"{path}.jitter", "cron jitter is not supported")
                triggers.append(TriggerCron(str(_text(spec["cron"], f"{path}.cron"))))
                continue
            spec = _object(item, path, {"event", "expression"}, ("event",))
            name = _text(spec["event"], f"{path}.event")
            assert name is not None
            if "*" in name:
                raise _Refusal(
                    f"{path}.event", f"wildcard event names ({name!r}) are not supported"
                )
            triggers.append(
                TriggerEvent(name, if_=_text(spec.get("expression"), f"{path}.expression"))
            )
        except _Refusal as exc:
            problems.append((exc.field, exc.reason))
        except ConfigError as exc:
            problems.append((path, str(exc)))
    return triggers, problems


def _retries(steps: object) -> int:
    if not isinstance(steps, dict) or set(steps) != {"step"}:
        keys = sorted(steps) if isinstance(steps, dict) else steps
        raise _Refusal("steps", f"Stepline drives one entry step named 'step', got {keys!r}")
    step = _object(steps["step"], "steps.step", {"id", "name", "runtime", "retries"}, ("runtime",))
    runtime = _object(step["runtime"], "steps.step.runtime", {"type", "url"}, ("type", "url"))
    if runtime["type"] != "http":
        raise _Refusal(
            "steps.step.runtime.type",
            f"only the 'http' runtime is supported (got {runtime['type']!r}: Connect apps must "
            "serve over HTTP)",
        )
    url = _text(runtime["url"], "steps.step.runtime.url") or ""
    if not url.startswith(("http://", "https://")):
        raise _Refusal("steps.step.runtime.url", f"expected an http(s) URL, got {url!r}")
    if step.get("retries") is None:
        return DEFAULT_RETRIES
    retries = _object(step["retries"], "steps.step.retries", {"attempts"})
    attempts = retries.get("attempts")
    if attempts is None:
        return DEFAULT_RETRIES
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 0 <= attempts <= 20:
        raise _Refusal("steps.step.retries.attempts", f"expected 0 to 20 retries, got {attempts!r}")
    return attempts


def _concurrency(raw: object) -> list[Concurrency]:
    items: list[object]
    if isinstance(raw, int) and not isinstance(raw, bool):
        items = [{"limit": raw}]
    elif isinstance(raw, dict):
        items = [raw]
    elif isinstance(raw, list):
        items = list(raw)
    else:
        raise _Refusal("concurrency", f"expected a number, an object or a list, got {raw!r}")
    limits = []
    for i, item in enumerate(items):
        path = f"concurrency[{i}]"
        spec = _object(item, path, {"limit", "key", "scope"}, ("limit",))
        scope = spec.get("scope") or "fn"
        if scope != "fn":
            raise _Refusal(
                f"{path}.scope",
                f"scope {scope!r} shares the limit across apps; Stepline shares a concurrency "
                "key within one function (scope 'fn') or one app only",
            )
        limit = spec["limit"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise _Refusal(f"{path}.limit", f"expected a positive integer, got {limit!r}")
        limits.append(Concurrency(limit=limit, key=_text(spec.get("key"), f"{path}.key")))
    return limits


def _option(config: Mapping[str, Any], field: str) -> object:
    """Build the Stepline option of one config field (``None`` when absent or empty)."""
    raw = config.get(field)
    if raw is None:
        return None
    if field == "concurrency":
        return _concurrency(raw)
    if field == "idempotency":
        return _text(raw, field)
    if field == "cancel":
        if not isinstance(raw, list):
            raise _Refusal(field, f"expected a list, got {raw!r}")
        cancels = []
        for i, item in enumerate(raw):
            spec = _object(item, f"cancel[{i}]", {"event", "if", "timeout"}, ("event",))
            cancels.append(
                CancelOn(event=spec["event"], if_=spec.get("if"), timeout=spec.get("timeout"))
            )
        return cancels
    if field == "throttle":
        spec = _object(raw, field, {"limit", "period", "burst", "key"}, ("limit", "period"))
        return Throttle(spec["limit"], spec["period"], spec.get("burst") or 0, spec.get("key"))
    if field == "rateLimit":
        spec = _object(raw, field, {"limit", "period", "key"}, ("limit", "period"))
        return RateLimit(spec["limit"], spec["period"], spec.get("key"))
    if field == "debounce":
        spec = _object(raw, field, {"period", "key", "timeout"}, ("period",))
        return Debounce(spec["period"], spec.get("key"), spec.get("timeout"))
    if field == "batchEvents":
        spec = _object(raw, field, {"maxSize", "timeout", "key", "if"}, ("maxSize", "timeout"))
        return BatchEvents(spec["maxSize"], spec["timeout"], spec.get("key"), spec.get("if"))
    if field == "priority":
        spec = _object(raw, field, {"run"})
        return Priority(spec["run"]) if spec.get("run") is not None else None
    if field == "singleton":
        spec = _object(raw, field, {"mode", "key"}, ("mode",))
        return Singleton(key=spec.get("key"), mode=spec["mode"])
    if field == "timeouts":
        spec = _object(raw, field, {"start", "finish"})
        if spec.get("start") is None and spec.get("finish") is None:
            return None
        return Timeouts(start=spec.get("start"), finish=spec.get("finish"))
    raise AssertionError(field)


_OPTION_FIELDS = (
    ("concurrency", "concurrency"),
    ("throttle", "throttle"),
    ("rateLimit", "rate_limit"),
    ("debounce", "debounce"),
    ("batchEvents", "batch_events"),
    ("priority", "priority"),
    ("singleton", "singleton"),
    ("idempotency", "idempotency"),
    ("cancel", "cancel_on"),
    ("timeouts", "timeouts"),
)


def _failure_twin_of(fn: FunctionConfig, slugs: set[str]) -> str | None:
    """The slug this function handles failures of, if it is an SDK's on-failure twin."""
    if not fn.slug.endswith("-failure"):
        return None
    target = fn.slug[: -len("-failure")]
    expected = {
        "event": FUNCTION_FAILED,
        "expression": f"event.data.function_id == '{target}'",
    }
    triggers = fn.config.get("triggers")
    if target in slugs and isinstance(triggers, list) and triggers == [expected]:
        return target
    return None


def _served_over_http(slug: str) -> Callable[[Any], Any]:
    async def served_over_http(ctx: Any) -> Any:
        raise ConfigError(
            f"function {slug!r} belongs to an Inngest SDK app: its runs are driven over HTTP "
            "through the app's serve URL, not in this process"
        )

    return served_over_http


def _map(fn: FunctionConfig, slugs: set[str]) -> tuple[FunctionDef | None, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    for key in sorted(set(fn.config) - _TOP_LEVEL):
        problems.append((key, "Stepline does not support this field"))
    triggers, trigger_problems = _triggers(fn.config.get("triggers"))
    problems += trigger_problems
    retries = DEFAULT_RETRIES
    try:
        retries = _retries(fn.config.get("steps"))
    except _Refusal as exc:
        problems.append((exc.field, exc.reason))
    options: dict[str, Any] = {}
    for field, keyword in _OPTION_FIELDS:
        try:
            value = _option(fn.config, field)
        except _Refusal as exc:
            problems.append((exc.field, exc.reason))
        except ConfigError as exc:
            problems.append((field, str(exc)))
        else:
            if value is not None:
                options[keyword] = value
    if problems:
        return None, problems
    try:
        definition = build_function(
            id=fn.slug,
            handler=_served_over_http(fn.slug),
            trigger=None,
            triggers=triggers,
            retries=retries,
            on_failure_of=_failure_twin_of(fn, slugs),
            driver=DRIVER,
            **options,
        )
    except ConfigError as exc:
        return None, [("(function)", str(exc))]
    return definition, []


@dataclass(frozen=True)
class SyncedFunction:
    """A function of an SDK app as Stepline runs it: the config as sent and its definition
    (flow control, retries, triggers; its runs are driven over HTTP through ``config.url``)."""

    config: FunctionConfig
    definition: FunctionDef


def map_function(
    fn: FunctionConfig, app_slugs: set[str] | frozenset[str] = frozenset()
) -> SyncedFunction:
    """Map one function config (``app_slugs``: the slugs of its app's functions, to recognise
    an on-failure twin). Raises ``SyncRefused`` listing every field Stepline cannot honour."""
    definition, problems = _map(fn, set(app_slugs))
    if definition is None:
        raise SyncRefused([(fn.slug, field, reason) for field, reason in problems])
    return SyncedFunction(fn, definition)


def map_app(registration: AppRegistration) -> tuple[SyncedFunction, ...]:
    """Map every function of an app's sync, all or nothing: ``SyncRefused`` lists the problems
    of every function at once."""
    slugs = {fn.slug for fn in registration.functions}
    mapped: list[SyncedFunction] = []
    problems: list[tuple[str, str, str]] = []
    for fn in registration.functions:
        definition, found = _map(fn, slugs)
        if definition is None:
            problems += [(fn.slug, field, reason) for field, reason in found]
        else:
            mapped.append(SyncedFunction(fn, definition))
    if problems:
        raise SyncRefused(problems)
    return tuple(mapped)
