"""A lean HTTP/1.1 client for execution requests (``LeanClient``): keep-alive connections on
asyncio's transports, a request written in one ``write``, the reply framed by its
``Content-Length``, chunked encoding or the connection's end.

An execution request is the per-step hot path of an SDK run, and httpx's layers (httpcore's
pool and anyio streams, the model objects of a request and a response) cost about 0.9 ms of CPU
a request on this machine against about 0.08 ms here (``bench/inngest_sdk.py``). Only plain
``http://`` URLs that no proxy setting applies to are served here; ``https://`` and proxied URLs
go through httpx (``InngestDriver.post``), whose TLS and proxy handling this does not repeat.

Semantics kept from httpx: a time-out applies to connecting and to each wait for reply bytes
(a streamed reply that keeps sending is never cut), reply header names are lower-cased, a
repeated header's values are joined with ``", "``, a ``gzip`` or ``deflate`` body is decoded.
A reused idle connection that the server closed before any byte of the reply came back is
replaced and the request sent once more on a new connection (the server read none of it).
"""

from __future__ import annotations

import asyncio
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_IDLE = 20  # idle keep-alive connections kept per host (httpx's default)
MAX_CONNECTIONS = 100  # connections open at once per event loop (httpx's default)


class HttpClientError(Exception):
    """A request failed before a complete reply: time-out, connection error, bad framing."""


class _Stale(HttpClientError):
    """A reused connection was closed by the server before any byte of the reply."""


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
        self.received = False  # a byte of the current reply came

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received = True
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
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

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
                if not self.received:
                    raise _Stale("connection closed before the reply")
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
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise HttpClientError("bad Content-Length") from None
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
            try:
                size = int(bytes(self.buffer[:line_end]).split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpClientError("bad chunk size") from None
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
    """The connections of one event loop: idle ones by (host, port), and a cap on those open."""

    limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONNECTIONS))
    idle: dict[tuple[str, int], list[_Connection]] = field(default_factory=dict)


@dataclass
class LeanClient:
    """``post`` over keep-alive connections (see the module's docstring); ``handles(url)``
    says whether a URL is served here."""

    timeout: float
    _pools: dict[asyncio.AbstractEventLoop, _Pool] = field(default_factory=dict, repr=False)
    _hosts: dict[str, bool] = field(default_factory=dict, repr=False)  # host -> served here

    def handles(self, url: str) -> bool:
        if not url.startswith("http://"):
            return False
        host = urlsplit(url).hostname or ""
        served = self._hosts.get(host)
        if served is None:
            proxies = urllib.request.getproxies_environment()
            served = not (proxies.get("http") or proxies.get("all")) or bool(
                urllib.request.proxy_bypass(host)
            )
            self._hosts[host] = served
        return served

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST ``body`` to ``url`` (``http://``). Raises ``HttpClientError``."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        authority = parts.netloc.rpartition("@")[2]
        lines = [f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        request = "".join(lines).encode("latin-1") + body
        pool = self._pool()
        async with pool.limit:
            try:
                return await self._exchange(pool, (host, port), request)
            except _Stale:
                return await self._exchange(pool, (host, port), request, fresh=True)

    async def _exchange(
        self, pool: _Pool, address: tuple[str, int], request: bytes, *, fresh: bool = False
    ) -> Reply:
        connection, reused = None, False
        idle = pool.idle.get(address)
        while idle and not fresh:
            candidate = idle.pop()
            if candidate.usable():
                connection, reused = candidate, True
                break
            candidate.close()
        if connection is None:
            connection = await self._connect(address)
        done = False
        try:
            assert connection.transport is not None
            connection.received = False
            connection.transport.write(request)
            try:
                reply, keep = await connection.read(self.timeout)
            except _Stale:
                if reused:
                    raise
                raise HttpClientError("connection closed before the reply") from None
            done = True
        except OSError as exc:
            raise HttpClientError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if not done:
                connection.close()
        if keep and not connection.buffer:
            idle = pool.idle.setdefault(address, [])
            if len(idle) < MAX_IDLE:
                idle.append(connection)
                return reply
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
            for other in [lp for lp in self._pools if lp.is_closed()]:
                del self._pools[other]  # a finished loop's connections went with it
            pool = self._pools[loop] = _Pool()
        return pool

    def close(self) -> None:
        """Close the idle connections (another loop's in that loop's thread)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, pool in self._pools.items():
            for connections in pool.idle.values():
                for connection in connections:
                    if loop is running:
                        connection.close()
                    elif not loop.is_closed():
                        loop.call_soon_threadsafe(connection.close)
        self._pools.clear()
