"""``py_scenario_app.py``'s functions written as sync functions on the official Python SDK,
served by Flask: the SDK's other serve handler and its sync path (``inngest.ContextSync``), for
the same scenario (``test_inngest_python.py``). Its client, environment and ``GET
/calls/{name}`` are ``py_scenario_app.py``'s.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import flask
import inngest
import inngest.flask
from py_scenario_app import HOUR, calls, client


@client.create_function(
    fn_id="sc-retry-after", trigger=inngest.TriggerEvent(event="sc/retry"), retries=2
)
def retry_after(ctx: inngest.ContextSync) -> str:
    def call() -> str:
        calls["retry-after"].append(ctx.run_id)
        if len(calls["retry-after"]) == 1:
            raise inngest.RetryAfterError("rate limited", datetime.timedelta(seconds=30))
        return "ok"

    return ctx.step.run("call", call)


@client.create_function(
    fn_id="sc-non-retriable", trigger=inngest.TriggerEvent(event="sc/never"), retries=3
)
def non_retriable(ctx: inngest.ContextSync) -> None:
    def refuse() -> None:
        calls["never"].append(ctx.run_id)
        raise inngest.NonRetriableError("no point retrying")

    ctx.step.run("refuse", refuse)


@client.create_function(
    fn_id="sc-caught", trigger=inngest.TriggerEvent(event="sc/caught"), retries=1
)
def caught(ctx: inngest.ContextSync) -> dict[str, object]:
    def boom() -> None:
        calls["boom"].append(ctx.run_id)
        raise ValueError("primary down")

    def fallback() -> str:
        return "secondary"

    try:
        ctx.step.run("primary", boom)
    except inngest.StepError as exc:
        return {"caught": exc.message, "result": ctx.step.run("fallback", fallback)}
    return {"caught": None}


@client.create_function(fn_id="sc-child", trigger=inngest.TriggerEvent(event="sc/child"))
def child(ctx: inngest.ContextSync) -> dict[str, int]:
    return {"doubled": int(ctx.event.data["n"]) * 2}  # type: ignore[call-overload]


@client.create_function(fn_id="sc-refuse", trigger=inngest.TriggerEvent(event="sc/refuse"))
def refuse_invoke(ctx: inngest.ContextSync) -> None:
    raise inngest.NonRetriableError("the child refuses")


@client.create_function(fn_id="sc-slow", trigger=inngest.TriggerEvent(event="sc/slow"))
def slow(ctx: inngest.ContextSync) -> str:
    ctx.step.sleep("nap", HOUR)
    return "too late"


@client.create_function(
    fn_id="sc-invoker", trigger=inngest.TriggerEvent(event="sc/invoke"), retries=0
)
def invoker(ctx: inngest.ContextSync) -> dict[str, object]:
    by_object = ctx.step.invoke("by-object", function=child, data={"n": 2})
    by_id = ctx.step.invoke_by_id("by-id", function_id="sc-child", data={"n": 3})
    try:
        ctx.step.invoke("fails", function=refuse_invoke, data={})
        failed = None
    except inngest.StepError as exc:
        failed = exc.message
    try:
        ctx.step.invoke("times-out", function=slow, data={}, timeout=datetime.timedelta(seconds=5))
        timed_out = None
    except inngest.StepError as exc:
        timed_out = exc.name
    return {"by_object": by_object, "by_id": by_id, "failed": failed, "timed_out": timed_out}


@client.create_function(fn_id="sc-waiter", trigger=inngest.TriggerEvent(event="sc/wait"), retries=0)
def waiter(ctx: inngest.ContextSync) -> dict[str, object]:
    hit = ctx.step.wait_for_event(
        "fulfilled", event="sc/go", if_exp="async.data.k == event.data.k", timeout=HOUR
    )
    missed = ctx.step.wait_for_event(
        "missed",
        event="sc/go",
        if_exp="async.data.k == event.data.k",
        timeout=datetime.timedelta(seconds=10),
    )
    return {"hit": hit.data if hit is not None else None, "missed": missed}


@client.create_function(
    fn_id="sc-cancellable",
    trigger=inngest.TriggerEvent(event="sc/start"),
    cancel=[inngest.Cancel(event="sc/stop", if_exp="event.data.id == async.data.id")],
    retries=0,
)
def cancellable(ctx: inngest.ContextSync) -> str:
    ctx.step.sleep("long", HOUR)
    return "finished"


@client.create_function(
    fn_id="sc-debounced",
    trigger=inngest.TriggerEvent(event="sc/edit"),
    debounce=inngest.Debounce(period=datetime.timedelta(seconds=5), key="event.data.doc"),
    retries=0,
)
def debounced(ctx: inngest.ContextSync) -> object:
    return ctx.event.data["rev"]


def _singleton(fn_id: str, event: str, mode: str):  # type: ignore[no-untyped-def]
    @client.create_function(
        fn_id=fn_id,
        trigger=inngest.TriggerEvent(event=event),
        singleton=inngest.Singleton(key="event.data.user", mode=mode),  # type: ignore[arg-type]
        retries=0,
    )
    def single(ctx: inngest.ContextSync) -> object:
        ctx.step.sleep("hold", HOUR)
        return ctx.event.data["n"]

    return single


single_skip = _singleton("sc-single-skip", "sc/skip", "skip")
single_cancel = _singleton("sc-single-cancel", "sc/replace", "cancel")


@client.create_function(
    fn_id="sc-multi",
    trigger=[inngest.TriggerEvent(event="sc/x"), inngest.TriggerEvent(event="sc/y")],
)
def multi(ctx: inngest.ContextSync) -> str:
    return ctx.event.name


def broken_failed(ctx: inngest.ContextSync) -> dict[str, object]:
    data: Any = ctx.event.data
    return {
        "event": ctx.event.name,
        "message": data["error"]["message"],
        "original": data["event"]["data"],
        "function_id": data["function_id"],
        "run_id": data["run_id"],
    }


@client.create_function(
    fn_id="sc-broken",
    trigger=inngest.TriggerEvent(event="sc/broken"),
    retries=0,
    on_failure=broken_failed,
)
def broken(ctx: inngest.ContextSync) -> None:
    raise ValueError("broken on purpose")


@client.create_function(
    fn_id="sc-unserializable", trigger=inngest.TriggerEvent(event="sc/unserializable"), retries=0
)
def unserializable(ctx: inngest.ContextSync) -> object:
    return object()


app = flask.Flask(__name__)
inngest.flask.serve(
    app,
    client,
    [
        retry_after,
        non_retriable,
        caught,
        child,
        refuse_invoke,
        slow,
        invoker,
        waiter,
        cancellable,
        debounced,
        single_skip,
        single_cancel,
        multi,
        broken,
        unserializable,
    ],
)


@app.get("/calls/<name>")
def recorded(name: str) -> list[Any]:
    return calls.get(name, [])


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
