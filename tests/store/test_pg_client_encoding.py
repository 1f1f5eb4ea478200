"""The PostgreSQL store speaks UTF-8 on every connection whatever the session's default
``client_encoding`` (a URL's, ``PGCLIENTENCODING``, ``ALTER DATABASE/ROLE … SET``). Before
(review, twentieth stop): texts went in the session's encoding — a LATIN1 client encoding
refused a step error with a character LATIN1 lacks (the run failed), where the lone step's
lean lane, which encodes UTF-8 itself, would store mojibake — and on a ``SQL_ASCII`` database
psycopg sent every ``str`` as bytes (the first lease failed: "operator does not exist: text =
bytea")."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from stepline import App, Context, Event, NonRetriableError, StepError, TriggerEvent
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


def _sql_ascii_database(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    with psycopg.connect(url, autocommit=True, dbname="postgres") as conn:
        conn.execute('DROP DATABASE IF EXISTS "stepline_sql_ascii" WITH (FORCE)')
        conn.execute(
            "CREATE DATABASE stepline_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' "
            "LC_CTYPE 'C' TEMPLATE template0"
        )
    return f"postgresql://{info['user']}@{info['host']}:{info['port']}/stepline_sql_ascii"


@pytest.mark.parametrize("session", ["latin1-client", "sql-ascii-database"])
async def test_texts_are_kept_whatever_the_sessions_encoding(pg_url: str, session: str) -> None:
    if session == "latin1-client":
        url = pg_url + ("&" if "?" in pg_url else "?") + "client_encoding=LATIN1"
    else:
        url = _sql_ascii_database(pg_url)
    async with TestEngine(_app(), store=url) as t:
        run = await t.trigger(Event("go", {"note": "naïve ✓"}), timeout=30)
        history = await t.history(run.run_id)
    assert run.status == "COMPLETED", run.error
    assert run.output == "échec ✓ 🙂"
    assert [(s.id, s.output) for s in run.steps[:2]] == [("first", 0), ("café", "crème")]
    assert run.steps[2].error is not None and run.steps[2].error["message"] == "échec ✓ 🙂"
    assert [h.step_id for h in history if h.kind == "STEP_COMPLETED"] == ["first", "café"]
