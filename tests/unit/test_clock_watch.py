"""The clock watch judges a measurement by what it proves: a skew measured over a slow round trip
(the server's time read anywhere within it) is beyond or within the bound only if it is for
every moment of that round trip; an inconclusive one leaves the last judgement standing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from stepline.clock import SystemClock
from stepline.engine._clock_watch import ClockWatch
from stepline.errors import ClockSkewError

BOUND = 1.0


class _Clock(SystemClock):
    """This machine's clock, moved by the test's round trips only."""

    def __init__(self) -> None:
        self.time = 100.0

    def now(self) -> float:
        return self.time


class _Store:
    """A database whose clock is ``server`` at the middle of each round trip (``clock_skew``
    reads this machine's clock before and after it, as PostgreSQL's does), within ``BOUND``
    of this machine's (``ClockChecked``)."""

    max_clock_skew = BOUND

    def __init__(self, clock: _Clock) -> None:
        self._clock = clock
        self.server_ahead = 0.0  # the server's clock minus this machine's
        self.round_trip = 0.0  # seconds: the server answers at once, read that much later

    def clock_skew(self, now: Callable[[], float] | None = None) -> float:
        assert now is not None
        before = now()
        server = before + self.server_ahead
        self._clock.time += self.round_trip
        after = now()
        return server - (before + after) / 2

    def clock_refusal(self, skew: float) -> str | None:
        return None if abs(skew) <= BOUND else f"{skew:+.3f} s"


class _Engine:
    def __init__(self) -> None:
        self.clock = _Clock()
        self.store = _Store(self.clock)
        self.woken = 0
        self.later: list[tuple[Callable[..., object], tuple[Any, ...]]] = []  # read_later's

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def read_later(self, fn: Callable[..., object], *args: Any) -> bool:
        self.later.append((fn, args))
        return True

    def wake_workers(self) -> None:
        self.woken += 1


def _measured(engine: _Engine, server_ahead: float, round_trip: float) -> None:
    """The next measurement: the server's clock read at the start of a round trip of
    ``round_trip`` seconds."""
    engine.store.server_ahead = server_ahead
    engine.store.round_trip = round_trip


async def test_a_slow_round_trip_of_a_clock_within_the_bound_refuses_nothing() -> None:
    engine = _Engine()
    watch = ClockWatch(engine)  # type: ignore[arg-type]
    # the clocks agree; the server answered at once, its answer read 3 s later: measured -1.5
    _measured(engine, server_ahead=0.0, round_trip=3.0)
    await watch.measure()
    assert watch.refusal is None
    watch.refuse_sends()  # does not raise


async def test_a_clock_beyond_the_bound_for_the_whole_round_trip_is_refused_and_released() -> None:
    engine = _Engine()
    watch = ClockWatch(engine)  # type: ignore[arg-type]
    _measured(engine, server_ahead=-5.0, round_trip=0.01)
    await watch.measure()
    assert watch.refusal is not None
    # back within the bound, but measured over a round trip that cannot tell: still refused
    _measured(engine, server_ahead=0.0, round_trip=3.0)
    await watch.measure()
    assert watch.refusal is not None
    assert engine.woken == 0
    # within the bound for the whole round trip: released, the workers woken
    _measured(engine, server_ahead=0.0, round_trip=0.01)
    await watch.measure()
    assert watch.refusal is None
    assert engine.woken == 1


async def test_sends_past_a_fresh_judgement_measure_once_beside_them() -> None:
    """A send whose judgement is ``CHECK_EVERY`` old starts a measurement it does not wait
    for (the engine's reader runs it); the sends made meanwhile start no other."""
    engine = _Engine()
    watch = ClockWatch(engine)  # type: ignore[arg-type]
    _measured(engine, server_ahead=0.0, round_trip=0.01)
    await watch.measure()
    _measured(engine, server_ahead=-5.0, round_trip=0.01)  # this machine's clock stepped
    watch.fresh_until = time.monotonic()  # measured CHECK_EVERY ago
    watch.refuse_sends()  # goes on: measured beside it
    watch.refuse_sends()
    assert watch.refusal is None
    [(measure, args)] = engine.later
    measure(*args)
    with pytest.raises(ClockSkewError):
        watch.refuse_sends()


class _Interleaved(ClockWatch):
    """A watch whose ``_first`` (the measurement sends wait for) is read with ``on_read`` run
    right after the read, when the lock is free: what a send on another thread may do
    between that read and what the reader does with it (held, the send waits for the lock)."""

    on_read: Callable[[], object] | None = None

    @property  # type: ignore[override]
    def _first(self) -> Any:
        value = self._first_value
        hook = self.on_read
        if hook is not None and not self._lock.locked():
            self.on_read = None
            hook()
        return value

    @_first.setter
    def _first(self, value: Any) -> None:
        self._first_value = value


async def test_a_measurement_beginning_beside_a_measurement_first_leaves_fresh_until() -> None:
    """A heartbeat's measurement and a send's measurement first beginning at one instant: the
    heartbeat read ``_first`` (none) without the lock, the send then began its measurement
    first (``fresh_until`` left where it was, so the sends after it wait for it), and the
    heartbeat moved ``fresh_until`` ``CHECK_EVERY`` ahead: the sends made meanwhile went on,
    judged by the judgement being replaced. The two are ordered by the lock now."""
    engine = _Engine()
    watch = _Interleaved(engine)  # type: ignore[arg-type]
    _measured(engine, server_ahead=0.0, round_trip=0.01)
    await watch.measure()
    watch.fresh_until = time.monotonic() - 3600  # as if measured an hour ago
    began: list[object] = []
    watch.on_read = lambda: began.append(watch._measure_first())
    await watch.measure()  # the heartbeat's
    if watch.on_read is not None:  # (the read was under the lock: the send comes after it)
        watch.on_read()
    # a measurement first in flight holds every send until it ends
    assert watch._first is None or watch.due()


async def test_while_refused_the_databases_time_holds_after_the_clock_is_put_right() -> None:
    """While refused, a held worker's heartbeats are written at the database's time (this clock
    plus the skew measured). The clock put right (NTP steps it back an hour) before a
    measurement catches it: that time is still the database's (it goes on from the measurement
    by the real time elapsed), not the clock's plus the hour's skew, which wrote the leases
    expired an hour ago (any worker took the passes in flight over, their step bodies run
    again) until the next measurement."""
    engine = _Engine()
    watch = ClockWatch(engine)  # type: ignore[arg-type]
    _measured(engine, server_ahead=-3600.0, round_trip=0.01)  # this clock an hour ahead
    await watch.measure()
    assert watch.refusal is not None
    database = engine.clock.time - 3600.0  # (this test's clocks stand still but for it)
    assert abs(watch.store_time(engine.clock.now()) - database) < 60

    engine.clock.time -= 3600.0  # put right, not measured yet: still refused
    _measured(engine, server_ahead=0.0, round_trip=0.01)
    assert watch.refusal is not None
    assert abs(watch.store_time(engine.clock.now()) - database) < 60  # not an hour before it
