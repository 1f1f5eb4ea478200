"""SQLite: a batch that can only resolve waits the index decides by their stored text reads them
decided and resolves them together (``_resolving_rules.IndexedResolutions``), without a record
per wait. What it writes is what the waits resolved one by one (``resume_waits``) write, row for
row and byte for byte: the marks, the steps' outputs (each event's payload made of its encoded
parts), the wakes, the WAIT_MATCHED rows (the step's id read where a wait of schema 18 has
none). A wait stored with another text goes the general way, with the same outcome."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stepline.store import SQLiteStore
from stepline.store.records import EventIngest, EventRecord, PassCommit, RunEnd
from stepline.store.sqlite._waits import SQLiteWaitVerbs

from .builders import T0, commit, ingest, lease_run, start, step, suspend_on_wait, wait

PAYLOADS = [
    ({"orderId": "r1"}, {}, None),
    ({"orderId": "r1", "n": 1.0, "big": 2**63, "tiny": 1e-7, "neg": -0.0}, {"u": 1}, "s-1"),
    ({"orderId": "r1", "text": 'ñ"\\\n\t\u2028😀', "nested": [{"a": None}, True]}, {}, 'i"d'),
]


def _equality(order_id: str) -> str:
    """The text ``prepare_match`` stores for ``event.data.orderId == async.data.orderId``."""
    return f'async.data.orderId == dyn("{order_id}")'


def _scenario(
    path: Path,
    data: dict[str, Any],
    user: dict[str, Any],
    sender: str | None,
    r3_text: str = _equality("r3"),
) -> Any:
    """r1 waits with its step's id; r2 has two waits on one order (the older resolved first);
    r3's wait has no step id (schema 18), its expression ``r3_text``; then one batch resolves
    them all, with an event that resolves nothing among them. Returns the results and the
    file's rows."""
    store = SQLiteStore(path)
    try:
        store.migrate()
        start(store, "r1")
        pending = replace(wait("r1", "w-r1", _equality("r1")), step_id="step-h-wait")
        suspend_on_wait(store, lease_run(store, "r1"), pending)
        start(store, "r2")
        held = lease_run(store, "r2")
        newer = wait("r2", "w-2a", _equality("r2"), step_hash="h-a")
        older = wait("r2", "w-2b", _equality("r2"), step_hash="h-b", created_at=T0 - 1)
        steps = [step("r2", "h-a", 0, "PENDING", kind="wait"), step("r2", "h-b", 1, "PENDING")]
        commit(
            store,
            PassCommit("r2", held.token, steps=steps, waits=[newer, older], end=RunEnd("WAITING")),
        )
        start(store, "r3")
        suspend_on_wait(store, lease_run(store, "r3"), wait("r3", "w-r3", r3_text))
        events = [
            EventRecord("p-1", "payment/received", data, user, sender, T0 + 0.0007),
            EventRecord("p-0", "payment/received", {"orderId": "none"}, {}, None, T0),
            EventRecord("p-2", "payment/received", {"orderId": "r2"}, {"u": "v"}, None, T0),
            EventRecord("p-3", "payment/received", {"orderId": "r3"}, {}, "s-3", T0),
        ]
        results = ingest(store, *(EventIngest(e) for e in events), now=T0 + 1)
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as conn:
        rows = [
            conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in (
                ("steps", "run_id, hash"),
                ("history", "seq"),
                ("queue", "run_id"),
                ("waits", "run_id, wait_id"),
            )
        ]
    return [(r.internal_id, r.resumed_run_ids) for r in results], rows


def _answers(monkeypatch: pytest.MonkeyPatch, verb: str) -> list[bool]:
    """Whether each call of ``SQLiteWaitVerbs.<verb>`` (from now on) answered something."""
    real = getattr(SQLiteWaitVerbs, verb)
    answers: list[bool] = []

    def answering(self: SQLiteWaitVerbs, *args: Any) -> Any:
        found = real(self, *args)
        answers.append(found is not None)
        return found

    monkeypatch.setattr(SQLiteWaitVerbs, verb, answering)
    return answers


RESULTS = [("p-1", ("r1",)), ("p-0", ()), ("p-2", ("r2", "r2")), ("p-3", ("r3",))]


@pytest.mark.parametrize(("data", "user", "sender"), PAYLOADS)
def test_a_batch_resolved_together_writes_what_its_waits_resolved_one_by_one_write(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: dict[str, Any],
    user: dict[str, Any],
    sender: str | None,
) -> None:
    together = _answers(monkeypatch, "indexed_resolver")
    decided = _answers(monkeypatch, "decided_waits")
    written = _scenario(tmp_path / "together.db", data, user, sender)
    assert (together, decided) == ([True], [True])
    monkeypatch.setattr(SQLiteWaitVerbs, "indexed_resolver", lambda self: None)
    assert _scenario(tmp_path / "one-by-one.db", data, user, sender) == written
    assert written[0] == RESULTS


def test_a_batch_with_a_wait_its_text_does_not_decide_goes_the_general_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # r3's wait stored as an equality of another text (not prepare_match's): the matcher decides
    decided = _answers(monkeypatch, "decided_waits")
    other = 'async.data.orderId == "r3"'
    written = _scenario(tmp_path / "general.db", {"orderId": "r1"}, {}, None, other)
    assert decided == [False]
    monkeypatch.setattr(SQLiteWaitVerbs, "indexed_resolver", lambda self: None)
    assert _scenario(tmp_path / "one-by-one.db", {"orderId": "r1"}, {}, None, other) == written
    assert written[0] == RESULTS


def test_a_wait_offered_but_not_stored_is_not_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the waits are claimed together, trusting what was read in the transaction; if one were
    # gone by then (a stale candidate), the verb is made again, each claim deciding
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.migrate()
        start(store, "r1")
        suspend_on_wait(store, lease_run(store, "r1"), wait("r1", "w-r1", _equality("o-1")))
        real = SQLiteWaitVerbs.decided_waits

        def stale(self: SQLiteWaitVerbs, *args: Any) -> Any:
            found = real(self, *args)
            return None if found is None else [("w-gone", *found[0][1:4], T0 - 1, None), *found]

        monkeypatch.setattr(SQLiteWaitVerbs, "decided_waits", stale)
        paid = EventRecord("p-1", "payment/received", {"orderId": "o-1"}, {}, None, T0)
        [result] = ingest(store, EventIngest(paid), now=T0 + 1)
        assert result.resumed_run_ids == ("r1",)  # once: by the wait that was there
        kinds = [h.kind for h in store.get_history("r1")]
        assert kinds.count("WAIT_MATCHED") == 1
    finally:
        store.close()
