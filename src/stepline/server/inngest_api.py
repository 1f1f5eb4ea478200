"""The routes an Inngest SDK app calls by itself: ``POST /fn/register`` (its out-of-band sync).

The app's functions are registered in the served ``App`` with driver ``"inngest"``
(``stepline.drivers.inngest.SdkApps``). When the apps' driver holds signing keys (production),
the request must carry ``Authorization: Bearer <hashed signing key>``; in dev mode any app may
register, as with Inngest's dev server.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline.drivers.inngest import ProtocolError, SignatureError, check_bearer
from stepline.drivers.inngest._apps import sdk_apps
from stepline.errors import ConfigError
from stepline.server._responses import JSONResponse, error
from stepline.server._state import stepline_app

MAX_REGISTER_BYTES = 16 * 1024 * 1024


async def _register(request: Request) -> Response:
    apps = sdk_apps(stepline_app(request))
    keys = apps.driver.verify_keys
    if keys is not None:
        try:
            check_bearer(request.headers, keys)
        except SignatureError as exc:
            return error(401, str(exc))
    body = await request.body()
    if len(body) > MAX_REGISTER_BYTES:
        return error(413, f"register body over {MAX_REGISTER_BYTES} bytes")
    try:
        synced = await apps.register(body)
    except ProtocolError as exc:
        return error(400, str(exc))
    except ConfigError as exc:  # SyncRefused too: the message lists every problem
        return error(400, str(exc))
    return JSONResponse(
        {"ok": True, "modified": True, "app": synced.name, "functions": len(synced.functions)}
    )


def inngest_routes() -> list[BaseRoute]:
    """``POST /fn/register``."""
    return [Route("/fn/register", _register, methods=["POST"])]
