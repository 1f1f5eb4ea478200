"""``step.ai.infer`` of real SDK apps (JS 4.x, JS 3.x, Python): Stepline makes the model call
the SDK describes (``AIGateway``) against a local mock model, authenticated by format (OpenAI:
``Authorization: Bearer``, Anthropic: ``x-api-key``), and memoizes the JSON reply: the model is
called once however many requests follow. A failing model is retried as a step, then the SDK
raises the step error in user code."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _stepline_dev import stepline_dev

from conftest import SdkApp
from stepline import App, Event

pytestmark = pytest.mark.timeout(600)

KINDS = ["js", "js3", "py"]
OPENAI_REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the mock"}}],
}
ANTHROPIC_REPLY = {"id": "msg_1", "type": "message", "content": [{"type": "text", "text": "hi"}]}


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: Any


class MockModel:
    """A model API on 127.0.0.1: ``/ok/...`` answers like OpenAI or Anthropic, ``/down/...``
    answers 500; ``calls`` lists what it was asked."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                model.calls.append(
                    Call(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        json.loads(body),
                    )
                )
                if self.path.startswith("/down/"):
                    status, reply = 500, {"error": {"message": "the model is overloaded"}}
                elif self.path.endswith("/messages"):
                    status, reply = 200, ANTHROPIC_REPLY
                else:
                    status, reply = 200, OPENAI_REPLY
                data = json.dumps(reply).encode()
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

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def model() -> Iterator[MockModel]:
    mock = MockModel()
    yield mock
    mock.close()


def _script(kind: str) -> str:
    return "py_parallel_app.py" if kind == "py" else "parallel_app.js"


@pytest.mark.parametrize("kind", KINDS)
async def test_the_server_calls_the_model_once_and_memoizes_its_reply(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], model: MockModel
) -> None:
    app = App("stepline-dev")
    async with stepline_dev(
        tmp_path, start_app, kind, app, script=_script(kind), same_sdk_app=True
    ) as d:
        event = Event("ai/ask", {"url": f"{model.url}/ok/v1", "format": "openai"})
        run_id = await d.run_of("ai-ask", event)
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", {"answer": OPENAI_REPLY})
        [call] = model.calls  # once: the later requests read the memo
        assert call.path == "/ok/v1/chat/completions"
        assert call.headers["authorization"] == "Bearer sk-test"
        assert call.headers["content-type"] == "application/json"
        assert call.body["model"] == "gpt-test"
        assert call.body["messages"] == [{"role": "user", "content": "hi"}]
        [ask] = [s for s in run.steps if s.id == "ask"]
        assert (ask.status, ask.output) == ("COMPLETED", OPENAI_REPLY)
        assert (await d.app_state(run_id))["ran"] == ["after"]


@pytest.mark.parametrize("kind", ["js", "py"])
async def test_an_anthropic_model_gets_its_key_in_x_api_key(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], model: MockModel
) -> None:
    app = App("stepline-dev")
    async with stepline_dev(
        tmp_path, start_app, kind, app, script=_script(kind), same_sdk_app=True
    ) as d:
        event = Event("ai/ask", {"url": f"{model.url}/ok/v1", "format": "anthropic"})
        run_id = await d.run_of("ai-ask", event)
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert (run.status, run.output) == ("COMPLETED", {"answer": ANTHROPIC_REPLY})
        [call] = model.calls
        assert call.path == "/ok/v1/messages"
        assert call.headers["x-api-key"] == "sk-ant-test"
        assert call.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in call.headers
        assert call.body["model"] == "claude-test"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_model_is_retried_then_raised_in_user_code(
    kind: str, tmp_path: Path, start_app: Callable[..., SdkApp], model: MockModel
) -> None:
    app = App("stepline-dev")
    async with stepline_dev(
        tmp_path, start_app, kind, app, script=_script(kind), same_sdk_app=True
    ) as d:
        event = Event("ai/ask", {"url": f"{model.url}/down/v1", "format": "openai"})
        run_id = await d.run_of("ai-ask", event)
        await d.until_status(run_id, "RETRYING")
        assert len(model.calls) == 1
        d.clock.advance(3600)  # past the backoff: the one retry (retries: 1)
        run = await d.until_status(run_id, "COMPLETED", "FAILED")
        assert run.status == "COMPLETED", run.error
        assert len(model.calls) == 2
        assert isinstance(run.output, dict)
        assert "unsuccessful status code: 500" in run.output["message"]
        assert "the model is overloaded" in run.output["message"]
        [ask] = [s for s in run.steps if s.id == "ask"]
        assert ask.status == "FAILED"
        assert ask.error is not None and ask.error["name"] == "AIGatewayError"
