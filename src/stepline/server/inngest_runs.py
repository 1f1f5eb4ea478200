"""The run routes an Inngest SDK calls by itself: ``GET /v0/runs/{run_id}/batch`` (the run's
events) and ``GET /v0/runs/{run_id}/actions`` (its memoized step results), asked for when an
execution request was too large to carry them (``use_api``, over 4 MiB: a batch of large
events, large step outputs); ``POST /v1/checkpoint/{run_id}/async``, where a JS 4.x SDK reports
the steps it runs during one request (async checkpointing, ``InngestDriver.checkpoint``).

Authenticated as ``/fn/register`` is: with the apps' signing keys (``Authorization: Bearer
<hashed signing key>``) in production, open on a ``dev`` server. As Inngest's server: 400 for a
malformed run id, 410 for a run that is not (or no longer) stored.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline.drivers.inngest import ProtocolError, SdkApps, SignatureError, check_bearer
from stepline.drivers.inngest._apps import registered_sdk_apps
from stepline.server._responses import JSONResponse, error
from stepline.server._state import server_settings, stepline_app

MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024
RUN_ID = re.compile(r"^[0-9A-Za-z]{26}$")  # a ULID, as Stepline's run ids are


async def _batch(request: Request) -> Response:
    return await _run_data(request, "batch")


async def _actions(request: Request) -> Response:
    return await _run_data(request, "actions")


def _authorized(request: Request) -> SdkApps | Response:
    """The SDK apps the request may reach, or the error to answer."""
    apps = registered_sdk_apps(stepline_app(request))
    dev = server_settings(request).dev
    keys = apps.driver.verify_keys if apps is not None else None
    if apps is None or (keys is None and not dev):
        return error(401, "this server drives no SDK app unsigned")
    if keys is not None:
        try:
            check_bearer(request.headers, keys)
        except SignatureError as exc:
            return error(401, str(exc))
    run_id = request.path_params["run_id"]
    if not RUN_ID.match(run_id):
        return error(400, f"malformed run id {run_id!r}")
    return apps


async def _checkpoint(request: Request) -> Response:
    apps = _authorized(request)
    if isinstance(apps, Response):
        return apps
    body = await request.body()
    if len(body) > MAX_CHECKPOINT_BYTES:
        return error(413, f"checkpoint body over {MAX_CHECKPOINT_BYTES} bytes")
    try:
        status = await apps.driver.checkpoint(request.path_params["run_id"], body)
    except ProtocolError as exc:
        return error(400, str(exc))
    if status != 200:
        return error(status, "no request of this run is in flight here")
    return JSONResponse({"ok": True})


async def _run_data(request: Request, part: str) -> Response:
    apps = _authorized(request)
    if isinstance(apps, Response):
        return apps
    run_id = request.path_params["run_id"]
    body = await apps.run_data(run_id, part)
    if body is None:
        return error(410, f"no state for run {run_id}")
    return Response(body, media_type="application/json")


def inngest_run_routes() -> list[BaseRoute]:
    """``GET /v0/runs/{run_id}/batch``, ``GET /v0/runs/{run_id}/actions`` and ``POST
    /v1/checkpoint/{run_id}/async``."""
    return [
        Route("/v0/runs/{run_id}/batch", _batch, methods=["GET"]),
        Route("/v0/runs/{run_id}/actions", _actions, methods=["GET"]),
        Route("/v1/checkpoint/{run_id}/async", _checkpoint, methods=["POST"]),
    ]
