"""A tiny Inngest app on the official Python SDK (``inngest`` on PyPI), served by FastAPI.

Stepline's protocol tests start it (``python py_app.py``), sign requests to it and drive its
functions. Environment: PORT, INNGEST_MODE ("cloud" or "dev"), SIGNING_KEY,
SIGNING_KEY_FALLBACK, BASE_URL (where the SDK registers and sends events).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import fastapi
import inngest
import inngest.fast_api
import uvicorn

cloud = os.environ.get("INNGEST_MODE") == "cloud"
if os.environ.get("SIGNING_KEY_FALLBACK"):  # the SDK reads the fallback key from its env only
    os.environ["INNGEST_SIGNING_KEY_FALLBACK"] = os.environ["SIGNING_KEY_FALLBACK"]
client = inngest.Inngest(
    app_id=os.environ.get("APP_ID", "py-app"),
    is_production=cloud,
    signing_key=os.environ.get("SIGNING_KEY") or None,
    event_key="test-event-key",
    api_base_url=os.environ.get("BASE_URL"),
    event_api_base_url=os.environ.get("BASE_URL"),
)


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="test/child"))
async def child(ctx: inngest.Context) -> dict[str, int]:
    return {"doubled": ctx.event.data["n"] * 2}  # type: ignore[operator]


@client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="test/steps"))
async def steps(ctx: inngest.Context) -> dict[str, object]:
    n = ctx.event.data["n"]

    async def first() -> dict[str, int]:
        return {"n": n + 1}  # type: ignore[operator]

    a = await ctx.step.run("a", first)
    await ctx.step.sleep("nap", datetime.timedelta(seconds=2))
    got = await ctx.step.wait_for_event(
        "wait",
        event="test/go",
        timeout=datetime.timedelta(hours=1),
        if_exp="async.data.n == event.data.n",
    )

    async def times(k: int) -> int:
        return a["n"] * k

    p1, p2 = await ctx.group.parallel(
        (lambda: ctx.step.run("p1", times, 10), lambda: ctx.step.run("p2", times, 100))
    )
    called = await ctx.step.invoke("call", function=child, data={"n": p1})
    await ctx.step.send_event("announce", inngest.Event(name="test/done", data={"p2": p2}))
    return {
        "a": a,
        "waited": got.data if got is not None else None,
        "p1": p1,
        "p2": p2,
        "called": called,
    }


@client.create_function(fn_id="failing", trigger=inngest.TriggerEvent(event="test/fail"), retries=2)
async def failing(ctx: inngest.Context) -> None:
    how = ctx.event.data.get("how")
    if how == "step":

        async def boom() -> None:
            raise ValueError("step went wrong")

        await ctx.step.run("boom", boom)
    if how == "retry-after":
        raise inngest.RetryAfterError("come back later", datetime.timedelta(seconds=30))
    if how == "non-retriable":
        raise inngest.NonRetriableError("never again")
    raise RuntimeError("function went wrong")


async def flow_failed(ctx: inngest.Context) -> str:
    return "handled"


# Every flow-control field of the function config, each in a form Stepline honours (shared
# with py_flask_app.py's sync twin).
FLOW: dict[str, Any] = dict(
    fn_id="flow",
    name="Flow control",
    trigger=[
        inngest.TriggerEvent(event="test/flow", expression="event.data.ok == true"),
        inngest.TriggerCron(cron="TZ=Europe/Paris 0 12 * * 5"),
    ],
    concurrency=[
        inngest.Concurrency(limit=2, key="event.data.account"),
        inngest.Concurrency(limit=5),
    ],
    throttle=inngest.Throttle(
        limit=3, period=datetime.timedelta(minutes=1), burst=2, key="event.data.account"
    ),
    rate_limit=inngest.RateLimit(
        limit=10, period=datetime.timedelta(hours=1), key="event.data.user"
    ),
    debounce=inngest.Debounce(
        period=datetime.timedelta(seconds=5),
        key="event.data.user",
        timeout=datetime.timedelta(minutes=1),
    ),
    priority=inngest.Priority(run="event.data.vip ? 60 : 0"),
    singleton=inngest.Singleton(key="event.data.user", mode="cancel"),
    idempotency="event.data.order",
    cancel=[
        inngest.Cancel(event="test/cancel", if_exp="event.data.user == async.data.user"),
        inngest.Cancel(
            event="test/stop",
            if_exp="async.data.id == event.data.id",
            timeout=datetime.timedelta(days=1),
        ),
    ],
    timeouts=inngest.Timeouts(
        start=datetime.timedelta(seconds=30), finish=datetime.timedelta(hours=1)
    ),
    retries=7,
)
BATCH: dict[str, Any] = dict(
    fn_id="batch",
    trigger=inngest.TriggerEvent(event="test/batch"),
    batch_events=inngest.Batch(
        max_size=50,
        timeout=datetime.timedelta(seconds=10),
        key="event.data.user",
        if_exp="event.data.keep",
    ),
)


@client.create_function(**FLOW, on_failure=flow_failed)
async def flow(ctx: inngest.Context) -> str:
    return "ok"


@client.create_function(**BATCH)
async def batch(ctx: inngest.Context) -> int:
    return len(ctx.events)


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [child, steps, failing, flow, batch])
# the same functions with streamed replies (201, keep-alive spaces, then the real reply)
streamed = fastapi.FastAPI()
inngest.fast_api.serve(
    streamed, client, [child, steps, failing, flow, batch], streaming=inngest.Streaming.FORCE
)
app.mount("/streamed", streamed)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
