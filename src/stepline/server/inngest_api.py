"""The routes an Inngest SDK app calls by itself: ``POST /fn/register`` (its out-of-band sync).

The app's functions are registered in the served ``App`` with driver ``"inngest"``
(``stepline.drivers.inngest.SdkApps``). When the apps' driver holds signing keys (production),
the request must carry ``Authorization: Bearer <hashed signing key>``; in dev mode any app may
register, as with Inngest's dev server. A server that is not ``dev`` refuses every registration
until it is given a signing key: it never drives SDK apps unsigned.

``serve_sdk_apps(app, settings)`` sets the apps up for a server (``stepline dev`` and ``stepline
server`` call it at start): the driver gets the settings' signing keys, and the apps synced
before are registered again from the store, so their runs resume without a new sync.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline.drivers.inngest import (
    InngestDriver,
    ProtocolError,
    SdkApps,
    SignatureError,
    SigningKeys,
    check_bearer,
)
from stepline.drivers.inngest._apps import registered_sdk_apps, sdk_apps
from stepline.errors import ConfigError
from stepline.server._responses import JSONResponse, error
from stepline.server._state import server_settings, stepline_app
from stepline.server.settings import ServerSettings

if TYPE_CHECKING:
    from stepline.sdk.app import App

MAX_REGISTER_BYTES = 16 * 1024 * 1024


NO_SIGNING_KEY = (
    "this server has no signing key, so it serves no Inngest SDK app: start it with "
    "--signing-key (INNGEST_SIGNING_KEY), the key the apps are given"
)


def serve_sdk_apps(app: App, settings: ServerSettings) -> SdkApps | None:
    """Set up ``app``'s SDK apps as ``settings`` say (signed with its keys; unsigned only on a
    ``dev`` server) and register the apps synced before; None on a server that is not ``dev``
    and has no signing key (it serves no SDK app)."""
    if settings.signing_key:
        keys = SigningKeys.parse(settings.signing_key, settings.signing_key_fallback or None)
        driver = InngestDriver(signing_key=keys.current, verify_keys=keys)
        return SdkApps(app, driver, server_kind="dev" if settings.dev else "cloud")
    if settings.dev:
        return SdkApps(app)
    return None


async def _register(request: Request) -> Response:
    app = stepline_app(request)
    apps = registered_sdk_apps(app)
    if apps is None:
        if not server_settings(request).dev:
            return error(401, NO_SIGNING_KEY)
        apps = sdk_apps(app)
    keys = apps.driver.verify_keys
    if keys is None and not server_settings(request).dev:
        return error(401, NO_SIGNING_KEY)
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
