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
