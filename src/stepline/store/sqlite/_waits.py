"""The SQLite store's verbs of waits (a mixin of ``_SQLiteTx``): stored by a pass, looked up
and claimed by an ingest (their steps completed when an event resolves them, which makes them
resolved, schema 28: their rows deleted later in batches by ``purge_resolved_waits``), and
timed out. Every method runs inside the caller's transaction on ``self._c``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import TYPE_CHECKING

from stepline.serde import dumps_exact
from stepline.store import _rows as shapes
from stepline.store._index_paths import IndexPaths
from stepline.store._primitives import IndexedWait, ResumedWait
from stepline.store._resolving_rules import DecidedWait, ResolveIndexed
from stepline.store.records import EventRecord, WaitRecord
from stepline.store.sqlite import _wait_queries as w
from stepline.store.sqlite._deferred import ClaimLost, Deferred
from stepline.store.sqlite._event_rows import event_id_data
from stepline.store.sqlite._multirow import (
    blob,
    insert_shared,
    update_among,
)
from stepline.store.sqlite.queries import INSERT_HISTORY, WAKE, WAKE_AMONG

_NO_ATTEMPT = (None, None, None)
# rows of ``waits`` a purge reads past the ``limit`` it may delete: pending waits it passes over
SWEEP_MORE = 1000
_FIRST = ("", "")  # before every key (a run id is never empty)


@dataclass(slots=True)
class WaitSweep:
    """Where ``purge_resolved_waits``'s sweep of the waits in key order goes on (a store's,
    shared by its transactions: after ``after``; a new store starts from the first key)."""

    after: tuple[str, str] = _FIRST


class SQLiteWaitVerbs:
    """The verbs of waits over one SQLite connection inside a transaction."""

    _c: sqlite3.Connection
    _deferred: Deferred | None  # inside ``ingest``: its writes made together
    _wait_sweep: WaitSweep  # the store's: where ``purge_resolved_waits`` goes on

    if TYPE_CHECKING:  # provided by _SQLiteTx

        @property
        def _index(self) -> IndexPaths: ...

        def _savepoint(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _check_lease(self, run_id: str, token: str) -> str: ...

    def wait_paths(self, event_name: str) -> Sequence[str]:
        return self._index.indexed_paths(w.WAIT_PATHS, event_name)

    def unindexed_waits(self, event_name: str) -> list[WaitRecord]:
        return [WaitRecord(*r) for r in self._index.unindexed_rows(w.WAITS_UNINDEXED, event_name)]

    def indexed_waits(self, event_name: str, path: str, values: Sequence[str]) -> list[IndexedWait]:
        if len(values) == 1:
            rows = self._c.execute(w.WAITS_INDEXED, (event_name, path, values[0]))
        else:
            rows = self._c.execute(w.WAITS_INDEXED_AMONG, (event_name, path, json_list(values)))
        return rows.fetchall()  # INDEXED_WAIT_COLUMNS: IndexedWait's order

    def delete_wait(self, run_id: str, wait_id: str) -> bool:
        if self._deferred is None:
            return bool(self._c.execute(w.DELETE_WAIT, (run_id, wait_id)).rowcount == 1)
        # Inside ``ingest``: the candidate was read in this transaction, the one writer's, and
        # the ingest order asks for none twice nor for a wait of a run it cancelled since; so
        # the wait is pending, and its claim is made by ``resume_waits``, which the ingest order
        # calls with every wait it claimed, and which checks that each one's step was PENDING
        # when it completed it (schema 28: the row is kept, resolved, until a purge).
        return True

    def resume_waits(self, resumed: Sequence[ResumedWait], now: float) -> None:
        c = self._c
        before = c.total_changes
        c.executemany(
            w.COMPLETE_STEP, [(blob(r.event_json), now, r.run_id, r.step_hash) for r in resumed]
        )
        # inside ``ingest`` the completed steps are the claims (a wait whose step is not
        # PENDING is not: ``ClaimLost``); a pass's event (``commit_pass``) deleted each wait's
        # row with ``delete_wait``, which claimed it
        if self._deferred is not None and c.total_changes - before != len(resumed):
            raise ClaimLost
        runs = [r.run_id for r in resumed]
        update_among(c, WAKE, WAKE_AMONG, (now,), runs)
        step_ids = [r.step_id for r in resumed]
        links = [event_id_data(r.event_id) for r in resumed]
        insert_wait_matched(c, runs, step_ids, links, [r.step_hash for r in resumed], now)

    # -- IndexedResolutions (``_resolving_rules``) ------------------------------------------------
    def indexed_resolver(self) -> ResolveIndexed | None:
        # inside ``ingest`` only: its claims are one statement, checked (``ClaimLost``)
        return self._resolve_indexed if self._deferred is not None else None

    def decided_waits(
        self, event_name: str, path: str, values: Sequence[str]
    ) -> list[DecidedWait] | None:
        params = (event_name, path, json_list(values))
        rows: list[DecidedWait] = self._c.execute(w.WAITS_DECIDED_AMONG, params).fetchall()
        for row in rows:
            if row[4] is None:  # not decided by its text (``w.DECIDED``): ``_Batch`` decides
                return None
        return rows

    def _resolve_indexed(
        self, resolved: Sequence[tuple[DecidedWait, EventRecord]], now: float
    ) -> None:
        """``resume_waits`` of the lookup's rows, their steps completed first (``ClaimLost``
        unless each one was PENDING: its completion claims the wait, schema 28), made without a
        ``ResumedWait`` each: an event's step output and WAIT_MATCHED data made once for all
        its waits."""
        rows = [pair[0] for pair in resolved]
        made: list[tuple[bytearray, str]] = []  # each pair's step output and WAIT_MATCHED data
        event: EventRecord | None = None
        texts = (bytearray(), "")
        for _, by in resolved:
            if by is not event:
                event, texts = by, resolution_texts(by)
            made.append(texts)
        c = self._c
        runs = list(map(_RUN, rows))
        hashes = list(map(_STEP_HASH, rows))
        outputs = [texts[0] for texts in made]
        if complete_steps(c, outputs, runs, hashes, now) != len(runs):
            raise ClaimLost
        update_among(c, WAKE, WAKE_AMONG, (now,), runs)
        step_ids = list(map(_STEP_ID, rows))
        insert_wait_matched(c, runs, step_ids, [texts[1] for texts in made], hashes, now)

    def insert_waits(self, waits: Sequence[WaitRecord]) -> None:
        for wait in waits:
            self._c.execute(w.INSERT_WAIT, (*shapes.wait_params(wait), wait.step_id))
            if wait.index_path is None:
                self._index.added_unindexed(w.WAITS_UNINDEXED, wait.event_name)
            else:
                self._index.add_indexed_path(
                    w.INSERT_WAIT_PATH, w.WAIT_PATHS, wait.event_name, wait.index_path
                )

    def expire_waits(self, run_id: str, lease_token: str, now: float) -> list[str]:
        with self._savepoint() as c:
            worker = self._check_lease(run_id, lease_token)
            due = c.execute(w.EXPIRED_WAITS_OF_RUN, (run_id, now))
            expired = [shapes.wait_record(r) for r in due]
            for wait in expired:
                c.execute(w.DELETE_WAIT, (run_id, wait.wait_id))
                c.execute(w.COMPLETE_STEP, (b"null", now, run_id, wait.step_hash))
                step_id = wait.step_id
                if step_id is None:  # stored without it (see schema 18)
                    step_row = c.execute(w.SELECT_STEP_ID, (run_id, wait.step_hash)).fetchone()
                    step_id = step_row[0] if step_row else None
                row = (run_id, now, "WAIT_TIMED_OUT", step_id, *_NO_ATTEMPT, worker)
                c.execute(INSERT_HISTORY, row)
            return [wait.step_hash for wait in expired]

    def purge_resolved_waits(self, limit: int) -> int:
        """Delete up to ``limit`` resolved waits' rows (schema 28: those whose step is no longer
        PENDING), found by a sweep of ``waits`` in key order that goes on where the last one
        stopped (``WaitSweep``), reading at most ``limit + SWEEP_MORE`` rows a call, and starts
        again from the first key past the last."""
        if limit < 1:
            return 0
        sweep = self._wait_sweep
        with self._savepoint() as c:
            keys: list[tuple[str, str]] = []
            read = 0
            last = sweep.after
            for run_id, wait_id, resolved in c.execute(
                w.WAITS_SWEPT, (*sweep.after, limit + SWEEP_MORE)
            ):
                read += 1
                last = (run_id, wait_id)
                if resolved:
                    keys.append(last)
                    if len(keys) == limit:
                        break
            # the end of the table reached: the next sweep starts from the first key
            sweep.after = last if len(keys) == limit or read == limit + SWEEP_MORE else _FIRST
            if keys:
                c.execute(w.PURGE_RESOLVED_WAITS, (dumps_exact(keys).decode(),))
            return len(keys)


def complete_steps(
    c: sqlite3.Connection,
    outputs: Sequence[bytearray],
    runs: Sequence[str],
    hashes: Sequence[str],
    now: float,
) -> int:
    """COMPLETE_STEP of each run's step (``hashes``) with its output, at ``now``, and how many
    it completed (each one that was PENDING, once: the claims of their waits): the steps of
    one hash (a function's one ``wait_for_event`` call, usually) ``w.STEPS_CHUNK`` runs a
    statement (``w.complete_steps_of_hash``: each run's output picked by a CASE; 2.6k
    instructions less a step than a statement run per row), the rest one by one. The steps of a
    hash listing a run twice are completed one by one, in their order."""
    if not runs:
        return 0
    before = c.total_changes
    first = hashes[0]
    groups: dict[str, Sequence[int]]
    if hashes.count(first) == len(hashes):
        groups = {first: range(len(runs))}
    else:
        listed: dict[str, list[int]] = {}
        for at, step_hash in enumerate(hashes):
            listed.setdefault(step_hash, []).append(at)
        groups = dict(listed)
    rest: list[tuple[bytearray, float, str, str]] = []
    for step_hash, ats in groups.items():
        mine = [runs[at] for at in ats]
        theirs = [outputs[at] for at in ats]
        full = len(mine) - len(mine) % w.STEPS_CHUNK if len(set(mine)) == len(mine) else 0
        if full:
            statement = w.complete_steps_of_hash(w.STEPS_CHUNK)
            pairs = list(chain.from_iterable(zip(mine, theirs, strict=True)))
            for start in range(0, 2 * full, 2 * w.STEPS_CHUNK):
                c.execute(statement, (now, step_hash, *pairs[start : start + 2 * w.STEPS_CHUNK]))
        rest += zip(theirs[full:], repeat(now), mine[full:], repeat(step_hash))
    if rest:
        c.executemany(w.COMPLETE_STEP, rest)
    return c.total_changes - before


def insert_wait_matched(
    c: sqlite3.Connection,
    runs: Sequence[str],
    step_ids: Sequence[str | None],
    links: Sequence[str],
    hashes: Sequence[str],
    now: float,
) -> None:
    """The WAIT_MATCHED rows of waits resolved at ``now``: each run's, naming its step and the
    event (``links``: ``event_id_data``), in their order; the time (and the step's id, when
    they share it: the waits of one ``wait_for_event`` call, usually) bound once a statement
    (``insert_shared``). A wait stored without its step's id (schema 18) has its step read
    (by its hash, ``hashes``)."""
    first = step_ids[0] if step_ids else None
    if first is not None and all(step_id == first for step_id in step_ids):
        insert_shared(
            c, w.INSERT_WAIT_MATCHED_OF_STEP, list(zip(runs, links, strict=True)), (now, first)
        )
    elif None not in step_ids:
        rows = list(zip(runs, step_ids, links, strict=True))
        insert_shared(c, w.INSERT_WAIT_MATCHED_AT, rows, (now,))
    else:
        reading = [
            (run_id, now, step_id, run_id, step_hash, link)
            for run_id, step_id, link, step_hash in zip(runs, step_ids, links, hashes, strict=True)
        ]
        c.executemany(w.INSERT_WAIT_MATCHED_READING_STEP, reading)


# a DecidedWait's run id, step hash, step id
_RUN = itemgetter(1)
_STEP_HASH = itemgetter(2)
_STEP_ID = itemgetter(5)


def resolution_texts(event: EventRecord) -> tuple[bytearray, str]:
    """``step_output(event)`` and ``event_id_data(event.internal_id)``: what a wait ``event``
    resolved writes, its step's output and its WAIT_MATCHED data."""
    internal_id = event.internal_id
    if (
        event.id is not None
        or event.data_json is None
        or event.user
        or event.v is not None
        or not internal_id.isalnum()
    ):
        return step_output(event), event_id_data(internal_id)
    name = _NAMES.get(event.name)
    if name is None or not internal_id.isascii():
        return step_output(event), event_id_data(internal_id)
    ident = internal_id.encode()
    output = b'{"id":"%s","name":%s,"data":%s,"user":{},"ts":%d}' % (
        ident,
        name,
        event.data_json,
        int(event.ts * 1000),
    )
    return bytearray(output), f'{{"event_id":"{internal_id}"}}'


def step_output(event: EventRecord) -> bytearray:
    """The output of a step whose wait ``event`` resolved: ``dumps_exact(event.payload())``,
    made of its parts (the data as validated at the edge, the name's JSON remembered), bound as
    a BLOB (``blob``). orjson writes a value the same alone or inside a dict, so the bytes are
    the same."""
    data = event.data_json
    if data is None:
        data = dumps_exact(event.data)
    name = _NAMES.get(event.name)
    if name is None:
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
        name = _NAMES[event.name] = dumps_exact(event.name)
    user = dumps_exact(event.user) if event.user else b"{}"
    ident = event.id if event.id is not None else event.internal_id
    quoted = b'"%s"' % ident.encode() if ident.isascii() and ident.isalnum() else dumps_exact(ident)
    output = bytearray(
        b'{"id":%s,"name":%s,"data":%s,"user":%s,"ts":%d}'
        % (quoted, name, data, user, int(event.ts * 1000))
    )
    if event.v is not None:  # the payload's last key, when the sender gave one
        output[-1:] = b',"v":%s}' % dumps_exact(event.v)
    return output


# the JSON of the names of the events that resolved waits (a process resolves few names)
_NAMES: dict[str, bytes] = {}
_NAMES_MAX = 1024


def json_list(values: Sequence[str]) -> str:
    """``values`` as a JSON list (bound as text: ``json_each``)."""
    return dumps_exact(list(values)).decode()
