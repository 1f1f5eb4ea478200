"""commit_pass: fencing, memo and history, suspended and terminal ends, events, children, wakes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stepline.errors import LeaseLostError
from stepline.serde import loads
from stepline.store import Store
from stepline.store.records import (
    EventIngest,
    Lease,
    NewRun,
    PassCommit,
    RunEnd,
    RunFilter,
    StepRecord,
)

from .builders import (
    T0,
    cel_matches,
    commit,
    event,
    history,
    history_kinds,
    lease,
    lease_run,
    start,
    step,
    trigger,
    wait,
)


def started(store: Store, run_id: str = "r1", owner: str = "w1") -> Lease:
    """A queued run, leased."""
    start(store, run_id)
    return lease_run(store, run_id, owner)


def full_commit(held: Lease, tag: str) -> PassCommit:
    """A commit that touches everything a commit can touch (names suffixed with ``tag``)."""
    return PassCommit(
        held.run_id,
        held.token,
        steps=[step(held.run_id, f"h-{tag}", 0, output={"tag": tag})],
        history=[history(held.run_id, "STEP_COMPLETED", tag=tag)],
        events=[trigger(f"spawned-{tag}")],
        child_runs=[NewRun(f"child-{tag}", "fn-child", (f"ev-spawned-{tag}",), held.run_id, "h")],
        end=RunEnd("SLEEPING", due_at=T0 + 500),
    )


def assert_untouched(store: Store, run_id: str, tag: str) -> None:
    """Nothing of ``full_commit(…, tag)`` reached the store."""
    run = store.get_run(run_id)
    assert run is not None
    assert run.status == "RUNNING"  # as its lease left it
    assert run.started_at == T0
    assert store.get_steps(run_id) == []
    assert history_kinds(store, run_id) == ["RUN_QUEUED", "RUN_STARTED"]
    assert store.get_run(f"spawned-{tag}") is None
    assert store.get_run(f"child-{tag}") is None
    assert store.get_events([f"ev-spawned-{tag}"]) == []


def test_a_wrong_token_raises_and_applies_nothing(store: Store) -> None:
    held = started(store)
    bad = Lease(held.run_id, "not-the-token")
    with pytest.raises(LeaseLostError):
        commit(store, full_commit(bad, "x"), T0 + 1)
    assert_untouched(store, "r1", "x")
    # The real lease still holds: the run is not due for anyone else, and its token commits.
    assert lease(store, "w2", now=T0 + 1) == []
    commit(store, full_commit(held, "y"), T0 + 1)
    assert [s.hash for s in store.get_steps("r1")] == ["h-y"]


def test_a_commit_for_an_unknown_run_is_refused(store: Store) -> None:
    with pytest.raises(LeaseLostError):
        commit(store, PassCommit("ghost", "t", end=RunEnd("COMPLETED")))
    assert store.get_run("ghost") is None


def test_a_refused_commit_leaves_the_rest_of_its_transaction(store: Store) -> None:
    good = started(store, "r1")
    start(store, "r2")
    bad = Lease("r2", lease_run(store, "r2", "w1").token + "x")
    with store.transaction() as tx:
        tx.commit_pass(full_commit(good, "good"), T0 + 1, cel_matches)
        with pytest.raises(LeaseLostError):
            tx.commit_pass(full_commit(bad, "bad"), T0 + 1, cel_matches)
        [after] = tx.ingest([trigger("after")], T0 + 1, cel_matches)
    assert after.run_ids == ("after",)
    assert [s.hash for s in store.get_steps("r1")] == ["h-good"]
    run = store.get_run("r1")
    assert run is not None
    assert run.status == "SLEEPING"
    assert store.get_run("child-good") is not None
    assert store.get_run("spawned-good") is not None
    assert store.get_run("after") is not None
    assert_untouched(store, "r2", "bad")


def broken_matcher(*_: object) -> bool:
    raise RuntimeError("matcher failed")


def failing_midway(store: Store, held: Lease) -> PassCommit:
    """A commit of ``held`` (``full_commit(…, "x")``) that fails after its first writes, in
    ``broken_matcher``: another run waits for its event with no index, so the matcher is asked."""
    start(store, "other")
    other = lease_run(store, "other")
    commit(
        store,
        PassCommit(
            other.run_id,
            other.token,
            steps=[step("other", "h-wait", 0, "PENDING", kind="wait")],
            waits=[wait("other", "wait-other", None)],
            end=RunEnd("WAITING"),
        ),
    )
    failing = full_commit(held, "x")
    failing.events.append(EventIngest(event("pay-1", "payment/received")))
    return failing


def assert_failed_midway_untouched(store: Store) -> None:
    """Nothing of ``failing_midway``'s commit reached the store."""
    assert_untouched(store, "r1", "x")
    assert store.get_events(["pay-1"]) == []
    assert [s.status for s in store.get_steps("other")] == ["PENDING"]
    other_state = store.load_run("other")
    assert other_state is not None
    assert [w.wait_id for w in other_state.waits] == ["wait-other"]


def test_a_verb_that_fails_midway_leaves_nothing_behind(store: Store) -> None:
    held = started(store)
    failing = failing_midway(store, held)
    with store.transaction() as tx:
        with pytest.raises(RuntimeError, match="matcher failed"):
            tx.commit_pass(failing, T0 + 1, broken_matcher)
        tx.ingest([trigger("after")], T0 + 1, cel_matches)
    assert_failed_midway_untouched(store)
    assert store.get_run("after") is not None
    commit(store, full_commit(held, "y"), T0 + 2)  # the lease survived
    assert [s.hash for s in store.get_steps("r1")] == ["h-y"]


def test_a_failing_job_of_a_group_commit_rolls_back_only_itself(store: Store) -> None:
    """Jobs as the writer applies them: each one's verb first thing in the job's savepoint, the
    job's error caught outside it, the transaction committed with the other jobs."""
    held = started(store)
    failing = failing_midway(store, held)
    good, later = started(store, "r2"), started(store, "r3")
    failed: list[Exception] = []
    with store.transaction() as tx:
        for job_commit, matches in [
            (full_commit(good, "good"), cel_matches),
            (failing, broken_matcher),
            (full_commit(later, "later"), cel_matches),
        ]:
            try:
                with tx.savepoint():
                    tx.commit_pass(job_commit, T0 + 1, matches)
            except RuntimeError as exc:
                failed.append(exc)
    assert [str(e) for e in failed] == ["matcher failed"]
    assert_failed_midway_untouched(store)
    for run_id, tag in [("r2", "good"), ("r3", "later")]:
        assert [s.hash for s in store.get_steps(run_id)] == [f"h-{tag}"]
        assert store.get_run(f"child-{tag}") is not None


def test_a_verb_failing_first_thing_in_a_savepoint_undoes_only_itself(store: Store) -> None:
    """The caller catches the verb's error inside the savepoint and goes on: the savepoint keeps
    what it writes next, and is undone as a whole when it fails itself."""
    held = started(store)
    failing = failing_midway(store, held)
    good = started(store, "r2")
    with store.transaction() as tx:
        with tx.savepoint():
            with pytest.raises(RuntimeError, match="matcher failed"):
                tx.commit_pass(failing, T0 + 1, broken_matcher)
            tx.commit_pass(full_commit(good, "good"), T0 + 1, cel_matches)
            with pytest.raises(RuntimeError, match="matcher failed"):  # after a write now
                tx.commit_pass(failing, T0 + 1, broken_matcher)

        def written_then_failing() -> None:
            with tx.savepoint():
                tx.ingest([trigger("kept-then-undone")], T0 + 1, cel_matches)
                tx.commit_pass(failing, T0 + 1, broken_matcher)

        with pytest.raises(RuntimeError, match="matcher failed"):
            written_then_failing()
    assert_failed_midway_untouched(store)
    assert [s.hash for s in store.get_steps("r2")] == ["h-good"]
    assert store.get_run("kept-then-undone") is None
    commit(store, full_commit(held, "y"), T0 + 2)  # the lease survived
    assert [s.hash for s in store.get_steps("r1")] == ["h-y"]


def test_steps_are_upserted_and_read_in_position_order(store: Store) -> None:
    held = started(store)
    commit(
        store,
        PassCommit(
            "r1",
            held.token,
            steps=[
                step("r1", "h-b", 2, "PENDING", kind="sleep", due_at=T0 + 60),
                step("r1", "h-a", 0, output=[1, 2]),
                step("r1", "h-c", 1, "FAILED"),
            ],
        ),
    )
    commit(store, PassCommit("r1", held.token, steps=[step("r1", "h-b", 2, output=None)]))

    steps = store.get_steps("r1")
    assert [(s.hash, s.position, s.status) for s in steps] == [
        ("h-a", 0, "COMPLETED"),
        ("h-c", 1, "FAILED"),
        ("h-b", 2, "COMPLETED"),
    ]
    assert loads(steps[0].output_json) == [1, 2]
    assert steps[0].step_id == "step-h-a"
    state = store.load_run("r1")
    assert state is not None
    assert set(state.steps) == {"h-a", "h-b", "h-c"}
    assert state.steps["h-b"].status == "COMPLETED"


def test_step_fields_round_trip(store: Store) -> None:
    held = started(store)
    written = step("r1", "h-1", 0, "RETRYING", kind="run", due_at=T0 + 5)
    written.error = {"name": "ValueError", "message": "boom", "stack": None}
    written.attempts, written.started_at, written.ended_at = 3, T0 + 1.25, T0 + 2.5
    commit(store, PassCommit("r1", held.token, steps=[written]))
    assert store.get_steps("r1") == [written]


def test_history_is_appended_in_order(store: Store) -> None:
    held = started(store)
    commit(store, PassCommit("r1", held.token, history=[history("r1", "A", T0 + 1, n=1)]))
    commit(
        store,
        PassCommit("r1", held.token, history=[history("r1", "B", T0 + 2), history("r1", "C")]),
    )
    rows = store.get_history("r1")
    assert [h.kind for h in rows] == ["RUN_QUEUED", "RUN_STARTED", "A", "B", "C"]
    # issue 6 "What a user sees": each row a pass wrote names the worker that ran the pass
    assert rows[2] == replace(history("r1", "A", T0 + 1, n=1), worker_id="w1")
    assert rows[0].worker_id is None  # queued by the sender, not by a pass


def test_a_commit_without_end_keeps_the_run_running_and_keeps_the_lease(store: Store) -> None:
    held = started(store)  # leased at T0: the run started then
    commit(store, PassCommit("r1", held.token, started_at=T0 + 0.5), T0 + 1)
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.started_at) == ("RUNNING", T0)
    assert lease(store, "w2", now=T0 + 2) == []
    commit(store, PassCommit("r1", held.token, started_at=T0 + 9), T0 + 3)
    run = store.get_run("r1")
    assert run is not None
    assert run.started_at == T0  # the first start sticks


def test_a_suspended_end_releases_the_lease_and_reschedules(store: Store) -> None:
    held = started(store)
    commit(store, PassCommit("r1", held.token, end=RunEnd("SLEEPING", due_at=T0 + 100)), T0 + 1)
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.started_at, run.ended_at) == ("SLEEPING", T0, None)
    assert store.next_due_at() == T0 + 100
    assert lease(store, "w1", now=T0 + 99) == []
    with pytest.raises(LeaseLostError):  # the pass's lease is gone with its suspension
        commit(store, PassCommit("r1", held.token), T0 + 2)
    [again] = lease(store, "w2", now=T0 + 100)
    assert again.run_id == "r1"
    assert again.token != held.token


def test_a_suspended_end_records_the_attempt(store: Store) -> None:
    held = started(store)
    commit(store, PassCommit("r1", held.token, end=RunEnd("RETRYING", T0 + 5, attempt=2)))
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.attempt) == ("RETRYING", 2)


@pytest.mark.parametrize(
    ("status", "output", "error"),
    [
        ("COMPLETED", b'{"ok":true}', None),
        ("FAILED", None, {"name": "ValueError", "message": "boom"}),
    ],
)
def test_a_terminal_end_removes_the_queue_item_and_waits(
    store: Store, status: str, output: bytes | None, error: dict[str, str] | None
) -> None:
    held = started(store)
    w = wait("r1", "wait-r1", None)
    commit(store, PassCommit("r1", held.token, waits=[w]))
    commit(store, PassCommit("r1", held.token, end=RunEnd(status, None, output, error, 1)), T0 + 9)

    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.output_json, run.error, run.ended_at) == (status, output, error, T0 + 9)
    assert run.attempt == 1
    assert store.next_due_at() is None
    assert lease(store, "w1", now=T0 + 10**6) == []
    state = store.load_run("r1")
    assert state is not None
    assert state.waits == []
    with store.transaction() as tx:
        [result] = tx.ingest([EventIngest(event("p", "payment/received"))], T0 + 10, cel_matches)
    assert result.resumed_run_ids == ()
    with pytest.raises(LeaseLostError):
        commit(store, PassCommit("r1", held.token), T0 + 11)


def test_events_in_a_commit_are_ingested_with_their_runs(store: Store) -> None:
    held = started(store)
    sent = EventIngest(
        event("sent-1", "order/shipped", {"n": 1}, sender_id="s-1"),
        (NewRun("r-sent", "fn-ship", ("sent-1",)),),
    )
    commit(store, PassCommit("r1", held.token, events=[sent]), T0 + 3)
    assert store.get_events(["sent-1"]) == [sent.event]
    run = store.get_run("r-sent")
    assert run is not None
    assert (run.status, run.function_id, run.created_at) == ("QUEUED", "fn-ship", T0 + 3)
    assert [r.run_id for r in store.list_runs(RunFilter(event_id="sent-1"))] == ["r-sent"]
    assert "r-sent" in [h.run_id for h in lease(store, "w2", now=T0 + 3)]
    # The sender id is remembered as for any ingest.
    with store.transaction() as tx:
        [again] = tx.ingest([sent], T0 + 4, cel_matches)
    assert again.duplicate


def test_child_runs_are_created(store: Store) -> None:
    held = started(store)
    invoked = EventIngest(event("inv-1", "inngest/function.invoked", {"x": 1}))
    child = NewRun("child", "fn-child", ("inv-1",), "r1", "h-invoke")
    commit(store, PassCommit("r1", held.token, events=[invoked], child_runs=[child]), T0 + 2)
    run = store.get_run("child")
    assert run is not None
    assert (run.status, run.parent_run_id, run.parent_step_hash) == ("QUEUED", "r1", "h-invoke")
    assert run.event_ids == ["inv-1"]
    state = store.load_run("child")
    assert state is not None
    assert [e.internal_id for e in state.events] == ["inv-1"]
    assert history_kinds(store, "child") == ["RUN_QUEUED"]
    assert [h.run_id for h in lease(store, "w2", now=T0 + 2)] == ["child"]


def test_executing_steps_are_shown_running_until_their_result(store: Store) -> None:
    # issue 6 "What a user sees": the step that is executing is visible (start time, attempt)
    start(store, "r1")
    held = lease_run(store, "r1", "w1")
    running = StepRecord("r1", "h-a", "a", "run", 0, "RUNNING", attempts=2, started_at=T0 + 1)
    with store.transaction() as tx:
        assert tx.mark_steps_running("r1", held.token, [running])
        assert not tx.mark_steps_running("r1", "stale-token", [replace(running, hash="h-b")])
    [shown] = store.get_steps("r1")
    assert (shown.status, shown.attempts, shown.started_at) == ("RUNNING", 2, T0 + 1)
    done = step("r1", "h-a", 0, output=1)
    commit(store, PassCommit("r1", held.token, steps=[done]))
    with store.transaction() as tx:  # a late marker never hides a result
        assert tx.mark_steps_running("r1", held.token, [running])
    assert [s.status for s in store.get_steps("r1")] == ["COMPLETED"]


def test_a_late_running_mark_never_hides_the_retry_of_its_attempt(store: Store) -> None:
    # a round's RUNNING mark (attempt 0 executing) that lands after the attempt's RETRYING
    # result must leave it (and its due_at) alone: a pass reading RUNNING re-executes the step
    # at once, before its backoff (test_retries' run woken early, red once in a gate)
    start(store, "r1")
    held = lease_run(store, "r1", "w1")
    retrying = StepRecord(
        "r1",
        "h-a",
        "a",
        "run",
        0,
        "RETRYING",
        error={"name": "E", "message": "m"},
        attempts=1,
        due_at=T0 + 600,
    )
    commit(store, PassCommit("r1", held.token, steps=[retrying]))
    late = StepRecord("r1", "h-a", "a", "run", 0, "RUNNING", attempts=0, started_at=T0 + 1)
    with store.transaction() as tx:
        assert tx.mark_steps_running("r1", held.token, [late])
    [kept] = store.get_steps("r1")
    assert (kept.status, kept.attempts, kept.due_at) == ("RETRYING", 1, T0 + 600)
    retried = replace(late, attempts=1, started_at=T0 + 601)  # the retry itself executing
    with store.transaction() as tx:
        assert tx.mark_steps_running("r1", held.token, [retried])
    [shown] = store.get_steps("r1")
    assert (shown.status, shown.attempts, shown.started_at) == ("RUNNING", 1, T0 + 601)
