"""``python -m stepline.cli ARGS`` to its end, as a process forked from a warm one.

Each command the CLI tests run to its end is a process of its own: its own argv, environment,
working directory, stdin, stdout and stderr, exit code, interpreter shutdown, and traceback on an
uncaught error, as ``subprocess.run([sys.executable, "-m", "stepline.cli", ...])``. What differs is
where it starts: a fresh interpreter spent ~0.17 s of CPU importing Python's and Stepline's
modules (a few hundred commands a test run); this one is forked from a server process (one per
test process, started on first use) that imported them once, then runs ``stepline.cli`` as
``__main__`` as ``python -m`` does (``runpy``, the working directory first on ``sys.path``).

Only what the interpreter reads at its start differs from a fresh process: the ``PYTHON*``
environment variables (a command run with other values than the server's runs in a fresh
interpreter instead) and the hash seed (shared by the forked processes). The commands that start a
long-running process (``Cli.start``: signals, live logs) and the start-up tests
(test_cli_startup.py) start real interpreters. ``STEPLINE_TEST_FRESH_CLI=1`` runs every command in
a fresh interpreter.

Run as a script, this file is the server: it listens on the Unix socket named by its argument;
each request (a JSON object: argv, env, cwd; stdin, stdout and stderr passed as file descriptors)
is forked, and the server answers the child's pid, then its exit code (``-N``: killed by signal N,
as ``subprocess`` reports it).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

_MAX_REQUEST = 1 << 20
# what the commands the tests run to their end import: loaded once, in the server
_PRELOAD = (
    "stepline.cli",
    "stepline.cli._common",
    "stepline.cli._render",
    "stepline.cli._commands.apps",
    "stepline.cli._commands.control",
    "stepline.cli._commands.db",
    "stepline.cli._commands.events",
    "stepline.cli._commands.functions",
    "stepline.cli._commands.runs",
    "stepline.cli._commands.send",
    "stepline.store.sqlite",
    "rich.console",
    "rich.table",
    "rich.text",
)


def _startup_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables the interpreter reads when it starts (sys.path, buffering, warnings...)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


# -- the server (this file run as a script) ----------------------------------------------------
def _serve(path: str) -> None:
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(1)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    conn, _ = listener.accept()  # its one client; it ends when the client's connection does
    listener.close()
    while True:
        message, fds, _flags, _addr = socket.recv_fds(conn, _MAX_REQUEST, 3)
        if not message:
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:  # the command's process: never returns to this loop
            conn.close()
            _run_command(request, fds)
        for fd in fds:
            os.close(fd)
        conn.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        conn.send(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode())


def _run_command(request: dict[str, object], fds: list[int]) -> None:
    """In the forked child: become ``python -m stepline.cli ARGV`` (SystemExit, or an uncaught
    error printed with its traceback by the interpreter, ends the process as it would)."""
    import runpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    cwd = str(request["cwd"])
    os.chdir(cwd)
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = ["-m", *argv]  # runpy puts the module's path first, as python -m does
    sys.path[0] = cwd  # python -m: the working directory comes first
    runpy.run_module("stepline.cli", run_name="__main__", alter_sys=True)
    sys.exit(0)


# -- the client ---------------------------------------------------------------------------------
class _Server:
    """This test process's fork server, for commands whose start-up environment is ``env``'s."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.startup = _startup_env(env)
        self.folder = tempfile.mkdtemp(prefix="stepline-cli-fork-")
        path = os.path.join(self.folder, "socket")
        self.process = subprocess.Popen(
            [sys.executable, __file__, path],
            env=dict(env),
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()
        if ready != b"ready\n":
            raise RuntimeError(f"the CLI fork server did not start ({self.process.wait()})")
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.conn.connect(path)

    def run(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float
    ) -> tuple[int, str, str]:
        with (
            open(os.devnull, "rb") as stdin,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):
            request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": str(cwd)})
            fds = [stdin.fileno(), out.fileno(), err.fileno()]
            socket.send_fds(self.conn, [request.encode()], fds)
            self.conn.settimeout(10)
            pid = json.loads(self.conn.recv(_MAX_REQUEST))["pid"]
            self.conn.settimeout(timeout)
            try:
                code = json.loads(self.conn.recv(_MAX_REQUEST))["code"]
            except TimeoutError:
                os.kill(pid, 9)  # as subprocess.run does on its timeout
                self.conn.settimeout(10)
                self.conn.recv(_MAX_REQUEST)
                raise subprocess.TimeoutExpired(argv, timeout) from None
            out.seek(0)
            err.seek(0)
            return code, _text(out.read()), _text(err.read())

    def close(self) -> None:
        self.conn.close()
        self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()
        for name in os.listdir(self.folder):
            os.unlink(os.path.join(self.folder, name))
        os.rmdir(self.folder)


def _text(data: bytes) -> str:
    """What ``subprocess.run(text=True)`` makes of the bytes (universal newlines)."""
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


_servers: list[_Server] = []
_lock = threading.Lock()


def run_cli(
    args: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float, fresh: bool = False
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([sys.executable, "-m", "stepline.cli", *args], env=env, cwd=cwd,
    stdin=DEVNULL, capture_output=True, text=True, timeout=timeout)``, forked from the warm
    server (see the module's docstring), or with ``fresh`` in a new interpreter."""
    argv = [sys.executable, "-m", "stepline.cli", *args]
    fresh = fresh or os.environ.get("STEPLINE_TEST_FRESH_CLI", "") not in ("", "0")
    with _lock:
        server = _servers[0] if _servers else None
        if not fresh and server is None:
            server = _Server(env)
            _servers.append(server)
        if fresh or server is None or server.startup != _startup_env(env):
            return subprocess.run(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        code, out, err = server.run(args, env, cwd, timeout)
    return subprocess.CompletedProcess(argv, code, out, err)


def close() -> None:
    """Stop this process's server (at the end of the test session)."""
    with _lock:
        while _servers:
            _servers.pop().close()


if __name__ == "__main__":
    _serve(sys.argv[1])
else:
    atexit.register(close)
