"""The dashboard's sessions, login and CSRF protection.

A session is a signed cookie (HMAC-SHA256 with the server's ``dashboard_secret``): a random
session id, whether it logged in, and when it expires. It is ``HttpOnly``, ``SameSite=Lax`` and
``Secure`` whenever the request came over HTTPS (or the server is not a loopback development
server). Every side-effecting route is a POST that must carry the session's CSRF token (a form
field ``csrf`` or the ``X-CSRF-Token`` header): ``HMAC(secret, "csrf:" + session id)``, so a
page of another site can neither read nor forge it.

The development server on a loopback address is open (no login), but still hands out a
session (for CSRF). Elsewhere a login is required: the ``dashboard_password`` or one of the
REST API tokens. Without either configured, nobody can log in (the login page says why).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from stepline.server.settings import ServerSettings, is_loopback

COOKIE = "stepline_session"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Session:
    """A browser's session: ``sid`` (random), ``authenticated``, ``expires`` (epoch seconds)."""

    sid: str
    authenticated: bool
    expires: float


class Guard:
    """Signs and checks sessions and CSRF tokens for one server's settings."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._key = hashlib.sha256(b"stepline-dashboard\0" + settings.dashboard_secret.encode())
        self.open = settings.dev and is_loopback(settings.host)

    @property
    def can_log_in(self) -> bool:
        """Whether any credential is configured (else the login page explains it)."""
        return bool(self.settings.dashboard_password) or bool(self.settings.accepted_api_tokens())

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key.digest(), payload, hashlib.sha256).hexdigest()

    # -- sessions ---------------------------------------------------------------------------------
    def read(self, request: HTTPConnection) -> Session | None:
        """The request's valid session, or None (missing, forged or expired)."""
        raw = request.cookies.get(COOKIE)
        if not raw or "." not in raw:
            return None
        body, signature = raw.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(body.encode())):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(body.encode()))
            session = Session(str(data["sid"]), bool(data["auth"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > time.time() else None

    def new_session(self, authenticated: bool) -> Session:
        """A fresh session (a new id on every login: no session fixation)."""
        return Session(secrets.token_urlsafe(18), authenticated, time.time() + SESSION_SECONDS)

    def allowed(self, session: Session | None) -> bool:
        """Whether this session may see the dashboard."""
        return self.open or (session is not None and session.authenticated)

    def set_cookie(self, request: HTTPConnection, response: Response, session: Session) -> None:
        """Store ``session`` in the response's cookie."""
        payload = {"sid": session.sid, "auth": session.authenticated, "exp": session.expires}
        body = base64.urlsafe_b64encode(orjson.dumps(payload)).decode()
        response.set_cookie(
            COOKIE,
            f"{body}.{self._sign(body.encode())}",
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            secure=self.secure(request),
            path="/",
        )

    def clear_cookie(self, request: HTTPConnection, response: Response) -> None:
        """Forget the session (log out)."""
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="lax", secure=self.secure(request)
        )

    def secure(self, request: HTTPConnection) -> bool:
        """Whether cookies get the ``Secure`` flag: over HTTPS, and off loopback."""
        return request.url.scheme == "https" or not is_loopback(request.url.hostname or "")

    # -- credentials and CSRF ---------------------------------------------------------------------
    def check_login(self, secret: str) -> bool:
        """Whether ``secret`` is the dashboard password or a REST API token (constant time)."""
        given = secret.encode()
        ok = False
        password = self.settings.dashboard_password
        if password:
            ok |= secrets.compare_digest(given, password.encode())
        ok |= bool(secret) and self.settings.api_token_ok(secret)
        return ok

    def csrf_token(self, session: Session) -> str:
        """The CSRF token of a session."""
        return self._sign(f"csrf:{session.sid}".encode())

    async def csrf_ok(self, request: Request, session: Session | None) -> bool:
        """Whether a POST carries its session's CSRF token (header or form field)."""
        if session is None:
            return False
        token = request.headers.get("x-csrf-token")
        if token is None:
            token = (await read_form(request)).get("csrf")
        return token is not None and hmac.compare_digest(token, self.csrf_token(session))


MAX_FORM_BYTES = 1024 * 1024


class FormTooLarge(Exception):
    """A form body over ``MAX_FORM_BYTES``."""


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form body (or a multipart one without files: what browsers
    send for these forms), read once per request; the last value of a repeated field wins.
    Raises ``FormTooLarge`` past ``MAX_FORM_BYTES``."""
    cached = getattr(request.state, "dashboard_form", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge
    fields: dict[str, str] = {}
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        fields = _multipart(bytes(body), kind)
    else:
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            fields[name] = value
    request.state.dashboard_form = fields
    return fields


def _multipart(body: bytes, kind: str) -> dict[str, str]:
    boundary = next(
        (p.split("=", 1)[1].strip('"') for p in kind.split(";") if "boundary=" in p), None
    )
    fields: dict[str, str] = {}
    if not boundary:
        return fields
    for part in body.split(b"--" + boundary.encode()):
        head, _, value = part.partition(b"\r\n\r\n")
        found = re.search(rb'name="([^"]*)"', head)
        if found is None or b"filename=" in head:
            continue
        fields[found.group(1).decode("utf-8", "replace")] = value.removesuffix(b"\r\n").decode(
            "utf-8", "replace"
        )
    return fields
