"""One round trip's statements written at once (``store/postgres/_pipeline.py``): the rows and
errors psycopg's own execution gives, statements prepared by psycopg's cache (and prepared again
after psycopg deallocated them all), the connection idle and usable after a failure."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer
from psycopg.types.json import Jsonb

from stepline.store.postgres._pipeline import _convert, _converted, _Query, at_sync, send_all

TABLE = "CREATE TEMP TABLE t (id int PRIMARY KEY, name text, score float8, tags text[])"
INSERT = "INSERT INTO t (id, name, score, tags) VALUES (%s, %s, %s, %s)"
INSERT_NAMED = "INSERT INTO t (id, name) VALUES (%(id)s, %(name)s)"
SELECT = "SELECT id, name, score, tags FROM t WHERE id = ANY(%s) ORDER BY id"
# an error raised by the commit itself, as a deferred constraint, a full NOTIFY queue or a
# serialization failure would
REFUSED_AT_COMMIT = """
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON t
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();
"""


def _connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(TABLE)
    return conn


def _prepared(conn: psycopg.Connection[Any]) -> set[str]:
    found = conn.execute("SELECT statement FROM pg_prepared_statements", prepare=False)
    return {r[0] for r in found}


def test_each_statement_runs_in_order_and_returns_what_a_cursor_returns(pg_url: str) -> None:
    with _connect(pg_url) as conn:
        values: list[tuple[Any, ...]] = [
            (1, "a", 1.5, ["x", "y"]),
            (2, None, float("inf"), []),
            (3, "é'\"\\", -0.0, None),
        ]
        found = send_all(
            conn,
            [("BEGIN", None)]
            + [(INSERT, v) for v in values]
            + [(INSERT_NAMED, {"id": 4, "name": "d"}), (SELECT, ([1, 2, 3, 4],))]
            + [("SELECT %s::jsonb, %b::bytea", (Jsonb({"k": [1, None]}), b"\x00\xff"))]
            + [("COMMIT", None)],
        )
        assert found[:5] == [None] * 5  # BEGIN and the writes return no rows
        expected = conn.execute(SELECT, ([1, 2, 3, 4],)).fetchall()
        assert found[5] == expected == [(*v, None)[:4] for v in values] + [(4, "d", None, None)]
        assert found[6] == [({"k": [1, None]}, b"\x00\xff")]
        assert found[7] is None
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_failed_statement_raises_its_error_and_the_rest_of_the_round_trip_is_not_executed(
    pg_url: str,
) -> None:
    with _connect(pg_url) as conn:
        conn.execute(INSERT, (1, "a", 0.0, None))
        with pytest.raises(psycopg.errors.UniqueViolation):
            send_all(
                conn,
                [
                    ("BEGIN", None),
                    (INSERT, (2, "b", 0.0, None)),
                    (INSERT, (1, "again", 0.0, None)),  # fails: the rest is aborted
                    (INSERT, (3, "c", 0.0, None)),
                    ("COMMIT", None),
                ],
            )
        # the transaction is in its failed state, the connection idle (no result left to read)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,)]


def test_a_parameter_that_cannot_be_adapted_raises_before_anything_is_sent(pg_url: str) -> None:
    """Statements sent without ``BEGIN`` are one transaction, committed by the sync: none of
    them may run when one of them cannot be sent (psycopg's own pipeline runs those before)."""
    with _connect(pg_url) as conn:
        with pytest.raises(psycopg.ProgrammingError):
            send_all(conn, [(INSERT, (1, "a", 0.0, None)), (INSERT, (2, object(), 0.0, None))])
        with pytest.raises(psycopg.DataError):  # a NUL in a text, refused by psycopg itself
            send_all(conn, [(INSERT, (1, "a", 0.0, None)), (INSERT, (2, "\x00", 0.0, None))])
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT id FROM t").fetchall() == []
        assert send_all(conn, [(INSERT, (1, "a", 0.0, None)), ("SELECT 1", None)])[1] == [(1,)]


def test_a_statement_sent_six_times_is_prepared_and_prepared_again_after_a_deallocation(
    pg_url: str,
) -> None:
    with _connect(pg_url) as conn:
        for i in range(6):  # psycopg prepares a text at its sixth execution
            assert _prepared(conn) == set()
            send_all(conn, [(INSERT, (i, "a", 0.0, None)), (SELECT, ([i],))])
        assert len(_prepared(conn)) == 2  # both texts, psycopg's cache (as a cursor's would be)
        assert send_all(conn, [(SELECT, ([4],))]) == [[(4, "a", 0.0, None)]]
        # a ROLLBACK through psycopg makes it deallocate every prepared statement: the next
        # round trips prepare them again instead of naming statements that are gone
        conn.execute("BEGIN")
        conn.execute("ROLLBACK")
        conn.execute("SELECT 1")
        assert _prepared(conn) == set()
        for i in range(7):
            assert send_all(conn, [(SELECT, ([i % 6],))]) == [[(i % 6, "a", 0.0, None)]]
        assert len(_prepared(conn)) == 1


def test_a_statement_to_prepare_in_an_aborted_round_trip_is_prepared_at_a_later_use(
    pg_url: str,
) -> None:
    with _connect(pg_url) as conn:
        conn.execute(INSERT, (0, "a", 0.0, None))
        for _ in range(5):
            send_all(conn, [(SELECT, ([0],))])
        with pytest.raises(psycopg.errors.DivisionByZero):
            send_all(conn, [("SELECT 1 / 0", None), (SELECT, ([0],))])  # its Parse is aborted
        assert _prepared(conn) == set()
        for _ in range(7):  # never named while not prepared; counted again, then prepared
            assert send_all(conn, [(SELECT, ([0],))]) == [[(0, "a", 0.0, None)]]
        assert len(_prepared(conn)) == 1


def test_a_deallocation_a_failed_round_trip_left_waiting_spares_statements_prepared_since(
    pg_url: str,
) -> None:
    """A ``DROP`` clears psycopg's cache; its ``DEALLOCATE ALL`` waits for the next statement
    when the round trip failed. It runs before the next round trip, not after the statement
    that round trip prepared (a text sent six times), which it would drop while the cache
    still names it (review2's finding 4: "prepared statement _pg3_N does not exist" from then
    on)."""
    with _connect(pg_url) as conn:
        for _ in range(7):
            send_all(conn, [("SELECT %s::int", (1,)), ("SELECT 0", None)])
        with pytest.raises(psycopg.errors.DivisionByZero):
            send_all(conn, [("DROP TABLE IF EXISTS no_such_table", None), ("SELECT 1 / 0", None)])
        assert send_all(conn, [("SELECT %s::bigint", (i,)) for i in range(7)])[6] == [(6,)]
        assert send_all(conn, [("SELECT %s::bigint", (5,)), ("SELECT 0", None)])[0] == [(5,)]
        assert len(_prepared(conn)) == 1
        # left in a failed transaction, where it cannot run: nothing is prepared meanwhile
        conn.execute("BEGIN")
        conn.execute("SAVEPOINT a")
        with pytest.raises(psycopg.errors.DivisionByZero):
            send_all(conn, [("DROP TABLE IF EXISTS no_such_table", None), ("SELECT 1 / 0", None)])
        again = [("ROLLBACK TO SAVEPOINT a", None)] + [("SELECT %s::int", (i,)) for i in range(7)]
        assert send_all(conn, again)[7] == [(6,)]
        conn.execute("COMMIT")
        assert send_all(conn, [("SELECT %s::int", (5,)), ("SELECT 0", None)])[0] == [(5,)]


def test_placeholders_convert_as_a_cursor_converts_them(pg_url: str) -> None:
    """Binary array parameters (``%b``), a name used twice, a literal ``%%``."""
    statements: list[tuple[str, Any]] = [
        ("SELECT x FROM unnest(%b::text[]) AS x ORDER BY x", (["b", "a"],)),
        ("SELECT %(name)s::text || %(name)s::text, %(n)s::bigint", {"name": "ab", "n": 2**40}),
        ("SELECT %s::double precision[], 'lit%%'", ([0.5, 2.0],)),
        ("SELECT %s::bytea, %s::text", (b"\x00x", None)),
    ]
    with _connect(pg_url) as conn:
        expected = [conn.execute(query, params).fetchall() for query, params in statements]
        for _ in range(7):  # prepared by psycopg's cache meanwhile
            assert send_all(conn, statements) == expected


def test_statements_outside_begin_are_one_transaction_committed_by_the_sync(pg_url: str) -> None:
    """What an optimistic transaction sent whole in one round trip relies on (no ``BEGIN``,
    no ``COMMIT``: ``Statements.transaction``): a failure undoes the statements before it."""
    with _connect(pg_url) as conn:
        failing = [
            (INSERT, (1, "a", 0.0, None)),
            ("SELECT 1 / %s", (0,)),
            (INSERT, (2, "b", 0, None)),
        ]
        with pytest.raises(psycopg.errors.DivisionByZero):
            send_all(conn, failing)
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        ids = "SELECT txid_current()"
        found = send_all(conn, [(INSERT, (1, "a", 0.0, None)), (ids, None), (ids, None)])
        assert found[1] == found[2]  # one transaction
        assert conn.execute("SELECT id FROM t").fetchall() == [(1,)]


def test_an_error_of_the_commit_of_statements_sent_without_begin_raises(pg_url: str) -> None:
    """It comes after the last statement's result, before the sync's: the transaction was
    rolled back, never reported as done (review2's finding 1). A statement's own error is
    not the sync's."""
    with _connect(pg_url) as conn:
        conn.execute("DROP FUNCTION IF EXISTS refuse CASCADE")
        conn.execute(REFUSED_AT_COMMIT.encode())
        with pytest.raises(psycopg.errors.RaiseException, match="refused at commit") as raised:
            send_all(conn, [(INSERT, (1, "a", 0.0, None)), ("SELECT 1", None)])
        assert at_sync(raised.value)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        with pytest.raises(psycopg.errors.DivisionByZero) as raised:
            send_all(conn, [(INSERT, (1, "a", 0.0, None)), ("SELECT 1 / 0", None)])
        assert not at_sync(raised.value)
        assert send_all(conn, [("SELECT 2", None), ("SELECT 3", None)]) == [[(2,)], [(3,)]]


def test_a_text_with_positional_parameters_converts_as_psycopg_converts_it(pg_url: str) -> None:
    """``_convert``: a text's part of the conversion is made once (``_TEXTS``), its parameters
    adapted each time: the same bytes, parameters, types and formats as ``PostgresQuery``."""
    with _connect(pg_url) as conn:
        transformer, _ = _converted(conn, [])
        cases: list[tuple[str, Any]] = [
            (INSERT, (1, "a", 1.5, ["x", "y"])),
            (INSERT, [2, None, None, []]),
            ("SELECT %s::jsonb, %b::bytea, %t::int", (Jsonb({"k": 1}), b"\x00", 3)),
        ]
        for query, params in cases * 2:  # the second time from the shape kept
            ours = _convert(transformer, query, params)
            psycopgs = PostgresQuery(transformer)
            psycopgs.convert(query, params)
            assert isinstance(ours, _Query)
            assert (ours.query, list(ours.params or ()), ours.types, ours.formats) == (
                psycopgs.query,
                list(psycopgs.params or ()),
                psycopgs.types,
                psycopgs.formats,
            )


def test_named_parameters_and_none_convert_as_psycopg_converts_them(pg_url: str) -> None:
    """``_convert`` of a ``dict`` of named parameters (each name dumped once, in the order of
    its first placeholder) and of no parameters (the text as is, ``%%`` kept): the same bytes,
    parameters, types and formats as ``PostgresQuery``."""
    with _connect(pg_url) as conn:
        transformer, _ = _converted(conn, [])
        cases: list[tuple[str, Any]] = [
            (INSERT_NAMED, {"id": 4, "name": "d"}),
            (INSERT_NAMED, {"name": None, "id": 5, "unused": 1.5}),
            (
                "SELECT %(a)s::int + %(b)s::int + %(a)s::int, %(t)b::bytea",
                {"a": 1, "b": 2, "t": b"x"},
            ),
            ("SELECT 1", None),
            ("SELECT 5 %% 3, '%(a)s'", None),
        ]
        for query, params in cases * 2:  # the second time from the shape kept
            ours = _convert(transformer, query, params)
            psycopgs = PostgresQuery(transformer)
            psycopgs.convert(query, params)
            assert isinstance(ours, _Query)
            assert (ours.query, ours.params and list(ours.params), ours.types, ours.formats) == (
                psycopgs.query,
                psycopgs.params and list(psycopgs.params),
                psycopgs.types,
                psycopgs.formats,
            )
        found = send_all(
            conn, [("SELECT %(a)s::int * 10 + %(b)s::int, %(a)s::int", {"a": 4, "b": 2})]
        )
        assert found == [[(42, 4)]]


def test_other_parameters_are_psycopgs_conversion_and_raise_as_it_does(pg_url: str) -> None:
    with _connect(pg_url) as conn:
        transformer, _ = _converted(conn, [])
        with pytest.raises(psycopg.ProgrammingError):  # a parameter too few: psycopg's error
            _convert(transformer, INSERT, (1, "a", 1.5))
        with pytest.raises(psycopg.ProgrammingError):  # a name missing: psycopg's error
            _convert(transformer, INSERT_NAMED, {"id": 1})
        with pytest.raises(TypeError):  # positional placeholders given names: psycopg's error
            _convert(transformer, INSERT, {"id": 1})


def _executions(conn: psycopg.Connection[Any]) -> dict[str, int]:
    found = conn.execute(
        "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements",
        prepare=False,
    )
    return {r[0]: r[1] for r in found}


def test_a_statement_prepared_before_is_named_as_psycopgs_cache_names_it(pg_url: str) -> None:
    """A statement psycopg's cache holds prepared is sent by its name without asking the cache
    (``_pipeline._sent``): its use marked there as psycopg marks it (the order it evicts in),
    nothing counted or prepared anew; with prepared statements off, sent unprepared."""
    with _connect(pg_url) as conn:
        for i in range(6):
            send_all(conn, [(INSERT, (i, "a", 0.0, None)), (SELECT, ([i],))])
        names = conn._prepared._names
        (insert, select) = list(names)
        assert (
            insert[0] == _convert(Transformer.from_context(conn), INSERT, (0, "a", 0.0, None)).query
        )
        before, counts = _executions(conn), dict(conn._prepared._counts)
        assert send_all(conn, [(SELECT, ([1],)), (INSERT, (9, "b", 1.0, None))])[0] == [
            (1, "a", 0.0, None)
        ]
        assert list(names) == [select, insert]  # the last used last, as psycopg orders them
        assert conn._prepared._counts == counts  # nothing counted
        after = _executions(conn)
        assert after.keys() == before.keys()
        assert sorted(after[k] - before[k] for k in after) == [1, 1]
        conn.prepare_threshold = None  # off: nothing sent by a name
        assert send_all(conn, [(SELECT, ([9],))]) == [[(9, "b", 1.0, None)]]
        assert _executions(conn) == after
