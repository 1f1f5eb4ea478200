"""``py_app.py``'s functions written as sync functions on the official Python SDK, served by
Flask: the SDK's other serve handler and its sync execution path (``inngest.ContextSync``).

Started by the protocol tests as the ``pyflask`` kind (``python py_flask_app.py``), with the
same environment as ``py_app.py`` (its client and flow-control options are reused).
"""

from __future__ import annotations

import datetime
import logging
import os

import flask
import inngest
import inngest.flask
from py_app import BATCH, FLOW, client


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="test/child"))
def child(ctx: inngest.ContextSync) -> dict[str, int]:
    return {"doubled": ctx.event.data["n"] * 2}  # type: ignore[operator]


@client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="test/steps"))
def steps(ctx: inngest.ContextSync) -> dict[str, object]:
    n = ctx.event.data["n"]
    a = ctx.step.run("a", lambda: {"n": n + 1})  # type: ignore[operator]
    ctx.step.sleep("nap", datetime.timedelta(seconds=2))
    got = ctx.step.wait_for_event(
        "wait",
        event="test/go",
        timeout=datetime.timedelta(hours=1),
        if_exp="async.data.n == event.data.n",
    )

    def times(k: int) -> int:
        return a["n"] * k

    p1, p2 = ctx.group.parallel(
        (lambda: ctx.step.run("p1", times, 10), lambda: ctx.step.run("p2", times, 100))
    )
    called = ctx.step.invoke("call", function=child, data={"n": p1})
    ctx.step.send_event("announce", inngest.Event(name="test/done", data={"p2": p2}))
    return {
        "a": a,
        "waited": got.data if got is not None else None,
        "p1": p1,
        "p2": p2,
        "called": called,
    }


@client.create_function(fn_id="failing", trigger=inngest.TriggerEvent(event="test/fail"), retries=2)
def failing(ctx: inngest.ContextSync) -> None:
    how = ctx.event.data.get("how")
    if how == "step":

        def boom() -> None:
            raise ValueError("step went wrong")

        ctx.step.run("boom", boom)
    if how == "retry-after":
        raise inngest.RetryAfterError("come back later", datetime.timedelta(seconds=30))
    if how == "non-retriable":
        raise inngest.NonRetriableError("never again")
    raise RuntimeError("function went wrong")


def flow_failed(ctx: inngest.ContextSync) -> str:
    return "handled"


@client.create_function(**FLOW, on_failure=flow_failed)
def flow(ctx: inngest.ContextSync) -> str:
    return "ok"


@client.create_function(**BATCH)
def batch(ctx: inngest.ContextSync) -> int:
    return len(ctx.events)


app = flask.Flask(__name__)
inngest.flask.serve(app, client, [child, steps, failing, flow, batch])

if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
