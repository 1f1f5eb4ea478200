"""The routes an Inngest SDK app calls by itself: ``POST /fn/register`` (its out-of-band sync);
``GET /dev``, what Inngest's dev server says of itself (its test tools poll it until the
functions they expect are there). Inngest's REST API (``/v1/events``, ``/v1/runs``) is
``inngest_rest``.

The app's functions are registered in the served ``App`` with driver ``"inngest"``
(``stepline.drivers.inngest.SdkApps``). When the apps' driver holds signing keys (production),
the request must carry ``Authorization: Bearer <hashed signing key>``; in dev mode any app may
register, as with Inngest's dev server. A server that is not ``dev`` refuses every registration
until it is given a signing key: it never drives SDK apps unsigned.

``serve_sdk_apps(app, settings)`` sets the apps up for a server (``stepline dev`` and ``stepline
server`` call it at start): the driver gets the settings' signing keys, and the apps synced
before are registered again from the store, so their runs resume without a new sync.

``keep_synced(apps, urls)`` is ``stepline dev -u URL``: it asks each app to sync (``PUT``) until
it has, then again at every poll (an app that changed its functions is synced anew; an unchanged
registration changes nothing), as Inngest's dev server does with its ``--sdk-url``; with
``discover_on``, it also syncs the apps it finds on those local ports (``_discovery``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline import __version__
from stepline.drivers.inngest import (
    FunctionConfig,
    InngestDriver,
    ProtocolError,
    SdkApps,
    SignatureError,
    SigningKeys,
    check_bearer,
)
from stepline.drivers.inngest._apps import registered_sdk_apps, sdk_apps
from stepline.errors import ConfigError
from stepline.server._auth import require_api_token
from stepline.server._discovery import discover
from stepline.server._responses import JSONResponse, error
from stepline.server._state import server_settings, stepline_app
from stepline.server.settings import ServerSettings

if TYPE_CHECKING:
    from stepline.sdk.app import App

MAX_REGISTER_BYTES = 16 * 1024 * 1024
SYNC_TIMEOUT = 30.0

log = logging.getLogger("stepline.sdk_apps")


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
        before = dict(apps.apps)
        synced = await apps.register(body)
    except ProtocolError as exc:
        return error(400, str(exc))
    except ConfigError as exc:  # SyncRefused too: the message lists every problem
        return error(400, str(exc))
    return JSONResponse(
        {
            "ok": True,
            "modified": synced is not before.get(synced.name),
            "app": synced.name,
            "functions": len(synced.functions),
        }
    )


async def _dev_info(request: Request) -> Response:
    """``GET /dev``: the apps and their functions, as Inngest's dev server lists them
    (``_dev_function``). Asks for the REST API's token (open on a
    loopback ``stepline dev``)."""
    require_api_token(request)
    apps = registered_sdk_apps(stepline_app(request))
    synced = list(apps.apps.values()) if apps is not None else []
    return JSONResponse(
        {
            "version": f"stepline-{__version__}",
            "functions": [_dev_function(f.config) for app in synced for f in app.functions],
            "handlers": [
                {"name": app.name, "url": app.url, "sdk": app.sdk, "functions": len(app.functions)}
                for app in synced
            ],
        }
    )


def _dev_function(fn: FunctionConfig) -> dict[str, Any]:
    """A function as Inngest's ``/dev`` lists it: its config as synced, with ``slug`` and its
    steps as a list of ``{id, name, uri}``."""
    steps = fn.config.get("steps")
    listed = [
        {"id": step.get("id"), "name": step.get("name"), "uri": fn.url}
        for step in (steps.values() if isinstance(steps, Mapping) else ())
        if isinstance(step, Mapping)
    ]
    return {**fn.config, "slug": fn.slug, "name": fn.name, "steps": listed}


async def keep_synced(
    apps: SdkApps,
    urls: Sequence[str],
    *,
    interval: float,
    poll: bool = True,
    discover_on: Sequence[int] = (),
) -> None:
    """Ask the app at each of ``urls`` to sync, every ``interval`` seconds until it has; with
    ``poll``, go on syncing them at that interval. ``discover_on``: at every interval, look for
    apps on these local ports (``_discovery``) and sync each one found as if it were named.
    Logs each app's first sync and each failure once (until it syncs again). Runs until
    cancelled."""
    pending = list(dict.fromkeys(urls))
    known = set(pending)
    failing: set[str] = set()
    synced: set[str] = set()
    while pending or discover_on:
        if discover_on:
            for url in await discover(discover_on):
                if url not in known:
                    log.info("discovered an SDK app at %s", url)
                    known.add(url)
                    pending.append(url)
        for url in list(pending):
            problem = await _sync_once(apps, url)
            if problem is None:
                if url not in synced or url in failing:
                    log.info("synced the SDK app at %s", url)
                synced.add(url)
                failing.discard(url)
                if not poll:
                    pending.remove(url)
            elif url not in failing:
                failing.add(url)
                log.warning("could not sync the SDK app at %s (trying again): %s", url, problem)
        if pending or discover_on:
            await asyncio.sleep(interval)


async def _sync_once(apps: SdkApps, url: str) -> str | None:
    """Sync the app at ``url``: None when it answered the ``PUT`` with a success, else why."""
    try:
        status = await apps.sync(url, timeout=SYNC_TIMEOUT)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None if status < 300 else f"it answered {status}"


def inngest_routes() -> list[BaseRoute]:
    """``POST /fn/register``, ``GET /dev``."""
    return [
        Route("/fn/register", _register, methods=["POST"]),
        Route("/dev", _dev_info, methods=["GET"]),
    ]
