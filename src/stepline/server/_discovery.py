"""Finding SDK apps on this machine, as Inngest's dev server does (``pkg/devserver/discovery``):
the common local ports (and ``$PORT``) that accept a connection are asked ``GET`` at the common
serve paths; a reply carrying ``X-Inngest-SDK`` is an app, named by that URL
(``http://127.0.0.1:<port><path>``). ``stepline dev`` without a Python app does it at every poll
(``--no-discovery`` turns it off)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

import httpx

from stepline._text import is_digits
from stepline._tls import tls_context

# Inngest's list: web servers' usual development ports
PORTS = (
    80,
    443,
    *range(3000, 3011),  # Rails, Express, Next.js
    5000,  # Django, Flask
    5173,  # Vite, SvelteKit
    8000,
    8080,
    8081,
    8888,
    *range(8910, 8916),  # Redwood
)
PATHS = ("/api/inngest", "/x/inngest", "/.netlify/functions/inngest", "/.redwood/functions/inngest")
TIMEOUT = 2.0
HOST = "127.0.0.1"


def discovery_ports() -> tuple[int, ...]:
    """``PORTS``, and ``$PORT`` when it names one (as Inngest's dev server adds it)."""
    extra = os.environ.get("PORT", "")
    if is_digits(extra) and 0 < int(extra) < 65536 and int(extra) not in PORTS:
        return (*PORTS, int(extra))
    return PORTS


async def discover(ports: Sequence[int], *, timeout: float = TIMEOUT) -> list[str]:
    """The serve URLs of the SDK apps found on ``ports`` of this machine."""
    opened = await asyncio.gather(*(_accepts(port, timeout) for port in ports))
    found: list[str] = []
    if not any(opened):  # nothing listens: no client to make (at every poll of `stepline dev`)
        return found
    async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as client:
        for port, accepts in zip(ports, opened, strict=True):
            if not accepts:
                continue
            for path in PATHS:
                url = f"http://{HOST}:{port}{path}"
                try:
                    response = await client.get(url)
                except httpx.HTTPError:
                    break  # the port answers no HTTP (or stopped): its other paths neither
                if "x-inngest-sdk" in response.headers:
                    found.append(url)
    return found


async def _accepts(port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
