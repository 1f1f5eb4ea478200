"""A PostgreSQL store that gets no connection in time says why its last attempt to connect
failed (``_database._Pool.last_failure``): psycopg_pool's ``PoolTimeout`` says only how long it
waited, and the cause (no such database, a role or password refused, a bad ``sslmode``) was in
its log warnings alone: a worker started on a misspelt database said "retry later" and nothing
else (review, twentieth stop)."""

from __future__ import annotations

import psycopg
import pytest

from stepline.errors import StoreUnavailable
from stepline.store.postgres import PostgresStore


def test_a_call_that_gets_no_connection_in_time_says_why_the_last_attempt_failed(
    pg_database: str,
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(pg_database)
    missing = psycopg.conninfo.make_conninfo(**{**info, "dbname": "no_such_db"})
    store = PostgresStore(missing, connect_timeout=2)
    try:
        with pytest.raises(StoreUnavailable) as raised:
            store.load_run("r")
    finally:
        store.close()
    assert "couldn't get a connection after 2" in str(raised.value)
    assert 'database "no_such_db" does not exist' in str(raised.value)
