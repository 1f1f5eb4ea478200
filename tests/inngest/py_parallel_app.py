"""An Inngest app on the official Python SDK for the driver's tests (parallel steps, retries,
large payloads, limits): each function
counts the requests it is called with and the step bodies it runs (per run), served at
``GET /state/{run_id}`` so a test can check how the server drove it, and how many requests it is
handling (``GET /busy``).

Environment as ``py_app.py``: PORT, APP_ID, INNGEST_MODE ("cloud" or "dev"), SIGNING_KEY, BASE_URL.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable

import fastapi
import inngest
import inngest.experimental.ai
import inngest.experimental.ai.anthropic
import inngest.experimental.ai.openai
import inngest.fast_api
import uvicorn

cloud = os.environ.get("INNGEST_MODE") == "cloud"
client = inngest.Inngest(
    app_id=os.environ.get("APP_ID", "py-app"),
    is_production=cloud,
    signing_key=os.environ.get("SIGNING_KEY") or None,
    event_key="test-event-key",
    api_base_url=os.environ.get("BASE_URL"),
    event_api_base_url=os.environ.get("BASE_URL"),
)

requests: dict[str, int] = defaultdict(int)  # run id -> requests its handler was called for
ran: dict[str, list[str]] = defaultdict(list)  # run id -> step bodies run, in order
a2_done: dict[str, asyncio.Event] = defaultdict(asyncio.Event)


def _count(ctx: inngest.Context) -> str:
    requests[ctx.run_id] += 1
    return ctx.run_id


def _flaky(run: str) -> Callable[[], Awaitable[str]]:
    """A step body that fails on its first attempt in run ``run``."""

    async def flaky() -> str:
        ran[run].append("flaky")
        if ran[run].count("flaky") == 1:
            raise ValueError("the first attempt fails")
        return "ok"

    return flaky


@client.create_function(
    fn_id="retry-parallel", trigger=inngest.TriggerEvent(event="par/retry"), retries=2
)
async def retry_parallel(ctx: inngest.Context) -> dict[str, object]:
    """A parallel step that fails on its first attempt next to a wait: the wait's event wakes
    the run during the step's retry backoff."""
    run = _count(ctx)
    flaky = _flaky(run)

    flaky_out, released = await ctx.group.parallel(
        (
            lambda: ctx.step.run("flaky", flaky),
            lambda: ctx.step.wait_for_event(
                "release", event="par/release", timeout=datetime.timedelta(hours=1)
            ),
        )
    )
    return {"flaky": flaky_out, "released": released is not None}


def _groups(ctx: inngest.Context, run: str, *, race: bool):  # type: ignore[no-untyped-def]
    async def body(name: str) -> str:
        if race and name == "b.1":  # proves no coalescing: b.1 ends only once a.2 has run
            await asyncio.wait_for(a2_done[run].wait(), timeout=60)
        ran[run].append(name)
        if name == "a.2":
            a2_done[run].set()
        return name

    async def fast() -> list[str]:
        return [await ctx.step.run("a.1", body, "a.1"), await ctx.step.run("a.2", body, "a.2")]

    async def slow() -> list[str]:
        return [await ctx.step.run("b.1", body, "b.1"), await ctx.step.run("b.2", body, "b.2")]

    return fast, slow


@client.create_function(
    fn_id="parallel-wait", trigger=inngest.TriggerEvent(event="par/wait"), retries=0
)
async def parallel_wait(ctx: inngest.Context) -> object:
    """Two groups of two sequential steps in the default (wait) mode."""
    run = _count(ctx)
    fast, slow = _groups(ctx, run, race=False)
    return await ctx.group.parallel((fast, slow))


@client.create_function(
    fn_id="parallel-race", trigger=inngest.TriggerEvent(event="par/race"), retries=0
)
async def parallel_race(ctx: inngest.Context) -> object:
    """The same groups in race mode: a discovery after every completed step."""
    run = _count(ctx)
    fast, slow = _groups(ctx, run, race=True)
    return await ctx.group.parallel((fast, slow), parallel_mode=inngest.ParallelMode.RACE)


@client.create_function(
    fn_id="race-retry", trigger=inngest.TriggerEvent(event="par/race-retry"), retries=2
)
async def race_retry(ctx: inngest.Context) -> dict[str, object]:
    """A race-mode group: a chain of two steps, the first failing once, next to a wait; the
    chain goes on after the retry although the wait is still pending."""
    run = _count(ctx)
    flaky = _flaky(run)

    async def after() -> str:
        ran[run].append("after")
        return "after"

    async def chain() -> object:
        return [await ctx.step.run("flaky", flaky), await ctx.step.run("after", after)]

    async def release() -> object:
        return await ctx.step.wait_for_event(
            "release", event="par/race-release", timeout=datetime.timedelta(hours=1)
        )

    chained, released = await ctx.group.parallel(
        (chain, release), parallel_mode=inngest.ParallelMode.RACE
    )
    return {"chain": chained, "released": released is not None}


@client.create_function(
    fn_id="race-same-name", trigger=inngest.TriggerEvent(event="par/same"), retries=0
)
async def race_same_name(ctx: inngest.Context) -> dict[str, object]:
    """A race-mode group with a wait "gate", then a wait-mode group with another wait "gate"
    (its own step id, the same name) next to a wait "other": resolving "other" sends no
    request while the second "gate" is pending (that group is not racing)."""
    run = _count(ctx)

    async def a() -> str:
        ran[run].append("a")
        return "a"

    hour = datetime.timedelta(hours=1)
    await ctx.group.parallel(
        (
            lambda: ctx.step.wait_for_event("gate", event="par/same-1", timeout=hour),
            lambda: ctx.step.run("a", a),
        ),
        parallel_mode=inngest.ParallelMode.RACE,
    )
    second = await ctx.group.parallel(
        (
            lambda: ctx.step.wait_for_event("gate", event="par/same-2", timeout=hour),
            lambda: ctx.step.wait_for_event("other", event="par/same-3", timeout=hour),
        )
    )
    return {"second": [e is not None for e in second]}


async def _steps_next_to_a_wait(ctx: inngest.Context, race: bool) -> list[object]:
    run = _count(ctx)

    def body(name: str) -> Callable[[], Awaitable[str]]:
        async def step() -> str:
            ran[run].append(name)
            return name

        return step

    mode = inngest.ParallelMode.RACE if race else inngest.ParallelMode.WAIT
    done = await ctx.group.parallel(
        (
            lambda: ctx.step.run("p1", body("p1")),
            lambda: ctx.step.run("p2", body("p2")),
            lambda: ctx.step.run("p3", body("p3")),
            lambda: ctx.step.wait_for_event(
                "hold", event="par/planned-release", timeout=datetime.timedelta(hours=1)
            ),
        ),
        parallel_mode=mode,
    )
    return [x if isinstance(x, str) else x is not None for x in done]


@client.create_function(
    fn_id="planned-wait", trigger=inngest.TriggerEvent(event="par/planned-wait"), retries=0
)
async def planned_wait(ctx: inngest.Context) -> object:
    """Three steps next to a wait in one wait-mode group (a pass cut by the request limit
    leaves planned steps unsent)."""
    return await _steps_next_to_a_wait(ctx, False)


@client.create_function(
    fn_id="planned-race", trigger=inngest.TriggerEvent(event="par/planned-race"), retries=0
)
async def planned_race(ctx: inngest.Context) -> object:
    """The same group in race mode."""
    return await _steps_next_to_a_wait(ctx, True)


@client.create_function(fn_id="doubler", trigger=inngest.TriggerEvent(event="par/double"))
async def doubler(ctx: inngest.Context) -> int:
    return int(ctx.event.data["n"]) * 2  # type: ignore[call-overload]


@client.create_function(
    fn_id="parallel-mixed", trigger=inngest.TriggerEvent(event="par/mixed"), retries=0
)
async def parallel_mixed(ctx: inngest.Context) -> object:
    """An invoke, two runs and a sent event in one group, then one more step."""
    run = _count(ctx)

    async def body(name: str) -> str:
        ran[run].append(name)
        return name

    group = await ctx.group.parallel(
        (
            lambda: ctx.step.invoke("call", function=doubler, data={"n": 21}),
            lambda: ctx.step.run("1a", body, "1a"),
            lambda: ctx.step.run("1b", body, "1b"),
            lambda: ctx.step.send_event("send", inngest.Event(name="par/noop")),
        )
    )
    after = await ctx.step.run("after", body, "after")
    return {"called": group[0], "runs": [group[1], group[2]], "after": after}


@client.create_function(
    fn_id="big-steps", trigger=inngest.TriggerEvent(event="big/steps"), retries=0
)
async def big_steps(ctx: inngest.Context) -> dict[str, int]:
    """``n`` steps (default 10) each returning ``size`` bytes (default 1 MiB): past 4 MiB the
    requests carry no memo and the SDK fetches it (``use_api``)."""
    run = _count(ctx)
    n, size = int(ctx.event.data.get("n", 10)), int(ctx.event.data.get("size", 1 << 20))  # type: ignore[arg-type]
    total = 0
    for i in range(n):

        async def big(i: int = i) -> str:
            ran[run].append(f"big-{i}")
            return str(i % 10) * size

        out = await ctx.step.run(f"big-{i}", big)
        assert out == str(i % 10) * size
        total += len(out)
    return {"steps": n, "bytes": total}


@client.create_function(
    fn_id="big-batch",
    trigger=inngest.TriggerEvent(event="big/batch"),
    batch_events=inngest.Batch(max_size=10, timeout=datetime.timedelta(minutes=1)),
    retries=0,
)
async def big_batch(ctx: inngest.Context) -> dict[str, int]:
    """A batch of 10 large events: past 4 MiB the SDK fetches the batch (``use_api``)."""
    _count(ctx)
    return {
        "events": len(ctx.events),
        "bytes": sum(len(str(e.data["blob"])) for e in ctx.events),
    }


@client.create_function(fn_id="ai-ask", trigger=inngest.TriggerEvent(event="ai/ask"), retries=1)
async def ai_ask(ctx: inngest.Context) -> dict[str, object]:
    """``step.ai.infer`` against the model at ``event.data.url`` (``format``: ``openai`` or
    ``anthropic``); a failed call is caught and reported."""
    run = _count(ctx)
    url = str(ctx.event.data["url"])
    adapter: inngest.experimental.ai.BaseAdapter
    if ctx.event.data.get("format") == "anthropic":
        adapter = inngest.experimental.ai.anthropic.Adapter(
            auth_key="sk-ant-test", base_url=url, model="claude-test"
        )
    else:
        adapter = inngest.experimental.ai.openai.Adapter(
            auth_key="sk-test", base_url=url, model="gpt-test"
        )
    try:
        answer = await ctx.step.ai.infer(
            "ask", adapter=adapter, body={"messages": [{"role": "user", "content": "hi"}]}
        )
    except inngest.StepError as exc:
        return {"failed": exc.name, "message": exc.message}

    async def after() -> str:
        ran[run].append("after")
        return "after"

    await ctx.step.run("after", after)
    return {"answer": answer}


@client.create_function(fn_id="sequence", trigger=inngest.TriggerEvent(event="seq/run"), retries=0)
async def sequence(ctx: inngest.Context) -> list[int]:
    """Five sequential steps (a sleep after the second when ``event.data.nap``)."""
    run = _count(ctx)
    out = []
    for i in range(1, 6):

        async def body(i: int = i) -> int:
            ran[run].append(f"s{i}")
            return i * 10

        out.append(await ctx.step.run(f"s{i}", body))
        if i == 2 and ctx.event.data.get("nap"):
            await ctx.step.sleep("nap", datetime.timedelta(seconds=1))
    return out


app = fastapi.FastAPI()
inngest.fast_api.serve(
    app,
    client,
    [
        retry_parallel,
        parallel_wait,
        parallel_race,
        race_retry,
        race_same_name,
        planned_wait,
        planned_race,
        doubler,
        parallel_mixed,
        big_steps,
        big_batch,
        ai_ask,
        sequence,
    ],
)


@app.get("/state/{run_id}")
async def state(run_id: str) -> dict[str, object]:
    return {"requests": requests.get(run_id, 0), "ran": ran.get(run_id, [])}


busy = 0  # requests to the Inngest endpoint being handled (GET /busy)


@app.get("/busy")
async def busy_requests() -> dict[str, int]:
    return {"busy": busy}


async def counted(scope: dict[str, object], receive: object, send: object) -> None:
    """The app, counting the requests to its Inngest endpoint until each is handled (a plain
    ASGI wrapper: a request whose client went away is handled to its end all the same)."""
    global busy
    if scope["type"] != "http" or scope["path"] != "/api/inngest":
        return await app(scope, receive, send)  # type: ignore[arg-type]
    busy += 1
    try:
        await app(scope, receive, send)  # type: ignore[arg-type]
    finally:
        busy -= 1


if __name__ == "__main__":
    uvicorn.run(counted, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
