"""Deterministic event ids on a client retry, with the official Python SDK's own retry: its
``send`` signs each request with a seed (``x-inngest-event-id-seed``) and sends the very same
request again after a 5xx. A proxy in front of Stepline's event API lets the first request
through (Stepline ingests it) and answers the SDK 502; the SDK's retry gets the same ids, and
the events are stored once.

issue 10, "What it must show" (Python): deterministic ids on a client retry.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepline import App
from stepline._tls import tls_context
from stepline.server import create_app
from stepline.server.serve import HttpServer
from stepline.server.settings import ServerSettings
from stepline.testing import TestEngine

pytestmark = pytest.mark.timeout(120)

SEND = """
import asyncio, json, sys
import inngest

client = inngest.Inngest(
    app_id="sender", is_production=False, event_key="test-event-key", event_api_base_url=sys.argv[1]
)
events = [inngest.Event(name="retry/me", data={"i": i}) for i in range(3)]
print(json.dumps(asyncio.run(client.send(events))))
"""


async def test_a_send_retried_by_the_sdk_gets_the_same_ids_and_stores_the_events_once(
    tmp_path: Path,
) -> None:
    app = App("send-retry")
    async with TestEngine(app, store="sqlite", path=tmp_path / "stepline.db") as t:
        settings = ServerSettings(dev=True, event_keys=("test-event-key",))
        stepline = HttpServer(create_app(app, settings), "127.0.0.1", 0)
        first: list[list[str]] = []  # the ids Stepline answered the first request with

        async def flaky(request: Request) -> Response:
            async with httpx.AsyncClient(verify=tls_context()) as client:
                reply = await client.post(
                    f"http://127.0.0.1:{stepline.port}{request.url.path}",
                    content=await request.body(),
                    headers={k: v for k, v in request.headers.items() if k != "host"},
                )
            if not first:  # ingested, but the client hears of a failure
                first.append(reply.json()["ids"])
                return Response(b"bad gateway", status_code=502)
            return Response(reply.content, reply.status_code, media_type="application/json")

        proxy = HttpServer(
            Starlette(routes=[Route("/e/{key}", flaky, methods=["POST"])]), "127.0.0.1", 0
        )
        servers = [asyncio.create_task(s.run()) for s in (stepline, proxy)]
        try:
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", SEND, f"http://127.0.0.1:{proxy.port}"],
                capture_output=True,
                check=True,
                timeout=60,
            )
        finally:
            for server in (stepline, proxy):
                server.stop()
            await asyncio.gather(*servers)
        ids = json.loads(done.stdout)
        assert [ids] == first and len(set(ids)) == 3  # the retry's ids are the first's
        stored = await t.app.events(name="retry/me", limit=100)
        assert sorted(e.event.internal_id for e in stored) == sorted(ids)  # stored once
