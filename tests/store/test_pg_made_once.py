"""A PostgreSQL transaction's index paths and trigger-catalog view are made at their first
read and kept with the transaction (``tx._MadeOnce``: ``functools.cached_property`` without
the lock it takes on Python 3.11), never shared between transactions."""

from __future__ import annotations

from typing import Any, cast

import psycopg

from stepline.store.postgres.tx import PostgresTx, _MadeOnce


def test_a_transaction_makes_its_index_and_catalog_view_once_for_itself() -> None:
    conn = cast(psycopg.Connection[Any], None)  # (nothing is sent: both are made lazily)
    one, other = PostgresTx(conn, optimistic=True), PostgresTx(conn, optimistic=True)
    assert "_index" not in vars(one) and "_triggers" not in vars(one)
    index, view = one._index, one._triggers
    assert one._index is index and one._triggers is view
    assert vars(one)["_index"] is index and vars(one)["_triggers"] is view
    assert other._index is not index and other._triggers is not view
    assert isinstance(vars(PostgresTx)["_index"], _MadeOnce)
    assert PostgresTx._index is vars(PostgresTx)["_index"]  # (read from the class: itself)
