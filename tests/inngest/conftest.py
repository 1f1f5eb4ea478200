"""Real Inngest SDK apps for the protocol tests: the JS app (``js/app.js``, npm ``inngest`` 4.x
and 3.x (alias ``inngest3``) pinned by ``js/package-lock.json``, installed with ``npm ci`` on
first use) and the Python app
(``py_app.py``, PyPI ``inngest``), each started on a free local port, plus a capture server
standing in for the parts of an Inngest server the SDK calls by itself.

Without Node the JS tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import js_install
import pytest
from _capture import CaptureServer

import forkserver
import pgtest
from ports import free_port as _free_port
from stepline.store import Store

HERE = Path(__file__).parent
JS_DIR = js_install.JS_DIR
KEY = "signkey-test-8f3c2a6b0d9e4f17a5b3c8d2e1f0a9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1"
FALLBACK_KEY = "signkey-test-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
OTHER_KEY = "signkey-prod-fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is required for the Inngest SDK tests")
    pytest.skip(f"{what} is not installed")


def _npm_ci() -> None:
    """``npm ci`` once per lockfile (``js_install``: several pytest workers wait on one lock
    file; ``scripts/test`` has usually done it before the run)."""
    if js_install.node_missing():
        _missing("Node.js (node + npm)")
    js_install.install()


@dataclass
class SdkApp:
    """A running SDK app: ``serve_url`` is its Inngest endpoint, ``slug(fn)`` a function's id."""

    kind: str
    serve_url: str
    capture: CaptureServer
    process: forkserver.Process

    @property
    def app_id(self) -> str:
        return f"{self.kind}-app"

    def slug(self, fn: str) -> str:
        return f"{self.app_id}-{fn}"

    def function_url(self, fn: str) -> str:
        return f"{self.serve_url}?fnId={self.slug(fn)}&stepId=step"


def _wait_ready(app: SdkApp, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if app.process.poll() is not None:
            raise AssertionError(f"the {app.kind} SDK app exited with {app.process.returncode}")
        try:
            with urllib.request.urlopen(app.serve_url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the {app.kind} SDK app did not start in {timeout} s")
        time.sleep(0.05)  # real time: the poll interval; the deadline bounds the wait


@pytest.fixture(scope="module")
def start_app() -> Iterator[Callable[..., SdkApp]]:
    """``start_app(kind, mode="cloud" | "dev")``: the SDK app of that kind (``"js"``: JS 4.x,
    ``"js3"``: JS 3.x, ``"py"``: Python, async functions served by FastAPI, ``"pyflask"``:
    Python, sync functions served by Flask) and mode, started once per test module; signing key
    ``KEY``, fallback key ``FALLBACK_KEY``; ``base_url``: where it registers and sends events
    (by default a capture server's); ``script``: another app file than ``app.js`` /
    ``py_app.py`` (in ``js/`` for the JS kinds)."""
    started: dict[tuple[str, str, str | None, str | None], SdkApp] = {}

    def start(
        kind: str, mode: str = "cloud", base_url: str | None = None, script: str | None = None
    ) -> SdkApp:
        if (kind, mode, base_url, script) in started:
            return started[kind, mode, base_url, script]
        if kind in ("js", "js3"):
            _npm_ci()
            command, cwd = ["node", script or "app.js"], JS_DIR
        else:
            default = "py_flask_app.py" if kind == "pyflask" else "py_app.py"
            command, cwd = [sys.executable, script or default], HERE
        capture = CaptureServer()
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
        env.update(
            PORT=str(port),
            APP_ID=f"{kind}-app",
            INNGEST_MAJOR="3" if kind == "js3" else "4",
            INNGEST_MODE=mode,
            SIGNING_KEY=KEY,
            SIGNING_KEY_FALLBACK=FALLBACK_KEY,
            INNGEST_SIGNING_KEY=KEY,  # the JS SDK 3.x reads its keys from the environment only
            INNGEST_SIGNING_KEY_FALLBACK=FALLBACK_KEY,
            BASE_URL=base_url or capture.url,
        )
        # a Python app is forked from a warm interpreter (tests/forkserver.py), node executed
        # afresh by its forked process (both die with this test process)
        process = forkserver.popen(
            command, cwd=cwd, env=env, preload=forkserver.SDK_APPS, stdout=subprocess.DEVNULL
        )
        app = SdkApp(kind, f"http://127.0.0.1:{port}/api/inngest", capture, process)
        started[kind, mode, base_url, script] = app
        _wait_ready(app)
        return app

    yield start
    # throwaway servers: killed, not stopped gracefully (uvicorn's and Node's graceful stops
    # took 2-4 s a module, waiting for the SDKs' idle connections)
    for app in started.values():
        app.process.kill()
    for app in started.values():
        app.process.wait()
        app.capture.close()


# the second app of each language keeps its runs on PostgreSQL: the SDKs' protocol end to end on
# both stores, at no extra test
POSTGRES_KINDS = frozenset({"js3", "pyflask"})


@pytest.fixture
def sdk_store(kind: str, request: pytest.FixtureRequest) -> str | Store:
    """Where ``stepline_dev`` keeps a test's runs: PostgreSQL for ``POSTGRES_KINDS``, else
    SQLite."""
    if kind in POSTGRES_KINDS:
        return pgtest.engine_store(request.getfixturevalue("pg_url"))
    return "sqlite"
