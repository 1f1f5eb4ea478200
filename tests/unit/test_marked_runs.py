"""The stores' memory of the runs their pass commits marked RUNNING (``_marked_runs``) is bounded
by runs, not by lease tokens: one lease attempt gives all the runs it takes one token (issue 6
scale row, the worker's RSS)."""

from __future__ import annotations

from stepline.store._marked_runs import MarkedRuns


def test_the_marks_kept_are_bounded_by_runs_not_by_lease_tokens() -> None:
    marks = MarkedRuns(size=64)
    for token in range(20):  # 20 lease attempts of 100 runs each
        marks.add([(f"t{token}", f"r{token}-{run}") for run in range(100)])
    kept = [(t, r) for t in range(20) for r in range(100) if marks.marked(f"t{t}", f"r{t}-{r}")]
    assert len(kept) == 64  # before: every run of the 20 tokens (2,000)
    assert len(marks) == 64
    assert marks.marked("t19", "r19-99")  # the latest are kept
    assert not marks.marked("t0", "r0-0")  # the oldest dropped: marked again, then kept
    assert not marks.marked("t19", "r18-99")  # a run under another token is not marked
    marks.add([("t0", "r0-0")])
    assert marks.marked("t0", "r0-0") and len(marks) == 64
    assert not marks.marked("t19", "r19-36")  # the oldest kept made room for it


def test_postgresqls_lease_tokens_keep_their_marks_bounded_by_runs_too() -> None:
    # the same shape as MarkedRuns' before 42e40c0: every run of the 4,096 most recent tokens
    # (lead, eighteenth stop; the scale helper's note)
    from stepline.store.postgres._hints import LeaseTokens

    tokens = LeaseTokens(size=64)
    for token in range(20):
        tokens.remember(f"t{token}", "w1")
        tokens.mark_running([(f"t{token}", f"r{token}-{run}") for run in range(100)])
    kept = [
        (t, r) for t in range(20) for r in range(100) if tokens.marked_running(f"t{t}", f"r{t}-{r}")
    ]
    assert len(kept) == 64  # before: every run of the 20 tokens (2,000)
    assert tokens.marked_running("t19", "r19-99")
    assert not tokens.marked_running("t0", "r0-0")
    tokens.mark_running([("unknown", "r")])  # a token this process did not issue: not kept
    assert not tokens.marked_running("unknown", "r")
    assert tokens.owner("t0") == "w1"
