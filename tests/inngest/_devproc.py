"""Real processes for the tests of ``stepline dev`` as Inngest's dev server: ``stepline dev`` itself
(``dev_process``) and SDK apps configured only by ``INNGEST_DEV=1`` / ``INNGEST_BASE_URL``
(``sdk_process``), each on a port chosen beforehand, so the apps can be told the server's URL and
the server the apps' URLs before either is up. Shared by tests/inngest/ and the mixed-app browser
test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import forkserver
from ports import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
JS_DIR = HERE / "js"
DEADLINE = 60.0  # a bound on each wait for a process or a run (never a sleep)


def wait_for(check: Callable[[], Any], what: str, *, timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy (its value) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # real time: the poll interval; the deadline bounds the wait


def _stop(process: forkserver.Process, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def dev_process(
    directory: Path,
    port: int,
    *args: str,
    app: str | None = None,
    cwd: Path = HERE,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, Path]]:
    """``stepline dev [app] --port PORT --db directory/stepline.db *args``; yields its URL and
    output file once it serves; stops it with SIGINT (its exit code must be 0)."""
    out = directory / f"stepline-dev-{port}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "STEPLINE_"))}
    env.pop("PORT", None)
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "stepline.cli", "dev", *([app] if app else [])]
    argv += ["--port", str(port), "--db", str(directory / "stepline.db"), *args]
    url = f"http://127.0.0.1:{port}"
    # forked from a warm interpreter (tests/forkserver.py)
    process = forkserver.popen_logged(argv, cwd=cwd, env=env, preload=forkserver.CLI, log=out)
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"stepline dev exited:\n{out.read_text()}")
            return url in out.read_text(errors="replace")

        wait_for(up, "stepline dev to serve")
        yield url, out
    finally:
        _stop(process, signal.SIGINT)
    assert process.returncode == 0, out.read_text()


@contextmanager
def sdk_process(kind: str, port: int, dev_url: str, directory: Path, **env: str) -> Iterator[str]:
    """The mixed SDK app of ``kind`` (``"py"`` or ``"js"``) on ``port``, set up for Inngest's dev
    server at ``dev_url`` by the environment alone; yields its serve URL."""
    if kind == "js":
        command, cwd = ["node", "mixed_app.js"], JS_DIR
    else:
        command, cwd = [sys.executable, "mixed_py_app.py"], HERE
    base = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    base.update(PORT=str(port), INNGEST_DEV="1", INNGEST_BASE_URL=dev_url, **env)
    out = directory / f"sdk-{kind}-{port}.out"
    # a Python app forked from a warm interpreter (forkserver)
    process = forkserver.popen_logged(
        command, cwd=cwd, env=base, preload=forkserver.SDK_APPS, log=out
    )
    try:
        yield f"http://127.0.0.1:{port}/api/inngest"
    finally:
        _stop(process)


@dataclass(frozen=True)
class MixedApps:
    """``stepline dev`` at ``url`` (its output in ``out``) with the Python and JS mixed SDK apps
    at ``py_url`` and ``js_url``."""

    url: str
    py_url: str
    js_url: str
    out: Path


@contextmanager
def mixed_apps(
    directory: Path, *args: str, app: str | None = None, dev_first: bool = False
) -> Iterator[MixedApps]:
    """The Python and JS mixed SDK apps and ``stepline dev [app] -u <py> -u <js>
    --poll-interval 0.2 *args``, each told the others' URLs; the apps start first, or the
    server when ``dev_first`` (it asks them to sync until they are up)."""
    dev_port, py_port, js_port = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{dev_port}"
    py_url = f"http://127.0.0.1:{py_port}/api/inngest"
    js_url = f"http://127.0.0.1:{js_port}/api/inngest"
    sync = ("-u", py_url, "-u", js_url, "--poll-interval", "0.2", *args)
    with ExitStack() as stack:

        def server() -> Path:
            return stack.enter_context(dev_process(directory, dev_port, *sync, app=app))[1]

        def sdks() -> None:
            stack.enter_context(sdk_process("py", py_port, url, directory))
            stack.enter_context(sdk_process("js", js_port, url, directory))

        if dev_first:
            out = server()
            sdks()
        else:
            sdks()
            out = server()
        yield MixedApps(url, py_url, js_url, out)


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One JSON request: status and decoded body (an error status is returned, not raised)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def gql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """``POST /v0/gql`` as Inngest's SDK test helpers send it; the ``data`` of a reply without
    errors."""
    status, reply = http_json(
        "POST", f"{url}/v0/gql", {"query": query, "variables": variables or {}}
    )
    assert status == 200, reply
    assert not reply.get("errors"), reply
    data: dict[str, Any] = reply["data"]
    return data


def runs_of(url: str, function_id: str) -> list[dict[str, Any]]:
    status, reply = http_json("GET", f"{url}/api/v1/runs?function={function_id}&steps=false")
    assert status == 200, reply
    runs: list[dict[str, Any]] = reply["data"]
    return runs


def ended(url: str, function_id: str) -> dict[str, Any] | None:
    """The run of ``function_id`` once it ended (the only one), else None."""
    runs = runs_of(url, function_id)
    return runs[0] if runs and runs[0]["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None
