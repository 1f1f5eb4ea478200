"""An SDK app's sync that did not end (its write failed: the store unavailable) or that is not
yet written when the same app syncs again is not taken for another app's: its functions are
the app's own. Both were refused as a clash (``ConfigError``, ``/fn/register``'s 400 'function
ids [...] are already registered') until the server restarted: a sync retried after a store
outage, and the second of two replicas of one app syncing at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from _stepline_dev import tiny_registration

from stepline import App, StoreUnavailable
from stepline.drivers.inngest import SdkApps
from stepline.testing import TestEngine


async def test_a_sync_whose_write_failed_is_synced_when_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("sync-retry")
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db"):
        writer = app.engine.writer
        write = writer.write

        async def unavailable(job: Callable[..., Any], **options: Any) -> Any:
            raise StoreUnavailable("the database restarts")

        monkeypatch.setattr(writer, "write", unavailable)
        apps = SdkApps(app)
        with pytest.raises(StoreUnavailable):
            await apps.register(tiny_registration())
        assert apps.apps == {}  # not listed: not stored
        monkeypatch.setattr(writer, "write", write)  # the store is back: the SDK retries
        synced = await apps.register(tiny_registration())
        assert apps.apps == {"tiny": synced}
        assert [name for name, _ in app.engine.store.sdk_apps(app.id)] == ["tiny"]
        # and a new version of it after the one that failed
        renamed = orjson.loads(orjson.dumps(tiny_registration()).replace(b"tiny-a", b"tiny-b"))
        monkeypatch.setattr(writer, "write", unavailable)
        with pytest.raises(StoreUnavailable):
            await apps.register(renamed)
        monkeypatch.setattr(writer, "write", write)
        await apps.register(renamed)
        ids = {f.id for f in app.functions}
        assert "tiny-b" in ids and "tiny-a" not in ids


async def test_two_syncs_of_one_app_at_once_both_succeed(tmp_path: Path) -> None:
    """Two replicas of one SDK app registering at the same time (the same body): the second
    found the first's functions registered, its write not yet committed."""
    app = App("sync-twice")
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db"):
        apps = SdkApps(app)
        first, second = await asyncio.gather(
            apps.register(tiny_registration()), apps.register(tiny_registration())
        )
        assert first.name == second.name == "tiny"
        assert apps.apps["tiny"] in (first, second)
        assert [f.id for f in app.functions] == ["tiny-a"]
        assert [name for name, _ in app.engine.store.sdk_apps(app.id)] == ["tiny"]


def _unavailable_writes(app: App, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """``fail(True)``: the app's writes raise ``StoreUnavailable`` until ``fail(False)``."""
    writer = app.engine.writer
    write = writer.write

    async def unavailable(job: Callable[..., Any], **options: Any) -> Any:
        raise StoreUnavailable("the database restarts")

    def fail(failing: bool) -> None:
        monkeypatch.setattr(writer, "write", unavailable if failing else write)

    return fail


async def test_a_sync_whose_write_failed_leaves_the_apps_functions_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its functions are not registered in the process (before: they stayed, unlisted, until
    the app synced again: a worker here served functions no store held, an event sent here
    started their runs, and a sync's new version hid the last stored one)."""
    app = App("sync-undone")
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db"):
        apps = SdkApps(app)
        fail = _unavailable_writes(app, monkeypatch)
        fail(True)
        with pytest.raises(StoreUnavailable):
            await apps.register(tiny_registration())
        assert [f.id for f in app.functions] == []
        assert apps.driver.urls == {}
        fail(False)
        synced = await apps.register(tiny_registration())
        urls = dict(apps.driver.urls)
        assert [f.id for f in app.functions] == ["tiny-a"]

        renamed = orjson.loads(orjson.dumps(tiny_registration()).replace(b"tiny-a", b"tiny-b"))
        fail(True)
        with pytest.raises(StoreUnavailable):
            await apps.register(renamed)
        assert [f.id for f in app.functions] == ["tiny-a"]  # the version stored, still served
        assert apps.driver.urls == urls
        assert apps.apps == {"tiny": synced}
        fail(False)
        await apps.register(renamed)
        assert [f.id for f in app.functions] == ["tiny-b"]


async def test_a_failed_sync_does_not_undo_a_later_sync_of_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two syncs of one app at once, the first's write failing after the second began: the
    first's failure leaves the second's functions registered."""
    app = App("sync-overtaken")
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db"):
        writer = app.engine.writer
        write = writer.write
        second_began = asyncio.Event()
        calls = 0

        async def first_fails(job: Callable[..., Any], **options: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                await second_began.wait()
                raise StoreUnavailable("the database restarts")
            second_began.set()
            return await write(job, **options)

        monkeypatch.setattr(writer, "write", first_fails)
        apps = SdkApps(app)
        renamed = orjson.loads(orjson.dumps(tiny_registration()).replace(b"tiny-a", b"tiny-b"))
        first, second = await asyncio.gather(
            apps.register(tiny_registration()), apps.register(renamed), return_exceptions=True
        )
        assert isinstance(first, StoreUnavailable)
        assert [f.id for f in app.functions] == ["tiny-b"]
        assert apps.apps == {"tiny": second}


async def test_a_failed_syncs_undo_leaves_a_function_another_app_took_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """App ``tiny`` syncs without its listed ``tiny-a``, and another app takes ``tiny-a``
    before the first sync's write fails: the undo leaves ``tiny-a`` the other app's, and the
    sync raises its ``StoreUnavailable`` (the SDK retries a 503). Before, the undo put ``tiny``'s
    ``tiny-a`` back over the other's: ``ConfigError`` ('already registered', a 400 the SDK
    does not retry) in place of the store's error, the undo left half made."""
    app = App("sync-undone-taken")
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db"):
        apps = SdkApps(app)
        await apps.register(tiny_registration())  # listed: tiny-a
        writer = app.engine.writer
        write = writer.write
        tiny_writes, other_synced = asyncio.Event(), asyncio.Event()
        calls = 0

        async def first_fails(job: Callable[..., Any], **options: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                tiny_writes.set()
                await other_synced.wait()
                raise StoreUnavailable("the database restarts")
            return await write(job, **options)

        monkeypatch.setattr(writer, "write", first_fails)
        renamed = orjson.loads(orjson.dumps(tiny_registration()).replace(b"tiny-a", b"tiny-b"))
        other = {**tiny_registration(), "appName": "other"}  # its function: tiny-a

        async def other_syncs() -> Any:
            await tiny_writes.wait()  # tiny's sync is being written (tiny-a given up)
            try:
                return await apps.register(other)
            finally:
                other_synced.set()

        first, taken = await asyncio.gather(
            apps.register(renamed), other_syncs(), return_exceptions=True
        )
        assert isinstance(first, StoreUnavailable), first
        assert [(f.id, (f.served_by or ("",))[0]) for f in app.functions] == [("tiny-a", "other")]
        assert apps.apps["other"] is taken
        monkeypatch.setattr(writer, "write", write)  # the store is back: the SDK retries
        await apps.register(renamed)
        assert sorted(f.id for f in app.functions) == ["tiny-a", "tiny-b"]
