"""The lean HTTP/1.1 client of execution requests (``_http.LeanClient``, through
``InngestDriver.post``) against a scripted server on a local socket: the request as written,
keep-alive reuse, each way a reply's body is framed, interim replies, encoded bodies, a
server that closes an idle connection, failures, and which URLs it leaves to httpx."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import uvloop

from stepline.drivers.inngest import InngestDriver
from stepline.drivers.inngest._driver import SdkRequestError
from stepline.drivers.inngest._http import HttpClientError, LeanClient

Script = Callable[[int, bytes], bytes | None]  # (connection no., request) -> raw reply or close


class Server:
    """Answers each request on connection n with ``script(n, request)``; ``None`` closes the
    connection without a reply; ``b""`` leaves the request unanswered."""

    def __init__(self, script: Script, close_after: bool) -> None:
        self.script = script
        self.close_after = close_after  # close each connection after its first reply
        self.connections = 0
        self.ended = 0  # connections whose handler finished (the client closed or the script)
        self.requests: list[bytes] = []
        self.port = 0
        self.hold: asyncio.Event | None = None  # when set: each reply waits for it

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
                if self.hold is not None:
                    await self.hold.wait()
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.ended += 1


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


def test_a_request_on_uvloops_loop() -> None:
    # every runner (`stepline server`, `dev`, the workers) runs on uvloop when it is installed
    # (stepline._loops): its transports are no subclass of asyncio.Transport, which the
    # client asserted (every SDK request failed there: AssertionError in connection_made)
    async def exchange() -> tuple[int, bytes]:
        async with serving(lambda n, r: reply(b'{"ok":1}')) as server:
            driver = InngestDriver(timeout=5)
            url = f"http://127.0.0.1:{server.port}/api/inngest?fnId=f&stepId=step"
            status, _, body = await driver.post(url, b"{}", {})
            await driver.aclose()
            return status, body

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(exchange()) == (200, b'{"ok":1}')


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


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        await asyncio.sleep(0.005)  # real time: the poll interval; the deadline bounds the wait


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    """The server closes the kept-alive connection after its reply (as at its keep-alive
    time-out): the next request, which nothing of was written yet, goes on a new connection."""
    async with serving(lambda n, r: reply(b"[%d]" % n), close_after=True) as server:
        client = LeanClient(timeout=5)
        url = f"http://127.0.0.1:{server.port}/"
        assert (await client.post(url, b"{}", {})).body == b"[1]"
        [pool] = client._pools.values()
        [connection] = pool.idle[("127.0.0.1", server.port)]
        await until(lambda: connection.closed, "the client sees the server's close")
        assert (await client.post(url, b"{}", {})).body == b"[2]"
        client.close()
    assert server.connections == 2 and len(server.requests) == 2


async def test_a_request_the_sdk_read_and_executed_is_not_sent_again() -> None:
    """The SDK reads the second request on a kept-alive connection, runs the step, then dies
    before replying (OOM kill, a worker time-out): the request was written, so it is not sent
    again (httpx and Go's net/http never re-send a written POST). The attempt fails with a
    request error: the step is retried with backoff, counted against its retries."""
    executed: list[int] = []

    def script(n: int, request: bytes) -> bytes | None:
        executed.append(n)
        return None if len(executed) == 2 else reply(b"[%d]" % n)

    driver = InngestDriver(timeout=5)
    async with serving(script) as server:
        url = f"http://127.0.0.1:{server.port}/api/inngest?fnId=f&stepId=step"
        await driver.post(url, b"{}", {})
        with pytest.raises(SdkRequestError, match="closed before the reply"):
            await driver.post(url, b"{}", {})
        assert (await driver.post(url, b"{}", {}))[2] == b"[2]"  # a new connection
    await driver.aclose()
    assert executed == [1, 1, 2]


async def test_an_idle_connection_past_its_idle_time_is_not_reused() -> None:
    """Idle connections expire before common servers' keep-alive time-outs (gunicorn 2 s,
    uvicorn 5 s), so a request rarely meets a connection the server is closing."""
    async with serving(lambda n, r: reply(b"[%d]" % n)) as server:
        client = LeanClient(timeout=5, idle_timeout=0)
        url = f"http://127.0.0.1:{server.port}/"
        assert (await client.post(url, b"{}", {})).body == b"[1]"
        assert (await client.post(url, b"{}", {})).body == b"[2]"
        client.close()
        await until(lambda: server.ended == 2, "both connections closed")
    assert server.connections == 2


async def test_bytes_on_an_idle_connection_are_not_the_next_reply() -> None:
    """A server that writes on an idle kept-alive connection (a 408 before it closes it):
    the connection is not reused, those bytes are not the next request's reply."""
    async with serving(lambda n, r: reply(b"[%d]" % n)) as server:
        client = LeanClient(timeout=5)
        url = f"http://127.0.0.1:{server.port}/"
        await client.post(url, b"{}", {})
        [pool] = client._pools.values()
        [connection] = pool.idle[("127.0.0.1", server.port)]
        connection.data_received(reply(b"stale", status="408 Request Timeout"))  # while idle
        got = await client.post(url, b"{}", {})
        client.close()
    assert (got.status, got.body) == (200, b"[2]")
    assert connection.closed


@pytest.mark.parametrize("length", ["-1", "+2", "2_0", " ", "2, 3", "\u00b2"])
async def test_a_bad_content_length_is_a_framing_error(length: str) -> None:
    raw = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n{{}}".encode("latin-1")
    async with serving(lambda n, r: raw, close_after=True) as server:
        driver = InngestDriver(timeout=5)
        with pytest.raises(SdkRequestError, match="bad Content-Length"):
            await driver.post(f"http://127.0.0.1:{server.port}/", b"{}", {})
        await driver.aclose()


@pytest.mark.parametrize("size", ["-0", "+2", "0x2", " "])
async def test_a_bad_chunk_size_is_a_framing_error(size: str) -> None:
    raw = f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\n{{}}\r\n0\r\n\r\n"
    async with serving(lambda n, r: raw.encode(), close_after=True) as server:
        client = LeanClient(timeout=5)
        with pytest.raises(HttpClientError, match="bad chunk size"):
            await client.post(f"http://127.0.0.1:{server.port}/", b"{}", {})
        client.close()


async def test_a_url_outside_ascii_is_percent_encoded_as_httpx_does() -> None:
    async with serving(lambda n, r: reply()) as server:
        driver = InngestDriver(timeout=5)
        url = f"http://127.0.0.1:{server.port}/api/\u0444n x%41?q=\u00e9&r=a b/c?d%zz#frag"
        assert (await driver.post(url, b"{}", {}))[0] == 200
        await driver.aclose()
    expected = httpx.URL(url).raw_path  # b"/api/%D1%84n%20x%41?q=%C3%A9&r=a%20b/c?d%zz"
    assert server.requests[0].startswith(b"POST " + expected + b" HTTP/1.1\r\n")


@pytest.mark.parametrize("value", ["\u0444", "\u00e9", "a\r\nX-Injected: 1"])
async def test_a_bad_header_value_is_a_request_error(value: str) -> None:
    """A header value outside ASCII (httpx refuses them too) or with a line break."""
    async with serving(lambda n, r: reply()) as server:
        driver = InngestDriver(timeout=5)
        for url in (f"http://127.0.0.1:{server.port}/", "https://127.0.0.1:1/"):
            with pytest.raises(SdkRequestError):
                await driver.post(url, b"{}", {"X-Run-ID": value})
        await driver.aclose()
    assert server.requests == []


async def test_a_connection_returned_after_close_is_closed() -> None:
    """``close()`` while a request is in flight: its connection, done after, is not kept."""
    async with serving(lambda n, r: reply()) as server:
        server.hold = asyncio.Event()
        client = LeanClient(timeout=5)
        request = asyncio.create_task(client.post(f"http://127.0.0.1:{server.port}/", b"", {}))
        await until(lambda: len(server.requests) == 1, "the request arrives")
        client.close()
        server.hold.set()
        assert (await request).status == 200
        await until(lambda: server.ended == 1, "the connection is closed")


def test_pools_of_loops_in_other_threads_are_closed_in_their_threads() -> None:
    """Each thread's event loop has its own pool; ``close()`` from another thread closes
    their idle connections in their loops' threads."""
    import threading

    client = LeanClient(timeout=5)
    ready, stop = threading.Barrier(3), threading.Event()
    ended: list[int] = []

    def serve_and_wait() -> None:
        async def main() -> None:
            async with serving(lambda n, r: reply()) as server:
                await client.post(f"http://127.0.0.1:{server.port}/", b"", {})
                ready.wait()
                await until(stop.is_set, "close() called")
                await until(lambda: server.ended == 1, "the idle connection closed")
                ended.append(server.ended)

        asyncio.run(main())

    threads = [threading.Thread(target=serve_and_wait) for _ in range(2)]
    for thread in threads:
        thread.start()
    ready.wait()
    client.close()
    stop.set()
    for thread in threads:
        thread.join()
    assert ended == [1, 1]


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
    assert not client.handles("http://b\u00fccher.example/api/inngest")  # IDNA: httpx's
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    proxied = LeanClient(timeout=5)
    assert not proxied.handles("http://app.example/api/inngest")
    assert proxied.handles("http://localhost:3000/api/inngest")
