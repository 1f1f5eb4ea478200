"""PostgreSQL hand-offs: the transaction that makes a new run due leases it to an idle live
worker of its function that offers hand-offs, and its NOTIFY carries the lease with the run as
the lease left it (``store/postgres/_handoffs.py``); only runs a lease by name would take, only
to a worker alive (its presence lock held), registered, with a free slot; a lease handed to a
worker that dies is taken over, one never read expires as any lease.

Each test runs with both texts of the hand-off (``texts``): a send of one run goes through
``HAND_OFF_ONE``, made to go through ``HAND_OFF`` (several runs' text) too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tests.store.builders import T0, cel_matches, event, ingest, lease, step

import pgtest
from stepline.errors import StoreUnavailable
from stepline.store.postgres import PostgresStore, _handoffs, _pipeline, wakeups
from stepline.store.postgres._commit_end import NO_FLUSH_WAIT
from stepline.store.postgres._handoffs import (
    HAND_OFF,
    HAND_OFF_ONE,
    HANDING,
    Handed,
    HandOffs,
    read_payload,
)
from stepline.store.postgres._hints import LeaseTokens
from stepline.store.postgres._lease_queries import DEFAULT_PLANS, GENERIC_PLANS
from stepline.store.postgres._statements import FLUSHED, Statements
from stepline.store.records import (
    Admission,
    EventIngest,
    FunctionSet,
    Lease,
    NewRun,
    WorkerRecord,
)

APP = "shop"
SERVED = FunctionSet(APP, ("fn",))
TTL = 20.0
DATA = {"order": 7, "name": "grüße \u2603", "items": [1.5, None, True]}


def register(
    store: PostgresStore,
    owner: str,
    slots: int | None = 4,
    fns: tuple[str, ...] = ("fn",),
    expires: float = T0 + 60,
) -> None:
    """``owner`` registered (``fns`` of APP) and offering ``slots`` (its presence lock taken
    by ``store``'s process)."""
    with store.transaction() as tx:
        tx.register_worker(WorkerRecord(owner, APP, fns, T0, T0, expires))
        tx.offer_handoffs(owner, slots, TTL)


def send(
    store: PostgresStore,
    run_id: str,
    *,
    now: float = T0,
    data: dict[str, Any] | None = None,
    fn: str = "fn",
    admission: Admission | None = None,
) -> None:
    """An event that starts ``run_id`` of APP's ``fn`` (due now)."""
    new = NewRun(run_id, fn, (f"ev-{run_id}",), app_id=APP)
    if admission is not None:
        new = NewRun(run_id, fn, (f"ev-{run_id}",), admission=admission, app_id=APP)
    ingest(store, EventIngest(event(f"ev-{run_id}", data=data or DATA), (new,)), now=now)


class Heard:
    """The notifications sent from its making on (a listening connection of its own)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN stepline")

    def of(self, run_id: str) -> tuple[list[tuple[str, str]], list[Handed]]:
        """What the notification naming ``run_id`` names and hands over."""
        for notification in self.conn.notifies(timeout=10):
            named, handed = read_payload(notification.payload)
            if any(run == run_id for _, run in named):
                return named, handed
        raise AssertionError(f"no notification named {run_id}")


@pytest.fixture(autouse=True, params=["one", "several"])
def texts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The hand-off's text for one run: its own, or the one of several runs."""
    if request.param == "several":
        monkeypatch.setattr(wakeups, "HAND_OFF_ONE", HAND_OFF)
    return str(request.param)


@pytest.fixture
def heard(pg_url: str) -> Iterator[Heard]:
    listening = Heard(pg_url)
    yield listening
    listening.conn.close()


def queue_row(pg_url: str, run_id: str) -> tuple[Any, ...]:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT lease_owner, lease_token, lease_expires_at FROM queue WHERE run_id = %s",
            (run_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_new_run_is_handed_with_its_lease_and_state(
    pg_store: PostgresStore, own_pg_store: PostgresStore, pg_url: str, heard: Heard
) -> None:
    register(pg_store, "w1")
    send(pg_store, "r1")
    named, handed = heard.of("r1")
    assert named == [("fn", "r1")]
    [given] = handed
    assert (given.function_id, given.run_id, given.owner) == ("fn", "r1", "w1")
    assert given.token.startswith("p:")  # the worker's presence prefix: found dead at once
    assert queue_row(pg_url, "r1") == ("w1", given.token, T0 + TTL)
    twin = HandOffs(LeaseTokens())  # w1's id in another process, which holds not its lock
    twin.accept("w1", TTL)
    twin.put(handed)
    assert twin.take("w1", ["r1"], own_pg_store._presence, T0) == ([], [])  # never run twice
    offers = HandOffs(LeaseTokens())
    offers.accept("w1", TTL)
    offers.put(handed)
    assert offers.take("w2", ["r1"], pg_store._presence, T0) == ([], [])  # another owner's
    [held], [] = offers.take("w1", ["r1"], pg_store._presence, T0)
    assert offers.take("w1", ["r1"], pg_store._presence, T0) == ([], [])  # once
    assert (held.run_id, held.token) == ("r1", given.token)
    assert held.loaded is not None
    state = held.loaded()
    assert state == pg_store.load_run("r1")  # the run as the lease left it, as a read finds it
    assert state is not None
    assert state.run.status == "RUNNING" and state.run.worker_id == "w1"
    assert state.run.started_at == T0 and state.events[0].data == DATA
    history = pg_store.get_history("r1")
    assert [(h.kind, h.worker_id) for h in history][-1] == ("RUN_STARTED", "w1")
    assert lease(pg_store, "w2") == []  # held: no other worker takes it


def test_the_store_keeps_the_leases_of_its_accepting_workers_only(pg_store: PostgresStore) -> None:
    store = pg_store
    store.accept_handoffs("w1", TTL)
    entry = ["fn", "r1", "w1", "tok", [], []]
    store._handoffs.put([Handed(entry), Handed(["fn", "r2", "w9", "tok", [], []])])
    assert store.take_handed("w9", ["r2"], T0) == ([], [])
    store.refuse_handoffs("w1")
    assert store.take_handed("w1", ["r1"], T0) == ([], [])  # dropped with its owner


def _no_offer(store: PostgresStore, url: str) -> None:
    register(store, "w1", slots=None)


def _dead(store: PostgresStore, url: str) -> None:
    register(store, "w1")
    store._presence.close()  # its process ended: the lock is gone


def _busy(store: PostgresStore, url: str) -> None:
    register(store, "w1", slots=1)
    send(store, "r0")  # handed: its one slot


def _behind(store: PostgresStore, url: str) -> None:
    send(store, "r0")  # queued before any worker offered: ahead of r1
    register(store, "w1")


def _unowned(pg_url: str, run_id: str) -> None:
    """``run_id``'s rows made as a database from before app ids left them (app id '')."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE queue SET app_id = '' WHERE run_id = %s", (run_id,))
        conn.execute("UPDATE runs SET app_id = '' WHERE run_id = %s", (run_id,))


def _behind_unowned(store: PostgresStore, url: str) -> None:
    send(store, "r0")  # ahead of r1, unowned: a lease by name takes it first too
    _unowned(url, "r0")
    register(store, "w1")


def _expired_ahead(store: PostgresStore, url: str) -> None:
    send(store, "r0", now=T0 - 60)
    with store.transaction() as tx:  # its lease expired before r1 was made: taken first
        [_] = tx.lease_due("w2", T0 - 60, 5, TTL, SERVED, 10)
    register(store, "w1")


def _expired_unowned(store: PostgresStore, url: str) -> None:
    _expired_ahead(store, url)
    _unowned(url, "r0")


def _paused(store: PostgresStore, url: str) -> None:
    register(store, "w1")
    with store.transaction() as tx:
        tx.set_paused("fn", True, APP)


def _other_function(store: PostgresStore, url: str) -> None:
    register(store, "w1", fns=("other",))


def _registration_expired(store: PostgresStore, url: str) -> None:
    register(store, "w1", expires=T0 - 1)


@pytest.mark.parametrize(
    "given",
    [
        _no_offer,
        _dead,
        _busy,
        _behind,
        _behind_unowned,
        _expired_ahead,
        _expired_unowned,
        _paused,
        _other_function,
        _registration_expired,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_run_is_named_not_handed(
    pg_store: PostgresStore, pg_url: str, heard: Heard, given: Any
) -> None:
    """...to a worker that offers none, is dead, has no free slot or does not serve the
    function, and for a run a lease by name would not take first (one ahead of it, paused)."""
    given(pg_store, pg_url)
    send(pg_store, "r1")
    named, handed = heard.of("r1")
    assert ("fn", "r1") in named and [h.run_id for h in handed if h.run_id == "r1"] == []
    assert queue_row(pg_url, "r1")[0] is None


def test_a_replay_with_copied_steps_is_named_not_handed(
    pg_store: PostgresStore, pg_url: str, heard: Heard
) -> None:
    """Its pass must see the steps it replays from (a handed run's state has none)."""
    send(pg_store, "r0")
    with pg_store.transaction() as tx:
        tx.put_steps([step("r0", "h1", 0), step("r0", "h2", 1)])
        [held] = tx.lease_due("w2", T0, 5, TTL, SERVED, 10)  # r0 runs: nothing ahead of r1
    register(pg_store, "w1")
    replay = NewRun("r1", "fn", ("ev-r0",), app_id=APP)
    with pg_store.transaction() as tx:
        assert tx.replay_run(held.run_id, replay, 1, T0)
    named, handed = heard.of("r1")
    assert named == [("fn", "r1")] and handed == []
    assert queue_row(pg_url, "r1")[0] is None


def test_a_run_with_a_concurrency_key_or_too_large_is_not_handed(
    pg_store: PostgresStore, pg_url: str, heard: Heard
) -> None:
    register(pg_store, "w1")
    send(pg_store, "r1", data={"blob": "x" * 6000})  # past the notification's bound
    named, handed = heard.of("r1")
    assert named == [("fn", "r1")] and handed == []
    keyed = Admission(concurrency=(("fn\x1f\x1fk", 1),))
    send(pg_store, "r2", admission=keyed)
    assert queue_row(pg_url, "r1")[0] is None and queue_row(pg_url, "r2")[0] is None


def test_a_run_handed_to_a_worker_that_died_is_taken_over(
    pg_store: PostgresStore, own_pg_store: PostgresStore, pg_url: str
) -> None:
    """...at once by another worker's lease (its presence lock is gone), and one whose
    notification nobody read is taken over when its lease expires."""
    register(pg_store, "w1")
    send(pg_store, "r1")
    assert queue_row(pg_url, "r1")[0] == "w1"
    taker = own_pg_store
    with taker.transaction() as tx:
        assert tx.lease_due("w2", T0 + 1, 5, TTL, SERVED, 10) == []  # w1 is alive
    pg_store._presence.close()
    with taker.transaction() as tx:
        [held] = tx.lease_due("w2", T0 + 1, 5, TTL, SERVED, 10)
    assert (held.run_id, held.taken_over_from) == ("r1", "w1")
    register(pg_store, "w1")  # alive again, and handed r2, whose notification is lost
    send(pg_store, "r2", now=T0 + 2)
    with taker.transaction() as tx:
        assert tx.lease_due("w2", T0 + 3, 5, TTL, SERVED, 10) == []
    with taker.transaction() as tx:  # its lease expired (w2's of r1 too: taken again)
        found = tx.lease_due("w2", T0 + 2 + TTL, 5, TTL, SERVED, 10)
    assert {(h.run_id, h.taken_over_from) for h in found} == {("r1", "w2"), ("r2", "w1")}


def test_a_handed_lease_is_a_lease_like_any_other(pg_store: PostgresStore, heard: Heard) -> None:
    """Its token is remembered as taken here (the pass's commits are optimistic)."""
    register(pg_store, "w1")
    pg_store.accept_handoffs("w1", TTL)
    send(pg_store, "r1")
    _, handed = heard.of("r1")
    pg_store._handoffs.put(handed)
    [held], [] = pg_store.take_handed("w1", ["r1"], T0)
    assert isinstance(held, Lease)
    assert pg_store._tokens.owner(held.token) == "w1"


def notified_before_flush(
    monkeypatch: pytest.MonkeyPatch, heard: Heard
) -> tuple[list[list[str]], list[bool]]:
    """Each round trip's texts from now on, and for each ``FLUSHED`` sent, whether the
    notification naming r1 had come before it."""
    trips: list[list[str]] = []
    notified_first: list[bool] = []
    send_all = _pipeline.send_all

    def recording(conn: Any, statements: Any) -> Any:
        texts = [query for query, _ in statements]
        trips.append(texts)
        if texts == [FLUSHED]:  # the notification came before the flush is waited for
            notified_first.append(bool(heard.of("r1")[0]))
        return send_all(conn, statements)

    monkeypatch.setattr(_pipeline, "send_all", recording)
    return trips, notified_first


def test_a_send_naming_its_runs_is_notified_before_its_flush(
    pg_store: PostgresStore, heard: Heard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """...and acknowledged after it: its commit does not wait for the disk (its notification
    goes out at once), then a transaction of its own committed with ``synchronous_commit`` on
    (``FLUSHED``) waits for the WAL's flush, past its commit record, before the send returns."""
    trips, notified_first = notified_before_flush(monkeypatch, heard)
    send(pg_store, "r1")
    commit = next(t for t in trips if HAND_OFF in t or HAND_OFF_ONE in t)
    hand_off = HAND_OFF if HAND_OFF in commit else HAND_OFF_ONE
    # its commit, without waiting for its flush: said by the statement that asks for
    # HAND_OFF's generic plan (one statement for both), no NO_FLUSH_WAIT of its own
    assert commit[commit.index(hand_off) - 1] == HANDING and NO_FLUSH_WAIT not in commit
    assert "'synchronous_commit', 'off'" in HANDING
    assert trips[-1] == [FLUSHED] and notified_first == [True]


def test_an_optimistic_send_asks_for_its_settings_in_one_statement(
    pg_store: PostgresStore, heard: Heard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(A send, usually: the writer's first try.) The ingest's ``GENERIC_PLANS`` stays on up to
    the commit, so it is sent as ``HANDING`` (the same settings, the commit's
    ``synchronous_commit`` off too, the plan mode before not saved: nothing puts it back) and
    the hand-off goes without a ``HANDING`` of its own: a statement fewer in the commit's round
    trip. Still notified before the flush, which is waited for after the commit."""
    register(pg_store, "w1")
    trips, notified_first = notified_before_flush(monkeypatch, heard)
    new = NewRun("r1", "fn", ("ev-r1",), app_id=APP)
    with pg_store.optimistic_transaction() as tx:
        tx.ingest([EventIngest(event("ev-r1", data=DATA), (new,))], T0, cel_matches)
    [commit] = [t for t in trips if HAND_OFF in t or HAND_OFF_ONE in t]
    assert commit[0] == HANDING and commit.count(HANDING) == 1, commit
    assert GENERIC_PLANS not in commit and DEFAULT_PLANS not in commit
    assert NO_FLUSH_WAIT not in commit and trips[-1] == [FLUSHED] and notified_first == [True]
    assert queue_row(pg_store.url, "r1")[0] == "w1"  # handed


def test_a_send_whose_flush_is_not_waited_for_has_an_unknown_outcome(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection lost while the flush is waited for: the send raises (retryable), its
    transaction committed (perhaps not on disk); made again, the event's id dedups it."""
    send_all = _pipeline.send_all

    def failing(conn: Any, statements: Any) -> Any:
        if [query for query, _ in statements] == [FLUSHED]:
            raise psycopg.OperationalError("the server closed the connection")
        return send_all(conn, statements)

    monkeypatch.setattr(_pipeline, "send_all", failing)
    with pytest.raises(StoreUnavailable):
        send(pg_store, "r1")
    monkeypatch.setattr(_pipeline, "send_all", send_all)
    assert pg_store.load_run("r1") is not None


def test_a_transaction_that_makes_other_work_waits_for_its_flush_in_its_commit(
    pg_store: PostgresStore, trips: list[list[str]]
) -> None:
    with pg_store.transaction() as tx:
        tx.set_paused("fn", True, APP)  # a plain NOTIFY
    assert all(NO_FLUSH_WAIT not in t and FLUSHED not in t for t in trips)


def test_one_transaction_hands_a_worker_no_more_runs_than_its_free_slots(
    pg_store: PostgresStore, pg_url: str, heard: Heard
) -> None:
    """Its runs are numbered per worker within the statement (review R1)."""
    register(pg_store, "w1", slots=2)
    news = [NewRun(r, "fn", (f"ev-{r}",), app_id=APP) for r in ("r1", "r2", "r3")]
    ingest(pg_store, *(EventIngest(event(f"ev-{n.run_id}"), (n,)) for n in news))
    _, handed = heard.of("r1")
    assert sorted(h.run_id for h in handed) == ["r1", "r2"]
    assert [queue_row(pg_url, r)[0] for r in ("r1", "r2", "r3")] == ["w1", "w1", None]


def test_an_acknowledged_send_is_on_disk() -> None:
    """...although its commit did not wait for the flush: the transaction that waits for it
    after (``FLUSHED``) flushed the WAL past that commit before the send returned (a commit
    that wrote no WAL, as one that only takes a transaction id, waits for nothing)."""
    with pgtest.private_cluster(durable=True) as cluster:
        url = pgtest.migrated_database(cluster)
        store = PostgresStore(url)
        committed: list[str] = []
        wait_flush = Statements._wait_flush

        def noting(statements: Statements) -> None:  # the commit returned: where its WAL ends
            with psycopg.connect(url, autocommit=True) as conn:
                [(lsn,)] = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchall()
            committed.append(lsn)
            wait_flush(statements)

        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(Statements, "_wait_flush", noting)
                send(store, "r1")
            with psycopg.connect(url, autocommit=True) as conn:
                [(flushed,)] = conn.execute(
                    "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", committed
                ).fetchall()
            assert flushed
        finally:
            store.close()


class _AnyPresence:
    """A presence that issued every token (the age check comes before it)."""

    def issued(self, owner: str, token: str) -> bool:
        return True


def test_a_hand_off_leased_more_than_half_its_ttl_ago_is_given_back() -> None:
    # review R8 (thirteenth stop): a worker whose loop was held past the TTL started a pass from
    # the handed state after another worker had taken the run over and committed a step; it is
    # given back (Worker.give_back: leased again with a fresh read), not started
    offers = HandOffs(LeaseTokens())
    offers.accept("w1", 2.0)
    presence: Any = _AnyPresence()
    columns = [None] * len(_handoffs._COLUMNS)
    columns[_handoffs._CREATED] = 1000.0  # the lease's start: its run's creation
    offers.put([Handed(["fn", r, "w1", "t", columns, []]) for r in ("r1", "r2")])
    # under half the TTL: given
    leases, old = offers.take("w1", ["r1"], presence, 1000.9)
    assert ([lease.run_id for lease in leases], old) == (["r1"], [])
    # 1.1 s after it was leased: to give back, and not kept for later
    assert offers.take("w1", ["r2"], presence, 1001.1) == ([], ["r2"])
    assert offers.take("w1", ["r2"], presence, 1000.0) == ([], [])


def test_a_run_handed_by_a_sender_of_the_schema_before_loads(
    pg_store: PostgresStore, pg_url: str, heard: Heard
) -> None:
    """A process of schema 17 still running beside one that migrated to 18 (an event's ``v``)
    hands runs with its own text, six columns an event: the lease loads the run (its events
    without a ``v``), as a read of it does. It raised IndexError when the pass started, which
    counts as a failed attempt of the run ("could not be loaded"): a run without retries
    failed."""
    register(pg_store, "w1")
    send(pg_store, "r1")
    _, [given] = heard.of("r1")
    columns, events = given.run
    assert [len(e) for e in events] == [7]
    older = Handed([given.function_id, "r1", "w1", given.token, columns, [e[:6] for e in events]])
    state = older.lease().loaded()
    assert state is not None
    assert state == pg_store.load_run("r1")
    assert state.events[0].data == DATA and state.events[0].v is None


def test_a_handed_run_of_several_events_has_them_in_its_order(
    pg_store: PostgresStore, heard: Heard
) -> None:
    """A handed run's events come in the run's order (its ``event_ids``), as a read of it
    gives them, whatever order the payload lists them in (``HAND_OFF`` lists them by id)."""
    register(pg_store, "w1")
    send(pg_store, "r1")
    _, [given] = heard.of("r1")
    columns, [row] = given.run
    columns = list(columns)
    columns[_handoffs._COLUMNS.index("event_ids")] = '["ev-b", "ev-a"]'
    rows = [["ev-a", *row[1:]], ["ev-b", "other", *row[2:]]]
    state = Handed(["fn", "r1", "w1", given.token, columns, rows]).lease().loaded()
    assert state is not None
    assert [(e.internal_id, e.name) for e in state.events] == [
        ("ev-b", "other"),
        ("ev-a", row[1]),
    ]
    assert state.events[0].data == DATA and (state.steps, state.waits) == ({}, [])
