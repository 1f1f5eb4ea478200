"""Names a store keeps in index entries — an App id, a worker id, the event name of a trigger or
of a ``cancel_on`` — are bounded and checked where they are given, the same on every store.
Before (lead, nineteenth stop): a 6,000-character App id ran on SQLite and the memory store,
while PostgreSQL refused the worker's registration (a B-tree entry over ~2.7 kB), and the
worker stopped; a trigger or a ``cancel_on`` on an event name no event can have (over 255
characters, or starting with a space) was accepted at definition and refused by PostgreSQL's
trigger index at start; a worker id was not checked at all (a NUL in ``STEPLINE_WORKER_ID``
stopped a PostgreSQL worker). The longest names allowed, in four-byte characters, run on every
store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pgtest
import sqlitetest
from stepline import App, CancelOn, Context, Event, TriggerEvent
from stepline._text import MAX_ID_CHARS
from stepline.errors import ConfigError, EventError
from stepline.sdk.event import MAX_EVENT_NAME_CHARS
from stepline.testing import TestEngine

WIDE = "\U0001f600"  # four bytes in UTF-8


def test_an_app_id_over_its_bound_is_refused_naming_it() -> None:
    App("a" * MAX_ID_CHARS)
    with pytest.raises(ConfigError, match=rf"App id 'aaaa.*' is {MAX_ID_CHARS + 1} char"):
        App("a" * (MAX_ID_CHARS + 1))


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("e" * (MAX_EVENT_NAME_CHARS + 1), f"is {MAX_EVENT_NAME_CHARS + 1} characters long"),
        (" leading", "starts with a space"),
    ],
    ids=["long", "space"],
)
def test_a_trigger_or_cancel_on_no_event_can_match_is_refused_at_definition(
    app: App, name: str, said: str
) -> None:
    with pytest.raises(ConfigError, match=said):
        TriggerEvent(name)
    with pytest.raises(ConfigError, match=said):
        CancelOn(name, match="data.id")
    with pytest.raises(EventError, match=said):  # and a send of it says the same
        app.send(Event(name, {}))


def test_a_refused_names_message_shows_a_bounded_part_of_it() -> None:
    with pytest.raises(ConfigError) as refused:
        TriggerEvent("e" * 100_000)
    assert len(str(refused.value)) < 400


@pytest.mark.parametrize(
    ("worker_id", "said"),
    [
        ("w" * (MAX_ID_CHARS + 1), "char"),
        ("a\x00b", "contains a NUL character"),
        ("a\ud800b", "is not valid Unicode"),
    ],
    ids=["long", "nul", "surrogate"],
)
async def test_a_worker_id_that_cannot_be_stored_is_refused_naming_it(
    app: App, worker_id: str, said: str
) -> None:
    async with TestEngine(app, store="memory") as t:
        with pytest.raises(ConfigError, match=f"worker id .*{said}"):
            t.app.make_worker(worker_id=worker_id)


async def test_the_longest_names_in_wide_characters_run_on_every_store(
    store_kind: str, tmp_path: Path
) -> None:
    app = App(WIDE * MAX_ID_CHARS)
    name, cancel = WIDE * MAX_EVENT_NAME_CHARS, "c" + WIDE * (MAX_EVENT_NAME_CHARS - 1)

    @app.function(id="f", trigger=TriggerEvent(name), cancel_on=[CancelOn(cancel, match="data.k")])
    async def f(ctx: Context) -> Any:
        return await ctx.step.run("a", lambda: 1)

    path = tmp_path / "stepline.db"
    if store_kind == "sqlite":
        sqlitetest.fresh_database(path)
    async with TestEngine(app, store=pgtest.engine_store(store_kind), path=path) as t:
        async with t.app.worker(worker_id=WIDE * MAX_ID_CHARS, poll_interval=None) as wide:
            assert wide.ready.is_set()  # registered (PostgreSQL refused a long id: it stopped)
        run = await t.trigger(Event(name, {"k": 1}))
        assert run.status == "COMPLETED" and run.output == 1
