"""A tiny stand-in for the parts of an Inngest server an SDK calls by itself: it records every
request (``POST /fn/register``, ``POST /e/{key}``, ``GET /v0/runs/{id}/batch|actions``) and
answers as Inngest's dev server does (the run data it serves is set in ``runs``)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class CaptureServer:
    """Serves on 127.0.0.1 (a free port) in a thread; ``requests`` lists what arrived."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self.runs: dict[str, dict[str, bytes]] = {}  # run id -> {"batch": ..., "actions": ...}
        self._lock = threading.Lock()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with capture._lock:
                    capture.requests.append(
                        Captured(
                            "GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b""
                        )
                    )
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["v0", "runs"]:
                    body = capture.runs.get(parts[2], {}).get(parts[3])
                    if body is not None:
                        self._raw(200, body)
                        return
                    self._reply(410, {"error": "run state not found"})
                    return
                self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with capture._lock:
                    capture.requests.append(
                        Captured(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                if self.path.startswith("/fn/register"):
                    self._reply(200, {"ok": True, "modified": True})
                elif self.path.startswith("/e/"):
                    events = json.loads(body or b"[]")
                    count = len(events) if isinstance(events, list) else 1
                    ids = [f"event-{len(capture.requests)}-{i}" for i in range(count)]
                    self._reply(200, {"ids": ids, "status": 200})
                else:
                    self._reply(404, {"error": "not found"})

            def _reply(self, status: int, payload: object) -> None:
                self._raw(status, json.dumps(payload).encode())

            def _raw(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def find(self, path_prefix: str) -> list[Captured]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
