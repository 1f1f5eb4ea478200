"""From a function's flow-control options and an event to the store's admission records.

Pure: evaluates the options' key expressions against the event and names the buckets; the store
applies the decisions atomically (``store.records.Admission``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from stepline._ids import new_id
from stepline.expressions import Expression, prepare_match
from stepline.gcra import GcraSpec
from stepline.sdk.function import FunctionDef, FunctionOptions
from stepline.store.keys import indexed, stored_key
from stepline.store.records import NO_ADMISSION, Admission, Deferral, MatcherSpec, NewRun

PRIORITY_BOUND = 600.0
IDEMPOTENCY_WINDOW = 24 * 3600.0


def key_value(expression: Expression | None, payload: dict[str, Any]) -> str:
    """The key an expression gives for an event; ``""`` without an expression, ``"null"`` when
    it evaluates to null or fails (so such events share one key, as in Inngest)."""
    if expression is None:
        return ""
    key = expression.key({"event": payload})
    return "null" if key is None else stored_key(key)


def rate_limit_capacity(limit: int) -> int:
    """How many runs a rate limit admits at once: Inngest's server runs GCRA with a burst of
    ``limit // 10`` (pkg/execution/ratelimit/ratelimit_lua.go), i.e. ``limit // 10 + 1`` at once;
    the rest are spread ``period / limit`` apart."""
    return limit // 10 + 1


def priority_of(fn: FunctionDef, payload: dict[str, Any]) -> float:
    """Seconds ahead in the queue (clamped to ±600; 0 when the expression fails)."""
    option = fn.options.priority
    if option is None or option.run_expr is None:
        return 0.0
    try:
        value = option.run_expr.evaluate({"event": payload})
    except Exception:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return max(-PRIORITY_BOUND, min(PRIORITY_BOUND, float(value)))


def _fixed(options: FunctionOptions) -> bool:
    """Whether a run's admission under ``options`` is the same for every event and app: no
    option reads the event (idempotency, rate limit, throttle, singleton, concurrency keys,
    cancel matchers, a priority expression)."""
    priority = options.priority
    return (
        options.idempotency is None
        and options.rate_limit is None
        and options.throttle is None
        and options.singleton is None
        and not options.concurrency
        and not options.cancel_on
        and (priority is None or priority.run_expr is None)
    )


def admission_for(fn: FunctionDef, app_id: str, payload: dict[str, Any]) -> Admission:
    """The admission record for a run of ``fn`` started by the event ``payload``. Keys and
    buckets are named by app and function: two apps on one database never share them."""
    options = fn.options
    if _fixed(options):  # (most functions: no flow control, nothing read from the event)
        timeouts = options.timeouts
        if timeouts is None:
            return NO_ADMISSION
        return Admission(
            start_timeout=timeouts.start_seconds, finish_timeout=timeouts.finish_seconds
        )
    owner = f"{app_id}\x1f{fn.id}"
    idempotency = None
    if options.idempotency is not None:
        idempotency = f"{owner}\x1f{key_value(options.idempotency, payload)}"
    rate_limit = None
    if options.rate_limit is not None:
        rl = options.rate_limit
        bucket = f"rate\x1f{owner}\x1f{key_value(rl.key_expr, payload)}"
        rate_limit = GcraSpec(bucket, rl.limit, rl.period_seconds, rate_limit_capacity(rl.limit))
    throttle = None
    if options.throttle is not None:
        th = options.throttle
        bucket = f"throttle\x1f{owner}\x1f{key_value(th.key_expr, payload)}"
        throttle = GcraSpec(bucket, th.limit, th.period_seconds, th.limit + th.burst)
    singleton_key = None
    singleton_mode = "skip"
    if options.singleton is not None:
        singleton_key = f"{owner}\x1f{key_value(options.singleton.key_expr, payload)}"
        singleton_mode = options.singleton.mode
    concurrency = tuple(
        (
            f"{c.scope}\x1f{owner if c.scope == 'fn' else app_id}\x1f"
            + key_value(c.key_expr, payload),
            c.limit,
        )
        for c in options.concurrency
    )
    cancel_on = []
    for cancel in options.cancel_on:
        text, path, value = None, None, None
        if cancel.expression is not None:
            prepared = prepare_match(cancel.expression, payload)
            text = prepared.text
            path, value = indexed(prepared.index_keys)
        cancel_on.append(MatcherSpec(cancel.event, text, path, value, cancel.timeout_seconds))
    timeouts = options.timeouts
    return Admission(
        idempotency_key=idempotency,
        rate_limit=rate_limit,
        throttle=throttle,
        priority=priority_of(fn, payload),
        singleton_key=singleton_key,
        singleton_mode=singleton_mode,
        concurrency=concurrency,
        cancel_on=tuple(cancel_on),
        start_timeout=timeouts.start_seconds if timeouts else None,
        finish_timeout=timeouts.finish_seconds if timeouts else None,
    )


def plan_run(
    fn: FunctionDef,
    app_id: str,
    event_id: str,
    payload: dict[str, Any],
    at: float,
    not_before: float | None = None,
) -> NewRun | Deferral | None:
    """What an event that passed ``fn``'s trigger does: start a run, or defer into a debounce
    or a batch (an event a batch's ``if_`` rejects starts a run of its own). ``not_before``
    (an event ``ts`` in the future) delays a run it starts, also the run a debounce starts
    with it as its last event, but not a batch, as in Inngest (pkg/execution/executor/
    executor.go uses a future event ts as the run's start unless the run is a batch's)."""
    admission = admission_for(fn, app_id, payload)
    options = fn.options
    if not_before is not None:
        admission = replace(admission, not_before=not_before)
    run = NewRun(new_id(at), fn.id, (event_id,), admission=admission, app_id=app_id)
    if options.debounce is not None:
        db = options.debounce
        key = key_value(db.key_expr, payload)
        return Deferral("debounce", fn.id, key, db.period_seconds, db.timeout_seconds, 1, run)
    if options.batch_events is not None:
        be = options.batch_events
        if be.if_expr is not None and not be.if_expr.matches({"event": payload}):
            return run  # not batched: runs on its own, at once
        key = key_value(be.key_expr, payload)
        # batches bypass the rate limit, as in Inngest (executor/service.go: PreventRateLimit);
        # a batch run gets no cancel_on, no start timeout and ignores a future ts (executor.go
        # Schedule: cancellation pauses and the ts only `if req.BatchID == nil`)
        batch = replace(
            run.admission, rate_limit=None, cancel_on=(), start_timeout=None, not_before=None
        )
        unlimited = replace(run, admission=batch)
        return Deferral("batch", fn.id, key, be.timeout_seconds, None, be.max_size, unlimited)
    return run
