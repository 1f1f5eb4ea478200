"""A NUL character (``\\x00``) or a lone surrogate (``\\ud800``: a Python string that is not
valid Unicode) in a step id, an event name (sent, waited for, a trigger's, a cancel_on's), an
event id, an expression or an app id is refused at the edge, the same on every store:
PostgreSQL's text columns cannot hold a NUL, and a pass commit it reached was refused for good
there, which stopped the worker; every worker that resumed the run stopped again (a poison run;
review, sixteenth stop). No store can encode a lone surrogate: SQLite and PostgreSQL raised
``UnicodeEncodeError`` from deep inside a send or a commit (a raw error to the sender, a run
failed with a codec message), the memory store kept it (lead, eighteenth stop). Refused at the
step, the error reaches the function where it called the step (issue 6 item 1: an error about
one step fails that step) and no worker stops (item 7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stepline import App, CancelOn, Context, Event, TriggerEvent
from stepline.errors import ConfigError, EventError, StepError
from stepline.testing import TestEngine

# a character no store can hold as text, and how its refusal names it
BAD = pytest.mark.parametrize(
    ("bad", "said"),
    [("\x00", "contains a NUL character"), ("\ud800", "is not valid Unicode")],
    ids=["nul", "surrogate"],
)


@BAD
@pytest.mark.parametrize(
    "where", ["step id", "event name", "event id", "wait event name", "wait if_"]
)
async def test_a_nul_in_a_step_id_or_a_sent_event_fails_the_step_not_the_worker(
    app: App, make_engine: Callable[..., TestEngine], where: str, bad: str, said: str
) -> None:
    @app.function(id="nul", trigger=TriggerEvent("go"), retries=3)
    async def nul(ctx: Context) -> Any:
        if where == "step id":
            return await ctx.step.run(f"a{bad}b", lambda: 1)
        if where == "wait event name":
            return await ctx.step.wait_for_event("w", event=f"a{bad}b", timeout="1h")
        if where == "wait if_":  # the wait's expression is stored as text too (review, 17th)
            return await ctx.step.wait_for_event(
                "w", event="x", if_=f'async.data.k == "a{bad}b"', timeout="1h"
            )
        event = Event(f"a{bad}b", {}) if where == "event name" else Event("x", {}, id=f"x{bad}y")
        try:
            await ctx.step.send_event("send", event)
        except StepError as exc:  # refused at the step (its failure): the function may catch it
            return str(exc)
        return "sent"

    @app.function(id="after", trigger=TriggerEvent("after"))
    async def after(ctx: Context) -> Any:
        return await ctx.step.run("x", lambda: "fine")

    async with make_engine() as t:
        run = await t.trigger(Event("go"), timeout=30)
        if where in ("step id", "wait event name", "wait if_"):  # a mistake in the code: no retry
            assert run.status == "FAILED"
            assert run.error is not None and said in run.error["message"], run.error
            assert run.attempt == 0
        else:
            assert run.status == "COMPLETED", run.error
            assert said in run.output
        # the worker still serves other runs
        later = await t.trigger(Event("after"), timeout=30)
        assert later.status == "COMPLETED"
        assert later.output == "fine"


@BAD
@pytest.mark.parametrize("where", ["name", "id"])
def test_a_nul_in_a_sent_events_name_or_id_is_an_event_error(
    app: App, where: str, bad: str, said: str
) -> None:
    event = Event(f"a{bad}b", {}) if where == "name" else Event("x", {}, id=f"x{bad}y")
    with pytest.raises(EventError, match=said):
        app.send(event)


def test_a_surrogate_in_an_app_id_a_trigger_or_a_cancel_on_is_refused_at_definition() -> None:
    with pytest.raises(ConfigError, match="is not valid Unicode"):
        TriggerEvent("a\ud800b")
    with pytest.raises(ConfigError, match="is not valid Unicode"):
        CancelOn("a\ud800b", match="data.id")
    with pytest.raises(ConfigError, match=r"App id 'a\\ud800b' is not valid Unicode"):
        App("a\ud800b")
    # an expression's text (was the binding's "compile(): incompatible function arguments")
    with pytest.raises(ConfigError, match=r"at column 18: it is not valid Unicode"):
        TriggerEvent("a", if_='event.data.k == "\ud800"')


def test_a_nul_in_an_app_id_a_trigger_or_a_cancel_on_is_refused_at_definition() -> None:
    with pytest.raises(ConfigError, match="contains a NUL character"):
        TriggerEvent("a\x00b")
    with pytest.raises(ConfigError, match="contains a NUL character"):
        CancelOn("a\x00b", match="data.id")
    with pytest.raises(ConfigError, match=r"App id 'a\\x00b' contains a NUL character"):
        App("a\x00b")  # a worker's registration on PostgreSQL was refused (it stopped)
    # an expression's text is stored too (a trigger's filter, a cancel_on's condition)
    with pytest.raises(ConfigError, match=r"at column 18: it contains a NUL character"):
        TriggerEvent("a", if_='event.data.k == "\x00"')
    with pytest.raises(ConfigError, match="contains a NUL character"):
        CancelOn("a", if_='async.data.k == "\x00"')
