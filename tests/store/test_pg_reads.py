"""The PostgreSQL store's hot reads (``load_run``, ``next_due_at``) use connections that are not
checked before use: a read that finds its connection ended by the server is made again on
another, unseen by the caller."""

from __future__ import annotations

from tests.store.builders import SERVED, T0, start

import pgtest
from stepline.store.postgres import PostgresStore


def test_a_read_whose_connection_was_ended_is_made_again(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        start(store, "r1", now=T0)
        assert store.load_run("nope") is None  # a read connection is pooled now
        assert store.next_due_at(SERVED) == T0
        pgtest.end_other_sessions(pg_url)
        state = store.load_run("r1")
        assert state is not None and state.run.run_id == "r1"
        pgtest.end_other_sessions(pg_url)
        assert store.next_due_at(SERVED) == T0
        assert store.next_due_at() == T0
    finally:
        store.close()
