"""The tests' WarmStore (tests/pgtest.py) behaves as a PostgresStore where a test can tell."""

from __future__ import annotations

import pytest

import pgtest
from stepline.store.postgres import PostgresStore

from .builders import start


@pytest.mark.parametrize("warm", [False, True], ids=["store", "warm_store"])
def test_a_store_used_after_close_fails(pg_url: str, warm: bool) -> None:
    # an engine thread that touches the store after its test closed it must fail that test (as
    # on a real PostgresStore, whose pools are closed), not write into the next test's database
    store = pgtest.warm_store(pg_url) if warm else PostgresStore(pg_url)
    store.migrate()
    store.close()
    with pytest.raises(Exception, match=r"closed|not open"):
        start(store, "r1")


def test_a_warm_store_closed_leaves_the_pools_open_for_the_next_test(pg_url: str) -> None:
    first = pgtest.warm_store(pg_url)
    first.migrate()
    first.close()
    second = pgtest.warm_store(pg_url)
    start(second, "r1")
    assert second.load_run("r1") is not None
    second.close()
