"""Who may use the REST API: ``Authorization: Bearer <token>`` with a configured API token
(Inngest's REST API, ``/v1``, also takes a signing key the server shares with its SDK apps, as
Inngest's does: ``require_inngest_api_auth``).

Without tokens configured the API is open only when the server allows it (a loopback bind,
``allow_unauthenticated``); otherwise it answers 503 until tokens are configured, so an
application mounting ``App.asgi()`` without settings exposes nothing by mistake.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from stepline.drivers.inngest import SignatureError, check_bearer
from stepline.drivers.inngest._signing import SigningKeys
from stepline.server._problems import Problem
from stepline.server._state import server_settings

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="stepline"'}


def require_api_token(request: HTTPConnection) -> None:
    """401 unless the request carries a configured API token (see the module's doc)."""
    settings = server_settings(request)
    if not settings.api_keyed():
        if settings.allow_unauthenticated:
            return
        raise Problem(503, "no API tokens are configured on this server: set STEPLINE_API_TOKENS")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "missing API token: send Authorization: Bearer <token>", CHALLENGE)
    if not settings.api_token_ok(token.strip()):
        raise Problem(401, "invalid API token", CHALLENGE)


def require_inngest_api_auth(request: HTTPConnection) -> None:
    """``require_api_token``, or a bearer token that is a signing key the server was given
    (``--signing-key`` or its fallback; as is, without its ``signkey-<env>-`` prefix, or
    hashed, as ``check_bearer`` takes them): Inngest's REST API takes the environment's signing
    key (its "Authentication" page; the "fetch run status and output" recipe sends
    ``INNGEST_SIGNING_KEY``)."""
    settings = server_settings(request)
    if settings.signing_key:
        keys = SigningKeys.parse(settings.signing_key, settings.signing_key_fallback or None)
        try:
            check_bearer(request.headers, keys)
        except SignatureError:
            pass
        else:
            return
    require_api_token(request)
