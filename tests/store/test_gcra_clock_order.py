"""GCRA buckets (rate limit, throttle) decided exactly when the senders' clocks are not in commit
order, on every backend.

Concurrent senders each decide with their own ``now``; the transaction serialized second may
carry the earlier clock (taken before it waited for the bucket's lock, or on a machine a few
milliseconds behind). A bucket decided at the later time first must not make the earlier-clocked
decision after it look further from the arrival time than it is: the decision is made at the
bucket's last decision time when the sender's clock is behind it, as if the events had arrived
in commit order. Each test here orders its calls as the commits were ordered and gives the
clocks out of that order.
"""

from __future__ import annotations

from stepline.gcra import GcraSpec
from stepline.store import Store
from stepline.store.records import Admission, EventIngest, NewRun

from .builders import T0, event, ingest, lease

# RateLimit(limit=20, period="1h"): a burst of 20 // 10 = 2 on top, so 3 at once, then one
# every 180 s (engine.admission.rate_limit_capacity)
RATE = GcraSpec("rl\x1ffn\x1fk", 20, 3600.0, 3)
# Throttle(limit=2, period="1h"): 2 start at once, the next 1,800 s after the first
THROTTLE = GcraSpec("th\x1ffn\x1fk", 2, 3600.0, 2)


def send(store: Store, run_id: str, now: float, admission: Admission) -> bool:
    """One sender's transaction: an event starting ``run_id`` decided at ``now``; True if the
    run was started."""
    run = NewRun(run_id, "fn", (f"ev-{run_id}",), admission=admission)
    [result] = ingest(store, EventIngest(event(f"ev-{run_id}"), (run,)), now=now)
    return result.run_ids == (run_id,)


def test_a_rate_limit_admits_its_burst_when_a_later_clock_committed_first(store: Store) -> None:
    limited = Admission(rate_limit=RATE)
    # the sender whose clock reads 5 ms later commits first; the two others, behind it, after
    started = [
        send(store, "r1", T0 + 0.005, limited),
        send(store, "r2", T0, limited),
        send(store, "r3", T0 + 0.001, limited),
    ]
    assert started == [True, True, True]
    # and never more than the burst: the fourth within the same milliseconds is refused, on
    # any of those clocks
    assert not send(store, "r4", T0 + 0.002, limited)
    assert not send(store, "r5", T0 + 0.006, limited)
    # one more is admitted a steady interval after the last decision, not before
    assert not send(store, "r6", T0 + 0.005 + 179.0, limited)
    assert send(store, "r7", T0 + 0.005 + 180.0, limited)


def test_a_throttle_starts_its_burst_at_once_when_a_later_clock_committed_first(
    store: Store,
) -> None:
    throttled = Admission(throttle=THROTTLE)
    assert send(store, "r1", T0 + 0.005, throttled)
    assert send(store, "r2", T0, throttled)
    assert send(store, "r3", T0 + 0.001, throttled)
    # r1 and r2 are the throttle's two at once: each due when its sender sent it (r2 is not
    # held back to the later clock's time: it is not delayed, so its priority would still
    # order it), r3 only a steady interval (1,800 s) after the first decision. Leased for
    # longer than the test's span, so no lease expires and comes back.
    assert [held.run_id for held in lease(store, now=T0, ttl=10_000.0)] == ["r2"]
    assert [held.run_id for held in lease(store, now=T0 + 0.005, ttl=10_000.0)] == ["r1"]
    assert lease(store, now=T0 + 1800.0, ttl=10_000.0) == []
    assert [held.run_id for held in lease(store, now=T0 + 0.005 + 1800.0)] == ["r3"]


def test_an_earlier_clock_never_makes_a_rate_limit_admit_more(store: Store) -> None:
    limited = Admission(rate_limit=RATE)
    assert all(send(store, f"r{i}", T0 + 10.0, limited) for i in range(3))
    # senders whose clocks lag behind by up to a steady interval are refused as well
    assert not send(store, "late-1", T0, limited)
    assert not send(store, "late-2", T0 + 10.0 - 180.0, limited)
