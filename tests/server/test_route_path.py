"""The server below a mount point (``root_path``: a reverse proxy's prefix, ``uvicorn
--root-path``): the event API's fast path sees the same path the router does."""

from __future__ import annotations

import httpx
import pytest

from stepline import App
from stepline.server import create_app
from stepline.server.app import route_path
from stepline.testing import TestEngine

from .conftest import open_settings


@pytest.mark.parametrize(
    ("path", "root_path", "seen"),
    [
        ("/e/key", "", "/e/key"),
        ("/stepline/e/key", "/stepline", "/e/key"),
        ("/stepline", "/stepline", ""),
        ("/steplinex/e/key", "/stepline", "/steplinex/e/key"),  # not below the mount point
        ("/other/e/key", "/stepline", "/other/e/key"),
    ],
)
def test_the_route_path_is_the_path_below_the_mount_point(
    path: str, root_path: str, seen: str
) -> None:
    assert route_path({"type": "http", "path": path, "root_path": root_path}) == seen


async def test_events_are_received_below_a_mount_point(tmp_path: object) -> None:
    app = App("mounted")
    async with TestEngine(app) as t:
        asgi = create_app(app, open_settings())
        transport = httpx.ASGITransport(app=asgi, root_path="/stepline")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            sent = await client.post("/stepline/e/key", json={"name": "x/y"})
            assert sent.status_code == 200, sent.text
            [event_id] = sent.json()["ids"]
            assert (await t.app.get_event(event_id)) is not None
