"""Serving the ASGI application with uvicorn inside the caller's event loop (beside a worker).

``HttpServer`` binds its socket when it is made, so a port in use is reported before anything
starts, and leaves signal handling to its caller (``stepline dev`` and ``stepline server`` stop
the worker and the server together on SIGINT/SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import socket
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp

from stepline import _loops
from stepline.engine.worker import Worker
from stepline.errors import ConfigError

T = TypeVar("T")
GRACEFUL_SECONDS = 3  # open requests (a live feed) get this long to end when stopping


class _Uvicorn(uvicorn.Server):
    """Uvicorn without its signal handlers: the caller decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Uvicorn serving ``asgi`` on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(self, asgi: ASGIApp, host: str, port: int) -> None:
        self.host = host
        self.socket = _bind(host, port)
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            asgi,
            log_config=None,  # the process's logging as it is
            access_log=False,  # it would log event keys (path segments): see AccessLog
            ws="none",
            # the application has no startup/shutdown handlers; with lifespan on, a stop at once
            # (asyncio.run cancelling every task: `stepline dev`'s second SIGINT) cancelled
            # uvicorn's lifespan task, which uvicorn logs as an error with its tracebacks
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            server_header=False,
        )
        self._server = _Uvicorn(config)
        for name in ("uvicorn", "uvicorn.error"):  # no "Uvicorn running on ..." chatter
            logging.getLogger(name).setLevel(logging.WARNING)

    @property
    def url(self) -> str:
        """``http://host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def started(self) -> bool:
        """Whether it accepts connections."""
        return bool(self._server.started)

    async def run(self) -> None:
        """Serve until ``stop()``; the socket is closed when it returns."""
        try:
            await self._server.serve(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        """Stop accepting connections; open requests get a few seconds to finish."""
        self._server.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = " (is another stepline dev or server running? choose another with --port)"
        why = exc.strerror or str(exc)
        more = hint if exc.errno == errno.EADDRINUSE else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {why}{more}") from None
    sock.listen(2048)  # connections made before uvicorn starts wait in the backlog
    sock.setblocking(False)
    return sock


async def serve_until(http: HttpServer, worker: Worker | None, stop: asyncio.Event) -> None:
    """Serve HTTP (and run ``worker``) until ``stop`` is set or either of them ends; then stop
    both: the server first (no new events), then the worker (in-flight steps finish). An error
    that ended one of them is raised once both have stopped."""
    tasks = [asyncio.create_task(http.run())]
    if worker is not None:
        tasks.append(asyncio.create_task(worker.run()))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        http.stop()
        if worker is not None:
            worker.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        task.result()


def run_serving(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` in a new event loop: uvloop's when it is installed (uvicorn[standard]
    brings it, and uvicorn picks it by default when it owns the loop), else asyncio's
    (``stepline._loops``: ``STEPLINE_LOOP=asyncio`` picks asyncio's), as every runner's.

    The objects made until now (modules, the app, its routes: ~50,000) are first moved out of
    the garbage collector's generations (``gc.freeze``): a full collection while serving then
    walks only what serving made. Otherwise each one walked them all, 20-100 ms on this
    2-core machine under load with every request in flight waiting on it (4 in a 3 s run of
    64 clients sending single events: the requests over the p99)."""
    gc.collect()
    gc.freeze()
    return _loops.run(main)
