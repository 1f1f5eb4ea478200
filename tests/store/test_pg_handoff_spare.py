"""PostgreSQL hand-offs and a worker's spare slot (``engine/_spare_slot.py``): a worker that
keeps a spare (2 slots or more, 2 functions or more) is offered its last free slot by
``HAND_OFF`` only for a run of a function with no live lease there nor earlier among its runs
of the same statement, as the worker itself would fill it (``_spare_slot.fitting``).

Before, ``HAND_OFF`` counted every free slot alike and chose the lowest worker id with one:
a worker whose only free slot was its spare was handed a run of a function it runs, gave it
back (``Worker.give_back``) and the run waited for another worker's poll (0.25 s) instead of
going to that worker at once (review L1 / 4b)."""

from __future__ import annotations

from tests.store.builders import event, ingest
from tests.store.test_pg_handoffs import APP, Heard, heard, queue_row, register, send, texts

from stepline.store.postgres import PostgresStore
from stepline.store.records import EventIngest, NewRun

__all__ = ["heard", "texts"]  # the fixtures (texts: each test with both hand-off texts)

BOTH = ("fn", "other")


def handed_to(heard: Heard, run_id: str) -> str | None:
    """The worker the notification naming ``run_id`` hands it to (None: named only)."""
    _, handed = heard.of(run_id)
    return next((h.owner for h in handed if h.run_id == run_id), None)


def test_a_run_of_a_function_a_worker_runs_is_not_handed_its_spare(
    pg_store: PostgresStore, pg_url: str, heard: Heard
) -> None:
    register(pg_store, "w1", slots=2, fns=BOTH)
    send(pg_store, "r0")
    assert handed_to(heard, "r0") == "w1"  # w1 runs fn now: its one free slot is the spare
    register(pg_store, "w2", slots=2, fns=BOTH)
    send(pg_store, "r1")
    assert handed_to(heard, "r1") == "w2"  # before: w1 (first by id), which gave it back
    assert queue_row(pg_url, "r1")[0] == "w2"
    send(pg_store, "r2", fn="other")  # no pass of it in w1: its spare takes it
    assert handed_to(heard, "r2") == "w1"


def test_a_worker_with_only_its_spare_free_is_named_the_run_when_no_other_takes_it(
    pg_store: PostgresStore, pg_url: str, heard: Heard
) -> None:
    register(pg_store, "w1", slots=2, fns=BOTH)
    send(pg_store, "r0")
    send(pg_store, "r1")
    assert handed_to(heard, "r1") is None  # named: any worker's lease by name may take it
    assert queue_row(pg_url, "r1")[0] is None


def test_runs_of_one_send_take_the_spare_only_for_a_function_not_among_them(
    pg_store: PostgresStore, pg_url: str, heard: Heard
) -> None:
    register(pg_store, "w1", slots=3, fns=BOTH)
    news = [NewRun(r, "fn", (f"ev-{r}",), app_id=APP) for r in ("r1", "r2", "r3")]
    ingest(pg_store, *(EventIngest(event(f"ev-{n.run_id}"), (n,)) for n in news))
    _, handed = heard.of("r1")
    assert sorted(h.run_id for h in handed) == ["r1", "r2"]  # r3 would be the spare: fn again
    assert queue_row(pg_url, "r3")[0] is None


def test_a_worker_serving_one_function_keeps_no_spare(
    pg_store: PostgresStore, heard: Heard
) -> None:
    register(pg_store, "w1", slots=2, fns=("fn",))
    send(pg_store, "r0")
    send(pg_store, "r1")
    assert handed_to(heard, "r1") == "w1"  # both slots are its functions'
