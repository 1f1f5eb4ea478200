"""An Inngest app on the official Python SDK (async functions, FastAPI) for the behaviour the
Python SDK must show on Stepline (``test_inngest_python.py``): RetryAfterError,
NonRetriableError, a step error caught and replaced, invoke by object and by id, an invoke that
fails and one that times out, waits fulfilled and timed out (``if`` and name mismatches),
cancel with ``if``, debounce, singleton skip and cancel, several triggers, on_failure with
Inngest's payload, an unserializable output, a run held back by a full concurrency key
past its start timeout. ``GET /calls/{name}`` lists what a step body recorded; ``POST
/release/{name}`` releases a step body waiting for it.

Environment as ``py_app.py``: PORT, APP_ID, INNGEST_MODE ("cloud" or "dev"), SIGNING_KEY,
BASE_URL.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections import defaultdict
from typing import Any

import fastapi
import inngest
import inngest.fast_api
import uvicorn

client = inngest.Inngest(
    app_id=os.environ.get("APP_ID", "py-app"),
    is_production=os.environ.get("INNGEST_MODE") == "cloud",
    signing_key=os.environ.get("SIGNING_KEY") or None,
    event_key="test-event-key",
    api_base_url=os.environ.get("BASE_URL"),
    event_api_base_url=os.environ.get("BASE_URL"),
)
HOUR = datetime.timedelta(hours=1)
calls: dict[str, list[Any]] = defaultdict(list)  # step body -> what each call recorded


@client.create_function(
    fn_id="sc-retry-after", trigger=inngest.TriggerEvent(event="sc/retry"), retries=2
)
async def retry_after(ctx: inngest.Context) -> str:
    async def call() -> str:
        calls["retry-after"].append(ctx.run_id)
        if len(calls["retry-after"]) == 1:
            raise inngest.RetryAfterError("rate limited", datetime.timedelta(seconds=30))
        return "ok"

    return await ctx.step.run("call", call)


@client.create_function(
    fn_id="sc-non-retriable", trigger=inngest.TriggerEvent(event="sc/never"), retries=3
)
async def non_retriable(ctx: inngest.Context) -> None:
    async def refuse() -> None:
        calls["never"].append(ctx.run_id)
        raise inngest.NonRetriableError("no point retrying")

    await ctx.step.run("refuse", refuse)


@client.create_function(
    fn_id="sc-caught", trigger=inngest.TriggerEvent(event="sc/caught"), retries=1
)
async def caught(ctx: inngest.Context) -> dict[str, object]:
    async def boom() -> None:
        calls["boom"].append(ctx.run_id)
        raise ValueError("primary down")

    async def fallback() -> str:
        return "secondary"

    try:
        await ctx.step.run("primary", boom)
    except inngest.StepError as exc:
        return {"caught": exc.message, "result": await ctx.step.run("fallback", fallback)}
    return {"caught": None}


@client.create_function(fn_id="sc-child", trigger=inngest.TriggerEvent(event="sc/child"))
async def child(ctx: inngest.Context) -> dict[str, int]:
    return {"doubled": int(ctx.event.data["n"]) * 2}  # type: ignore[call-overload]


@client.create_function(fn_id="sc-refuse", trigger=inngest.TriggerEvent(event="sc/refuse"))
async def refuse_invoke(ctx: inngest.Context) -> None:
    raise inngest.NonRetriableError("the child refuses")


@client.create_function(fn_id="sc-slow", trigger=inngest.TriggerEvent(event="sc/slow"))
async def slow(ctx: inngest.Context) -> str:
    await ctx.step.sleep("nap", HOUR)
    return "too late"


@client.create_function(
    fn_id="sc-invoker", trigger=inngest.TriggerEvent(event="sc/invoke"), retries=0
)
async def invoker(ctx: inngest.Context) -> dict[str, object]:
    by_object = await ctx.step.invoke("by-object", function=child, data={"n": 2})
    by_id = await ctx.step.invoke_by_id("by-id", function_id="sc-child", data={"n": 3})
    try:
        await ctx.step.invoke("fails", function=refuse_invoke, data={})
        failed = None
    except inngest.StepError as exc:
        failed = exc.message
    try:
        await ctx.step.invoke(
            "times-out", function=slow, data={}, timeout=datetime.timedelta(seconds=5)
        )
        timed_out = None
    except inngest.StepError as exc:
        timed_out = exc.name
    return {"by_object": by_object, "by_id": by_id, "failed": failed, "timed_out": timed_out}


@client.create_function(fn_id="sc-waiter", trigger=inngest.TriggerEvent(event="sc/wait"), retries=0)
async def waiter(ctx: inngest.Context) -> dict[str, object]:
    hit = await ctx.step.wait_for_event(
        "fulfilled", event="sc/go", if_exp="async.data.k == event.data.k", timeout=HOUR
    )
    missed = await ctx.step.wait_for_event(
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
async def cancellable(ctx: inngest.Context) -> str:
    await ctx.step.sleep("long", HOUR)
    return "finished"


@client.create_function(
    fn_id="sc-debounced",
    trigger=inngest.TriggerEvent(event="sc/edit"),
    debounce=inngest.Debounce(period=datetime.timedelta(seconds=5), key="event.data.doc"),
    retries=0,
)
async def debounced(ctx: inngest.Context) -> object:
    return ctx.event.data["rev"]


def _singleton(fn_id: str, event: str, mode: str):  # type: ignore[no-untyped-def]
    @client.create_function(
        fn_id=fn_id,
        trigger=inngest.TriggerEvent(event=event),
        singleton=inngest.Singleton(key="event.data.user", mode=mode),  # type: ignore[arg-type]
        retries=0,
    )
    async def single(ctx: inngest.Context) -> object:
        await ctx.step.sleep("hold", HOUR)
        return ctx.event.data["n"]

    return single


single_skip = _singleton("sc-single-skip", "sc/skip", "skip")
single_cancel = _singleton("sc-single-cancel", "sc/replace", "cancel")


@client.create_function(
    fn_id="sc-multi",
    trigger=[inngest.TriggerEvent(event="sc/x"), inngest.TriggerEvent(event="sc/y")],
)
async def multi(ctx: inngest.Context) -> str:
    return ctx.event.name


async def broken_failed(ctx: inngest.Context) -> dict[str, object]:
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
async def broken(ctx: inngest.Context) -> None:
    raise ValueError("broken on purpose")


@client.create_function(
    fn_id="sc-unserializable", trigger=inngest.TriggerEvent(event="sc/unserializable"), retries=0
)
async def unserializable(ctx: inngest.Context) -> object:
    return object()


gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)  # released by POST /release/{name}


@client.create_function(
    fn_id="sc-one-at-a-time",
    trigger=inngest.TriggerEvent(event="sc/hold"),
    concurrency=[inngest.Concurrency(limit=1)],
    timeouts=inngest.Timeouts(start=datetime.timedelta(minutes=1)),
)
async def one_at_a_time(ctx: inngest.Context) -> str:
    async def hold() -> str:  # holds the function's one slot until released
        calls["hold"].append(ctx.run_id)
        await gates["hold"].wait()
        return "held"

    return await ctx.step.run("hold", hold)


app = fastapi.FastAPI()
inngest.fast_api.serve(
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
        one_at_a_time,
    ],
)


@app.get("/calls/{name}")
async def recorded(name: str) -> list[Any]:
    return calls.get(name, [])


@app.post("/release/{name}")
async def release(name: str) -> None:
    gates[name].set()


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
