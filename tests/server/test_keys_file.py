"""Event keys and API tokens revoked without a restart (issue 9): a keys file the server re-reads
when it changes; a missing or broken one grants nothing and never opens an API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stepline import App
from stepline.errors import ConfigError
from stepline.server import ServerSettings
from stepline.server._keys import parse_keys

from .conftest import ServeFn, open_settings


@pytest.fixture
def app() -> App:
    return App("keys-app")


def _write(path: Path, text: str) -> None:
    """Replace the file atomically, as the docs ask (a new inode: seen at the next check)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


def _settings(path: Path, **changes: object) -> ServerSettings:
    # a loopback dev server would be open without keys: the file must close it anyway
    return open_settings(keys_file=str(path), keys_check_every=0.0, **changes)


async def test_keys_from_the_file_are_added_and_revoked_without_a_restart(
    serve: ServeFn, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    _write(keys, "# the senders\nevent-key ek-1\n\napi-token tok-1\n")
    async with serve(_settings(keys)) as (client, _):
        auth = {"Authorization": "Bearer tok-1"}
        assert (await client.post("/e/ek-1", json={"name": "a"})).status_code == 200
        assert (await client.post("/e/ek-2", json={"name": "a"})).status_code == 401
        assert (await client.get("/api/v1/runs", headers=auth)).status_code == 200
        assert (await client.get("/api/v1/runs")).status_code == 401

        _write(keys, "event-key ek-2\napi-token tok-2\n")  # ek-1 and tok-1 revoked
        assert (await client.post("/e/ek-1", json={"name": "a"})).status_code == 401
        assert (await client.post("/e/ek-2", json={"name": "a"})).status_code == 200
        assert (await client.get("/api/v1/runs", headers=auth)).status_code == 401
        tok2 = {"Authorization": "Bearer tok-2"}
        assert (await client.get("/api/v1/runs", headers=tok2)).status_code == 200


async def test_a_broken_or_missing_file_grants_nothing(serve: ServeFn, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    _write(keys, "event-key ek-1\napi-token tok-1\n")
    async with serve(_settings(keys, event_keys=("static",))) as (client, _):
        auth = {"Authorization": "Bearer tok-1"}
        _write(keys, "event-key ek-1\napi-token tok-1\noops\n")
        assert (await client.post("/e/ek-1", json={"name": "a"})).status_code == 401
        assert (await client.get("/api/v1/runs", headers=auth)).status_code == 401
        assert (await client.get("/api/v1/runs")).status_code == 401  # never open
        # keys given on the command line are not the file's: they stay
        assert (await client.post("/e/static", json={"name": "a"})).status_code == 200
        _write(keys, "event-key ek-1\n")
        assert (await client.post("/e/ek-1", json={"name": "a"})).status_code == 200
        keys.unlink()
        assert (await client.post("/e/ek-1", json={"name": "a"})).status_code == 401
        assert (await client.post("/e/anything", json={"name": "a"})).status_code == 401


def test_an_unreadable_file_at_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the keys file"):
        ServerSettings(keys_file=str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_text("event-key ok\nevent-key two words\n")
    with pytest.raises(ConfigError, match="line 2"):
        ServerSettings(keys_file=str(bad))


def test_the_format_names_the_bad_line_never_its_content() -> None:
    assert parse_keys("event-key a\n  api-token  b \n# c\n", "f").event_keys == ("a",)
    assert parse_keys("api-token b\n", "f").api_tokens == ("b",)
    with pytest.raises(ValueError, match="line 1") as refused:
        parse_keys("secret-thing sk-live-123\n", "f")
    assert "line 1" in str(refused.value) and "sk-live-123" not in str(refused.value)
