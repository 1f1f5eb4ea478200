"""Requests whose path or query holds a NUL character are refused (400) before routing.

No name or id Stepline stores can hold a NUL (they are refused at the edge when written), so
such a lookup or filter can only find nothing; on PostgreSQL, whose text cannot hold one, the
store refused it instead (an unhandled error, a 500). One answer on every store: 400.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from stepline.server._responses import error

NUL_IN_REQUEST = "the request's path or query holds a NUL character (%00): no name or id can"


class RefuseNul:
    """ASGI middleware: 400 for an HTTP request with a NUL in its path or its query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
        ):
            await error(400, NUL_IN_REQUEST)(scope, receive, send)
            return
        await self.app(scope, receive, send)
