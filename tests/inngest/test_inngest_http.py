"""The lean HTTP/1.1 client of execution requests (``_http.LeanClient``, through
``InngestDriver.post``) against a scripted server on a local socket: the request as written,
keep-alive reuse, each way a reply's body is framed, interim replies, encoded bodies, a
server that closes an idle connection, failures, and which URLs it leaves to httpx."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from stepline.drivers.inngest import InngestDriver
from stepline.drivers.inngest._driver import SdkRequestError
from stepline.drivers.inngest._http import LeanClient

Script = Callable[[int, bytes], bytes | None]  # (connection no., request) -> raw reply or close


class Server:
    """Answers each request on connection n with ``script(n, request)``; ``None`` closes the
    connection without a reply; ``b""`` leaves the request unanswered."""

    def __init__(self, script: Script, close_after: bool) -> None:
        self.script = script
        self.close_after = close_after  # close each connection after its first reply
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.script(number, request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(script: Script, *, close_after: bool = False) -> AsyncIterator[Server]:
    server = Server(script, close_after)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


def reply(body: bytes = b"{}", *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


async def test_a_request_is_written_whole_and_its_connection_kept_alive() -> None:
    async with serving(
        lambda n, r: reply(b'{"ok":1}', "X-Inngest-SDK: a", "Vary: x", "vary: y")
    ) as server:
        driver = InngestDriver(timeout=5)
        url = f"http://127.0.0.1:{server.port}/api/inngest?fnId=f&stepId=step"
        for _ in range(3):
            status, headers, body = await driver.post(url, b'{"a":1}', {"X-Run-ID": "r1"})
            assert (status, body) == (200, b'{"ok":1}')
            assert headers["x-inngest-sdk"] == "a"
            assert headers["vary"] == "x, y"  # repeated: joined, as httpx joins them
        await driver.aclose()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /api/inngest?fnId=f&stepId=step HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"X-Run-ID: r1\r\n" in first and b"Content-Length: 7\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a":1}')


async def test_a_chunked_reply_with_extensions_and_trailers_is_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'1;ext=1\r\n \r\n5\r\n{"a":\r\n2\r\n1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    async with serving(lambda n, r: chunked) as server:
        client = LeanClient(timeout=5)
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(2):
            got = await client.post(url, b"{}", {})
            assert (got.status, got.body) == (201, b' {"a":1}')
        client.close()
    assert server.connections == 1  # the trailers were consumed: the connection was reused


async def test_a_reply_without_a_length_ends_with_its_connection() -> None:
    raw = b"HTTP/1.0 200 OK\r\nX-Inngest-SDK: flask\r\n\r\n[1,2]"
    async with serving(lambda n, r: raw, close_after=True) as server:
        client = LeanClient(timeout=5)
        for _ in range(2):
            got = await client.post(f"http://127.0.0.1:{server.port}/", b"", {})
            assert (got.status, got.body) == (200, b"[1,2]")
        client.close()
    assert server.connections == 2  # an HTTP/1.0 reply: its connection is not reused


async def test_an_interim_reply_is_skipped_and_a_gzip_body_decoded() -> None:
    packed = gzip.compress(b'{"op":"StepRun"}')
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + reply(packed, "Content-Encoding: gzip")
    async with serving(lambda n, r: raw) as server:
        client = LeanClient(timeout=5)
        got = await client.post(f"http://127.0.0.1:{server.port}/", b"{}", {})
        client.close()
    assert (got.status, got.body) == (200, b'{"op":"StepRun"}')


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    """The server drops the kept-alive connection on the second request without a reply (as
    after its keep-alive time-out): the request is made again on a new connection."""

    def script(n: int, request: bytes) -> bytes | None:
        return None if n == 1 and len(server.requests) == 2 else reply(b"[%d]" % n)

    async with serving(script) as server:
        client = LeanClient(timeout=5)
        url = f"http://127.0.0.1:{server.port}/"
        assert (await client.post(url, b"{}", {})).body == b"[1]"
        assert (await client.post(url, b"{}", {})).body == b"[2]"
        client.close()
    assert server.connections == 2


async def test_failures_are_request_errors_of_the_driver() -> None:
    driver = InngestDriver(timeout=0.2)
    async with serving(lambda n, r: None) as closing:  # a new connection closed at once
        with pytest.raises(SdkRequestError, match="closed before the reply"):
            await driver.post(f"http://127.0.0.1:{closing.port}/", b"{}", {})
    async with serving(lambda n, r: b"") as silent:  # never answers: the read time-out
        with pytest.raises(SdkRequestError, match="read time-out"):
            await driver.post(f"http://127.0.0.1:{silent.port}/", b"{}", {})
    async with serving(lambda n, r: b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}") as short:
        short.close_after = True
        with pytest.raises(SdkRequestError, match="closed in the reply's body"):
            await driver.post(f"http://127.0.0.1:{short.port}/", b"{}", {})
    port = silent.port  # closed now: nothing listens
    with pytest.raises(SdkRequestError, match="cannot connect"):
        await driver.post(f"http://127.0.0.1:{port}/", b"{}", {})
    await driver.aclose()


def test_https_and_proxied_urls_are_left_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    client = LeanClient(timeout=5)
    assert client.handles("http://127.0.0.1:3000/api/inngest")
    assert not client.handles("https://app.example/api/inngest")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    proxied = LeanClient(timeout=5)
    assert not proxied.handles("http://app.example/api/inngest")
    assert proxied.handles("http://localhost:3000/api/inngest")
