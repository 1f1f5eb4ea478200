"""A lean HTTP/1.1 client for execution requests (``LeanClient``): keep-alive connections on
asyncio's transports, a request written in one ``write``, the reply framed by its
``Content-Length``, chunked encoding or the connection's end.

An execution request is the per-step hot path of an SDK run, and httpx's layers (httpcore's
pool and anyio streams, the model objects of a request and a response) cost about 0.9 ms of CPU
a request on this machine against about 0.08 ms here (``bench/inngest_sdk.py``). Only plain
``http://`` URLs with an ASCII host name that no proxy setting applies to are served here;
``https://``, international host names and proxied URLs go through httpx
(``InngestDriver.post``), whose TLS, IDNA and proxy handling this does not repeat.

Semantics kept from httpx: a time-out applies to connecting and to each wait for reply bytes
(a streamed reply that keeps sending is never cut), reply header names are lower-cased, a
repeated header's values are joined with ``", "``, a ``gzip`` or ``deflate`` body is decoded,
the URL's path and query are percent-encoded as httpx encodes them (UTF-8; ``%`` kept), and a
header value outside ASCII is refused (a request error, as with httpx).

A request is never sent twice: once any of it was written, a connection that ends without a
reply fails that request (``HttpClientError``; the driver's attempt fails and is retried with
backoff), as with httpx and Go's net/http (RFC 9112 9.3.1: a POST is not retried). Only a
connection found unusable before writing is replaced: one the server closed, one with bytes
that came while it was idle (an unsolicited 408), or one idle longer than ``IDLE_TIMEOUT``,
shorter than common servers' keep-alive time-outs (gunicorn 2 s, uvicorn and Node 5 s), so a
request rarely meets a connection the server is closing.

Each event loop has its own pool (its connections are used in that loop's thread only); the
map of pools is guarded by a lock, and ``close()`` closes each pool's idle connections in its
loop's thread and any connection returned to a closed pool afterwards.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import quote, urlsplit

MAX_IDLE = 20  # idle keep-alive connections kept per host (httpx's default)
MAX_CONNECTIONS = 100  # connections open at once per event loop (httpx's default)
IDLE_TIMEOUT = 1.5  # seconds an idle connection is kept (below gunicorn's 2 s keep-alive)
_PATH_SAFE = "!$&'()*+,;=:@/%"  # kept as written in a path (httpx's set; "%" escapes kept)
_QUERY_SAFE = _PATH_SAFE + "?"
_HEX = frozenset(b"0123456789abcdefABCDEF")


class HttpClientError(Exception):
    """A request failed before a complete reply: time-out, connection error, bad framing."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection; reads one reply at a time (``read``)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.waiter: asyncio.Future[None] | None = None
        self.idle_since = 0.0  # loop time it went idle in its pool

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (create_connection's); not asserted by class: uvloop's is no
        # subclass of asyncio.Transport (the assertion failed every SDK request on uvloop)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- the client's side ----------------------------------------------------------------------
    def usable(self) -> bool:
        """Open, and nothing came while idle (bytes there would be taken for the next reply)."""
        transport = self.transport
        return (
            not self.closed
            and not self.buffer
            and transport is not None
            and not transport.is_closing()
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def _more(self, timeout: float) -> None:
        """Wait for more bytes (or the connection's end); raises on a time-out."""
        if self.closed:
            raise HttpClientError("connection closed before the reply ended")
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self.waiter
        except TimeoutError:
            raise HttpClientError(f"no reply bytes within {timeout:g}s (read time-out)") from None
        finally:
            self.waiter = None

    async def read(self, timeout: float) -> tuple[Reply, bool]:
        """The next reply on this connection and whether the connection can be reused."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if self.closed:
                if not self.buffer:
                    raise HttpClientError("connection closed before the reply")
                raise HttpClientError("connection closed in the reply's headers")
            await self._more(timeout)
        status, version, headers = _head(bytes(self.buffer[:end]))
        del self.buffer[: end + 4]
        if 100 <= status < 200:  # an interim reply (100 Continue): the final one follows
            return await self.read(timeout)
        keep = version == b"HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._chunked(timeout)
        elif "content-length" in headers:
            length = _content_length(headers["content-length"])
            while len(self.buffer) < length:
                if self.closed:
                    raise HttpClientError("connection closed in the reply's body")
                await self._more(timeout)
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        else:  # the body ends with the connection
            while not self.closed:
                await self._more(timeout)
            body, keep = bytes(self.buffer), False
            self.buffer.clear()
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "deflate"):
            try:
                body = zlib.decompress(body, 47 if encoding == "gzip" else 15)
            except zlib.error:
                try:
                    body = zlib.decompress(body, -15)  # raw deflate, as some servers send
                except zlib.error as exc:
                    raise HttpClientError(f"bad {encoding} body: {exc}") from None
        return Reply(status, headers, body), keep and not self.closed

    async def _chunked(self, timeout: float) -> bytes:
        chunks: list[bytes] = []
        while True:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                await self._bytes(timeout)
                continue
            digits = bytes(self.buffer[:line_end]).split(b";", 1)[0].strip()
            if not digits or not _HEX.issuperset(digits):
                raise HttpClientError(f"bad chunk size: {digits[:20]!r}")
            size = int(digits, 16)
            if size == 0:  # trailers (ignored) up to an empty line
                while True:
                    trailer_end = self.buffer.find(b"\r\n", line_end + 2)
                    if trailer_end < 0:
                        await self._bytes(timeout)
                        continue
                    if trailer_end == line_end + 2:
                        del self.buffer[: trailer_end + 2]
                        return b"".join(chunks)
                    line_end = trailer_end
            start = line_end + 2
            while len(self.buffer) < start + size + 2:
                await self._bytes(timeout)
            chunks.append(bytes(self.buffer[start : start + size]))
            del self.buffer[: start + size + 2]

    async def _bytes(self, timeout: float) -> None:
        if self.closed:
            raise HttpClientError("connection closed in a chunked body")
        await self._more(timeout)


def _content_length(value: str) -> int:
    """Digits only; repeated equal values (joined by ``_head``) are one (RFC 9110 8.6)."""
    values = {part.strip() for part in value.split(",")}
    digits = values.pop() if len(values) == 1 else ""
    if not (digits.isascii() and digits.isdigit()):
        raise HttpClientError(f"bad Content-Length: {value[:40]!r}")
    return int(digits)


def _head(raw: bytes) -> tuple[int, bytes, dict[str, str]]:
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise HttpClientError(f"not an HTTP reply: {lines[0][:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise HttpClientError(f"bad status line: {lines[0][:80]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise HttpClientError(f"bad header line: {line[:80]!r}")
        key = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return status, parts[0], headers


@dataclass
class _Pool:
    """The connections of one event loop, used in its thread only: idle ones by (host, port),
    and a cap on those open. ``closed``: set by ``LeanClient.close``; nothing is kept after."""

    limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONNECTIONS))
    idle: dict[tuple[str, int], list[_Connection]] = field(default_factory=dict)
    closed: bool = False

    def take(self, address: tuple[str, int], idle_timeout: float, now: float) -> _Connection | None:
        """An idle connection to reuse (newest first), closing those unusable or expired."""
        idle = self.idle.get(address)
        while idle:
            candidate = idle.pop()
            if candidate.usable() and now - candidate.idle_since < idle_timeout:
                return candidate
            candidate.close()
        return None

    def keep(self, address: tuple[str, int], connection: _Connection, now: float) -> bool:
        idle = self.idle.setdefault(address, [])
        if self.closed or len(idle) >= MAX_IDLE:
            return False
        connection.idle_since = now
        idle.append(connection)
        return True

    def close_idle(self) -> None:
        self.closed = True
        for connections in self.idle.values():
            for connection in connections:
                connection.close()
        self.idle.clear()


@dataclass
class LeanClient:
    """``post`` over keep-alive connections (see the module's docstring); ``handles(url)``
    says whether a URL is served here."""

    timeout: float
    idle_timeout: float = IDLE_TIMEOUT
    _pools: dict[asyncio.AbstractEventLoop, _Pool] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # of _pools
    _hosts: dict[str, bool] = field(default_factory=dict, repr=False)  # host -> served here

    def handles(self, url: str) -> bool:
        if not url.startswith("http://"):
            return False
        host = urlsplit(url).hostname or ""
        served = self._hosts.get(host)
        if served is None:
            proxies = urllib.request.getproxies_environment()
            served = host.isascii() and (  # httpx encodes an international name (IDNA)
                not (proxies.get("http") or proxies.get("all"))
                or bool(urllib.request.proxy_bypass(host))
            )
            self._hosts[host] = served
        return served

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST ``body`` to ``url`` (``http://``, ASCII host). Raises ``HttpClientError``."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        target = quote(parts.path, safe=_PATH_SAFE) or "/"
        if parts.query:
            target = f"{target}?{quote(parts.query, safe=_QUERY_SAFE)}"
        authority = parts.netloc.rpartition("@")[2]
        lines = [f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        head = "".join(lines)
        breaks = len(lines) + 2  # the request line's, each header's and the blank line's
        if not head.isascii() or head.count("\n") != breaks or head.count("\r") != breaks:
            raise HttpClientError("a header name or value outside ASCII or with a line break")
        request = head.encode("ascii") + body
        pool = self._pool()
        async with pool.limit:
            return await self._exchange(pool, (host, port), request)

    async def _exchange(self, pool: _Pool, address: tuple[str, int], request: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        connection = pool.take(address, self.idle_timeout, loop.time())
        if connection is None:
            connection = await self._connect(address)
        # From here on the request is never sent again (see the module's docstring).
        done = False
        try:
            assert connection.transport is not None
            connection.transport.write(request)
            reply, keep = await connection.read(self.timeout)
            done = True
        except OSError as exc:
            raise HttpClientError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if not done:
                connection.close()
        if not (keep and connection.usable() and pool.keep(address, connection, loop.time())):
            connection.close()
        return reply

    async def _connect(self, address: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                _, connection = await loop.create_connection(_Connection, *address)
        except TimeoutError:
            raise HttpClientError(f"connect time-out ({self.timeout:g}s)") from None
        except OSError as exc:
            raise HttpClientError(f"cannot connect to {address[0]}:{address[1]}: {exc}") from exc
        return connection

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            with self._lock:
                for other in [lp for lp in self._pools if lp.is_closed()]:
                    del self._pools[other]  # a finished loop's connections went with it
                pool = self._pools.setdefault(loop, _Pool())
        return pool

    def close(self) -> None:
        """Close the idle connections, each loop's in that loop's thread, and those returned
        by requests in flight when they end."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            pools, self._pools = self._pools, {}
        for loop, pool in pools.items():
            pool.closed = True  # before close_idle runs: no connection is kept after it
            if loop is running:
                pool.close_idle()
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(pool.close_idle)
                except RuntimeError:  # the loop closed meanwhile: its connections went with it
                    pass
