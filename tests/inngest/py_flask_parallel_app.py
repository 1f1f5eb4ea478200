"""``py_parallel_app.py``'s parallel-step functions written as sync functions on the official
Python SDK, served by Flask: the request counts of parallel steps (wait and race mode, retries,
invokes) proved on the SDK's other serve handler and its sync execution path
(``inngest.ContextSync``, ``ctx.group.parallel`` of ``GroupSync``).

Started by the parallel-step tests as the ``pyflask`` kind (``python
py_flask_parallel_app.py``), with ``py_app.py``'s environment (its client is reused); each
function counts the requests it is called with and the step bodies it runs (per run), served at
``GET /state/{run_id}``, and how many requests it is handling (``GET /busy``).
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import flask
import inngest
import inngest.flask
from py_app import client

HOUR = datetime.timedelta(hours=1)
lock = threading.Lock()
requests: dict[str, int] = defaultdict(int)  # run id -> requests its handler was called for
ran: dict[str, list[str]] = defaultdict(list)  # run id -> step bodies run, in order
a2_done: dict[str, threading.Event] = defaultdict(threading.Event)


def _count(ctx: inngest.ContextSync) -> str:
    with lock:
        requests[ctx.run_id] += 1
    return ctx.run_id


def _record(run: str, name: str) -> int:
    """Note that step body ``name`` ran in run ``run``: how many times it has now."""
    with lock:
        ran[run].append(name)
        return ran[run].count(name)


def _flaky(run: str) -> Callable[[], str]:
    """A step body that fails on its first attempt in run ``run``."""

    def flaky() -> str:
        if _record(run, "flaky") == 1:
            raise ValueError("the first attempt fails")
        return "ok"

    return flaky


@client.create_function(
    fn_id="retry-parallel", trigger=inngest.TriggerEvent(event="par/retry"), retries=2
)
def retry_parallel(ctx: inngest.ContextSync) -> dict[str, object]:
    run = _count(ctx)
    flaky_out, released = ctx.group.parallel(
        (
            lambda: ctx.step.run("flaky", _flaky(run)),
            lambda: ctx.step.wait_for_event("release", event="par/release", timeout=HOUR),
        )
    )
    return {"flaky": flaky_out, "released": released is not None}


def _groups(ctx: inngest.ContextSync, run: str, *, race: bool):  # type: ignore[no-untyped-def]
    def body(name: str) -> str:
        if race and name == "b.1":  # proves no coalescing: b.1 ends only once a.2 has run
            a2_done[run].wait(timeout=60)
        _record(run, name)
        if name == "a.2":
            a2_done[run].set()
        return name

    def fast() -> list[str]:
        return [ctx.step.run("a.1", body, "a.1"), ctx.step.run("a.2", body, "a.2")]

    def slow() -> list[str]:
        return [ctx.step.run("b.1", body, "b.1"), ctx.step.run("b.2", body, "b.2")]

    return fast, slow


@client.create_function(
    fn_id="parallel-wait", trigger=inngest.TriggerEvent(event="par/wait"), retries=0
)
def parallel_wait(ctx: inngest.ContextSync) -> object:
    run = _count(ctx)
    return ctx.group.parallel(_groups(ctx, run, race=False))


@client.create_function(
    fn_id="parallel-race", trigger=inngest.TriggerEvent(event="par/race"), retries=0
)
def parallel_race(ctx: inngest.ContextSync) -> object:
    run = _count(ctx)
    return ctx.group.parallel(_groups(ctx, run, race=True), parallel_mode=inngest.ParallelMode.RACE)


@client.create_function(
    fn_id="race-retry", trigger=inngest.TriggerEvent(event="par/race-retry"), retries=2
)
def race_retry(ctx: inngest.ContextSync) -> dict[str, object]:
    run = _count(ctx)

    def chain() -> object:
        return [
            ctx.step.run("flaky", _flaky(run)),
            ctx.step.run("after", lambda: _record(run, "after") and "after"),
        ]

    def release() -> object:
        return ctx.step.wait_for_event("release", event="par/race-release", timeout=HOUR)

    chained, released = ctx.group.parallel(
        (chain, release), parallel_mode=inngest.ParallelMode.RACE
    )
    return {"chain": chained, "released": released is not None}


@client.create_function(fn_id="doubler", trigger=inngest.TriggerEvent(event="par/double"))
def doubler(ctx: inngest.ContextSync) -> int:
    return int(ctx.event.data["n"]) * 2  # type: ignore[call-overload]


@client.create_function(
    fn_id="parallel-mixed", trigger=inngest.TriggerEvent(event="par/mixed"), retries=0
)
def parallel_mixed(ctx: inngest.ContextSync) -> object:
    run = _count(ctx)

    def body(name: str) -> str:
        _record(run, name)
        return name

    group = ctx.group.parallel(
        (
            lambda: ctx.step.invoke("call", function=doubler, data={"n": 21}),
            lambda: ctx.step.run("1a", body, "1a"),
            lambda: ctx.step.run("1b", body, "1b"),
            lambda: ctx.step.send_event("send", inngest.Event(name="par/noop")),
        )
    )
    after = ctx.step.run("after", body, "after")
    return {"called": group[0], "runs": [group[1], group[2]], "after": after}


app = flask.Flask(__name__)
inngest.flask.serve(
    app,
    client,
    [retry_parallel, parallel_wait, parallel_race, race_retry, doubler, parallel_mixed],
)


@app.get("/state/<run_id>")
def state(run_id: str) -> dict[str, object]:
    with lock:
        return {"requests": requests.get(run_id, 0), "ran": list(ran.get(run_id, []))}


busy = 0  # requests to the Inngest endpoint being handled (GET /busy)
handle = app.wsgi_app


@app.get("/busy")
def busy_requests() -> dict[str, int]:
    with lock:
        return {"busy": busy}


def counted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The app, counting the requests to its Inngest endpoint until each is handled."""
    global busy
    if environ.get("PATH_INFO") != "/api/inngest":
        return handle(environ, start_response)
    with lock:
        busy += 1
    try:
        return list(handle(environ, start_response))
    finally:
        with lock:
            busy -= 1


app.wsgi_app = counted  # type: ignore[method-assign]


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
