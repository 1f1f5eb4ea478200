"""Every demo in ``examples/flow`` does what its page in ``docs/flow-control`` says.

Each test runs a module's ``main()`` (a demo on a fresh SQLite file with virtual time) and
checks the facts it returns and the lines it prints.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import pkgutil
from collections import Counter

import examples.flow
import pytest
from examples.flow import (
    batching,
    cancellation,
    concurrency,
    cron,
    debounce,
    idempotency,
    priority,
    rate_limit,
    singleton,
    throttle,
)

from stepline import App
from stepline.engine.worker import Worker
from stepline.store.records import Lease

PAGES = {
    "batching": "batching.md",
    "cancellation": "cancellation.md",
    "concurrency": "concurrency.md",
    "cron": "cron.md",
    "debounce": "debounce.md",
    "idempotency": "idempotency.md",
    "priority": "priority.md",
    "rate_limit": "rate-limit.md",
    "singleton": "singleton.md",
    "throttle": "throttle.md",
}


def test_every_module_has_an_app_a_main_and_a_page() -> None:
    names = {m.name for m in pkgutil.iter_modules(examples.flow.__path__)}
    assert {n for n in names if not n.startswith("_")} == set(PAGES)
    for name, page in PAGES.items():
        module = importlib.import_module(f"examples.flow.{name}")
        assert isinstance(module.app, App)
        assert callable(module.main)
        assert f"docs/flow-control/{page}" in (module.__doc__ or "")


def test_concurrency_bounds_runs_per_key_and_in_all(capsys: pytest.CaptureFixture[str]) -> None:
    facts = concurrency.main()
    assert facts["reports"] == ["COMPLETED"] * 8
    assert facts["peak"] == {"acme": 2, "globex": 2, "all": 3}
    assert facts["digests"] == ["COMPLETED"] * 3
    out = capsys.readouterr().out
    assert "at most at once: acme 2, globex 2, all accounts 3" in out
    assert "all 3 digests are SLEEPING at the same time" in out


def test_the_concurrency_demo_shows_its_limits_when_passes_start_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loaded machine starts passes late (review: the demo's overlap was a 0.1 s real sleep,
    and a gate at load 14 saw globex 1): every other pass here starts 0.15 s late."""
    started = itertools.count()
    run_pass = Worker._pass

    async def late(self: Worker, lease: Lease) -> None:
        if next(started) % 2:
            await asyncio.sleep(0.15)  # real time: how late a pass starts on a busy machine
        await run_pass(self, lease)

    monkeypatch.setattr(Worker, "_pass", late)
    assert concurrency.main()["peak"] == {"acme": 2, "globex": 2, "all": 3}


async def test_a_concurrency_demo_call_started_after_its_wave_filled_begins_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy loop lets the next pass start before the calls of a wave just filled have looked
    again (review, eighteenth stop: a gate at load 9 saw globex 1 again). The new call counted
    the released ones as in flight and filled a wave by itself, at once: the waves slid, and
    one account's calls no longer overlapped (globex 1 in about 1 run of 8 with 0.05-0.2 s
    between looks). The released calls here do not look again during the test."""
    monkeypatch.setattr(concurrency, "POLL", 60)
    monkeypatch.setattr(
        concurrency, "calls", {"expected": 8, "started": 0, "waiting": 0, "wave": 0}
    )
    monkeypatch.setattr(concurrency, "in_flight", Counter())
    monkeypatch.setattr(concurrency, "peak", Counter())
    call = concurrency.query_reporting_api
    wave = [asyncio.create_task(call(account)) for account in ("acme", "globex", "acme")]
    await asyncio.sleep(0)  # each starts; the third fills the wave and returns
    late = asyncio.create_task(call("globex"))
    await asyncio.sleep(0)
    try:
        assert wave[2].done()
        assert not late.done()  # it waits for the calls of its own wave
    finally:
        for task in [*wave, late]:
            task.cancel()
        await asyncio.gather(*wave, late, return_exceptions=True)


def test_throttle_delays_runs_and_drops_none(capsys: pytest.CaptureFixture[str]) -> None:
    facts = throttle.main()
    assert facts["starts"] == {"acme": [0, 0, 30, 60, 90], "globex": [0]}
    assert facts["statuses"] == ["COMPLETED"]
    out = capsys.readouterr().out
    assert "acme c4 started at +90s" in out
    assert "6 runs, none dropped" in out


def test_rate_limit_skips_and_records_the_excess(capsys: pytest.CaptureFixture[str]) -> None:
    facts = rate_limit.main()
    assert facts["started"] == {
        "acme x3 at 0h": [1, 0, 0],
        "globex at 0h": [1],
        "acme at 2h": [0],
        "acme at 4h": [1],
    }
    assert facts["skipped"] == ["rate_limit"] * 3
    assert facts["runs"] == 3
    assert "skipped: 3 events, reasons ['rate_limit']" in capsys.readouterr().out


def test_debounce_runs_once_with_the_last_event(capsys: pytest.CaptureFixture[str]) -> None:
    facts = debounce.main()
    assert sorted(facts["quiet"]) == ["doc-1: Hello", "doc-2: Draft"]
    assert facts["capped"] == "doc-3: v7"
    assert facts["capped_after_minutes"] == 30
    out = capsys.readouterr().out
    assert "+120s: 0 runs yet" in out
    assert "+420s: indexed 'doc-1: Hello'" in out


def test_batching_by_size_by_timeout_and_by_key(capsys: pytest.CaptureFixture[str]) -> None:
    facts = batching.main()
    assert facts["batches"] == [
        (0, "shop", ["/p0", "/p1", "/p2"]),
        (10, "blog", ["/hello"]),
        (10, "shop", ["/p3", "/p4"]),
    ]
    assert "6 events, 3 runs" in capsys.readouterr().out


def test_priority_reorders_the_backlog(capsys: pytest.CaptureFixture[str]) -> None:
    facts = priority.main()
    assert facts["order"] == ["dan", "ann", "cat", "bob"]
    assert facts["starts"] == [40, 40, 40, 70]  # bob (free, -60) waits a minute after sending
    assert "dan started at +40s" in capsys.readouterr().out


def test_singleton_skip_and_cancel(capsys: pytest.CaptureFixture[str]) -> None:
    facts = singleton.main()
    assert facts["inbox"] == [("u1", "COMPLETED"), ("u2", "COMPLETED")]
    assert facts["inbox_skipped"] == ["singleton"]
    assert facts["recs"] == [
        ("CANCELLED", "singleton: replaced by a newer run"),
        ("COMPLETED", "u1#2"),
        ("COMPLETED", "u2#1"),
    ]
    assert "rebuild-recommendations: CANCELLED" in capsys.readouterr().out


def test_idempotency_key_and_event_id(capsys: pytest.CaptureFixture[str]) -> None:
    facts = idempotency.main()
    both = ["audit-checkout", "send-checkout-email"]
    assert facts["started"] == {
        "cart-1": both,
        "cart-1 again": ["audit-checkout"],
        "cart-2 (id=co-2)": both,
        "cart-2 (id=co-2) again": [],
        "cart-1, a day later": both,
    }
    assert facts["skipped"] == ["idempotency"]  # a duplicate event id is not a skip
    assert "cart-2 (id=co-2) again: started nothing" in capsys.readouterr().out


def test_cron_fires_in_its_timezone_and_catches_up_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    facts = cron.main()
    assert facts["reports"] == [
        {"by": "ops"},
        {"by": "cron", "tick": "Fri 27 Mar 12:00 CET"},
        {"by": "cron", "tick": "Fri 24 Apr 12:00 CEST"},
    ]
    assert facts["total"] == 3
    assert "report by cron for Fri 24 Apr 12:00 CEST" in capsys.readouterr().out


def test_cancellation_timeouts_api_replay_and_pause(capsys: pytest.CaptureFixture[str]) -> None:
    facts = cancellation.main()
    assert facts["cancel_on"] == ["CANCELLED", "COMPLETED", True]
    assert facts["cleanup_saw_o1"] is True
    assert facts["start_timeout"] == ("CANCELLED", "not started within 600s (timeouts.start)")
    assert facts["finish_timeout"] == ("CANCELLED", "not finished within 900s (timeouts.finish)")
    assert facts["cancel_run"] == [True, False]
    assert facts["cancel_runs"] == ["CANCELLED", "CANCELLED", "SLEEPING"]
    assert facts["replay"] == ("FAILED", "COMPLETED", 2, 1)
    assert facts["paused"] == ["QUEUED", "QUEUED"]
    assert facts["resumed"] == ["COMPLETED", "COMPLETED"]
    assert facts["resumed_order"] == ["crm", "ldap"]
    out = capsys.readouterr().out
    assert "cancel_on: o-1 CANCELLED, o-2 COMPLETED, charged ['o-2']" in out
    assert "cancel_runs(if_=eu): 2 cancelled" in out


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_demo_runs_twice_in_one_process(name: str) -> None:
    """``main()`` resets its state, so a demo can be run again (as the docs suggest)."""
    module = importlib.import_module(f"examples.flow.{name}")
    assert module.main() == module.main()
