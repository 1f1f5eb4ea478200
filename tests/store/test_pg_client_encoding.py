"""The PostgreSQL store speaks UTF-8 on every connection whatever the session's default
``client_encoding`` (a URL's, ``PGCLIENTENCODING``, ``ALTER DATABASE/ROLE … SET``). Before
(review, twentieth stop): texts went in the session's encoding — a LATIN1 client encoding
refused a step error with a character LATIN1 lacks (the run failed), where the lone step's
lean lane, which encodes UTF-8 itself, would store mojibake — and on a ``SQL_ASCII`` database
psycopg sent every ``str`` as bytes (the first lease failed: "operator does not exist: text =
bytea")."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from stepline import App, Context, Event, NonRetriableError, StepError, TriggerEvent
from stepline.store.postgres import PostgresStore
from stepline.testing import TestEngine


def _app() -> App:
    app = App("encodings")

    @app.function(id="f", trigger=TriggerEvent("go"), retries=0)
    async def f(ctx: Context) -> Any:
        await ctx.step.run("first", lambda: 0)
        await ctx.step.run("café", lambda: "crème")

        def fail() -> None:
            raise NonRetriableError("échec ✓ 🙂")

        try:
            await ctx.step.run("s", fail)
        except StepError as exc:
            return exc.error_message
        return None

    return app


def _sql_ascii_database(url: str, name: str) -> str:
    """A fresh SQL_ASCII database ``name`` on ``url``'s cluster: one name a test (two tests
    sharing one ran at once on two xdist workers, and one's FORCE drop ended the other's
    sessions mid-commit: the lead's red gate 07:17)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    with psycopg.connect(url, autocommit=True, dbname="postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' "
            "LC_CTYPE 'C' TEMPLATE template0"
        )
    return f"postgresql://{info['user']}@{info['host']}:{info['port']}/{name}"


@pytest.mark.parametrize("session", ["latin1-client", "sql-ascii-database"])
async def test_texts_are_kept_whatever_the_sessions_encoding(pg_url: str, session: str) -> None:
    if session == "latin1-client":
        url = pg_url + ("&" if "?" in pg_url else "?") + "client_encoding=LATIN1"
    else:
        url = _sql_ascii_database(pg_url, "stepline_sql_ascii_texts")
    async with TestEngine(_app(), store=url) as t:
        run = await t.trigger(Event("go", {"note": "naïve ✓"}), timeout=30)
        history = await t.history(run.run_id)
    assert run.status == "COMPLETED", run.error
    assert run.output == "échec ✓ 🙂"
    assert [(s.id, s.output) for s in run.steps[:2]] == [("first", 0), ("café", "crème")]
    assert run.steps[2].error is not None and run.steps[2].error["message"] == "échec ✓ 🙂"
    assert [h.step_id for h in history if h.kind == "STEP_COMPLETED"] == ["first", "café"]


def _until(what: str, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)  # real time: the poll interval; the deadline bounds the wait


@pytest.mark.parametrize("session", ["latin1-client", "sql-ascii-database"])
def test_the_wake_up_listener_reads_a_payload_that_is_not_ascii(pg_url: str, session: str) -> None:
    # before: on a SQL_ASCII database psycopg decoded the payload as ASCII and the
    # UnicodeDecodeError ended the listening thread for good; under a LATIN1 client encoding
    # the server ended the listening connection (a character LATIN1 lacks): the notification
    # was lost (a hand-off's payload names its function and event raw: json_build_array)
    if session == "latin1-client":
        url = pg_url + ("&" if "?" in pg_url else "?") + "client_encoding=LATIN1"
    else:
        url = _sql_ascii_database(pg_url, "stepline_sql_ascii_listener")
    woken: list[tuple[tuple[str, str], ...]] = []
    store = PostgresStore(url)
    stop = store.watch(lambda named: woken.append(tuple(named)))
    try:
        _until("the listener's first look", lambda: woken)  # it listens
        with psycopg.connect(url, autocommit=True, client_encoding="UTF8") as conn:
            conn.execute("SELECT pg_notify('stepline', %s)", ('[["reçue ✓","r1"]]',))
            _until("the named wake-up", lambda: (("reçue ✓", "r1"),) in woken)
            count = len(woken)
            conn.execute("SELECT pg_notify('stepline', '')")  # and it listens still
            _until("a plain wake-up after it", lambda: len(woken) > count)
    finally:
        stop()
        store.close()
