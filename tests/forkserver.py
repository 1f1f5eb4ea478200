"""Python processes for the tests, forked from a warm interpreter instead of started afresh.

The suite starts a few hundred Python processes (CLI commands, ``stepline dev``/``server``/
``worker``, the multi-process and crash tests' workers): a new interpreter spent 0.15-0.25 s of
CPU importing Python's and Stepline's modules before doing anything. ``popen`` and ``run`` start
``python -m MODULE ARGS`` or ``python SCRIPT ARGS`` as a process forked from a server process (one
per test process and kind of command, started on first use) that imported those modules once; the
forked process then runs the module or script as ``__main__`` as ``python`` does (``runpy``; the
working directory, or the script's folder, first on ``sys.path``).

Each is a process of its own, as with ``subprocess``: its own pid, argv, environment, working
directory, stdin/stdout/stderr, signals (SIGKILL, SIGTERM and SIGINT act as on any process), exit
code, interpreter shutdown, and traceback on an uncaught error. What differs: what the interpreter
reads when it starts (the ``PYTHON*``, ``LANG`` and ``LC_*`` variables: a command with other
values than a server's gets a server of its own), the hash seed (shared by the forked processes),
the preloaded modules' objects (frozen: never collected, ``gc.freeze``), and its parent process
(the server, which reports its exit code). Any other command line (another program, ``node``;
``python`` with interpreter options, ``python -X dev``) is started afresh by ``popen`` as well,
through the server: its forked process executes it (``execvpe``, as ``subprocess`` does: the
file found on the environment's ``PATH``, ``SIGPIPE`` and ``SIGXFSZ`` back to their default,
no descriptor above 2 left open), so it too dies with the test process (below). Every command
line is started as a plain subprocess with ``STEPLINE_TEST_FRESH_PROCESSES=1``.

The test processes of one run share their servers (``SHARED_VARIABLE``: a folder the run's
controlling process names, ``share_in``): each kind is started once, by the first test process
that needs it, not once in each (~0.6-0.9 s of CPU and 2-3 s of waiting at load each), and lives
until the controlling process ends (``WATCH_VARIABLE``). Without that folder, a test process has
servers of its own, which end with it.

Run as a script, this file is the server: ``forkserver.py SOCKET MODULE...`` imports the modules,
then forks a process for each request (a JSON object: how to run, argv, env, cwd; stdin, stdout
and stderr passed as file descriptors) and answers its pid, then, on the same connection, its exit
code (``-N``: killed by signal N, as ``subprocess`` reports it).

A forked process dies with the test process that asked for it (the server watches that process
through a pidfd and SIGKILLs what it forked for it), and with its server (``PR_SET_PDEATHSIG``):
a test process killed mid-run (a gate stopped, a worker crashed) leaves none of its ``stepline
dev`` or worker processes running for good. The processes a test process starts itself with
``subprocess`` (``run`` of a fresh interpreter or another program among them) are handed to a
server too once started (``guard``, tests/forkguard.py), which kills each when its test process
ends.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import hashlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import forkchild
import forkguard

_MAX_MESSAGE = 1 << 20
# the folder where the run's shared servers listen, and the process whose end ends them
SHARED_VARIABLE = "STEPLINE_TEST_FORKSERVERS"
WATCH_VARIABLE = "STEPLINE_TEST_FORKSERVERS_WATCH"
_DETACH = "--detach"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

# what each kind of process the tests start imports, loaded once in its fork server:
# ``python -m stepline.cli ...`` (each command's module)
CLI = (
    "stepline.cli",
    "stepline.cli._common",
    "stepline.cli._render",
    *(
        f"stepline.cli._commands.{name}"
        for name in ("apps", "control", "db", "dev", "events", "functions", "runs", "send")
    ),
    *("stepline.cli._commands.server", "stepline.cli._commands.worker"),
    "stepline.store.sqlite",
    "rich.console",
    "rich.table",
    "rich.text",
)
# the multi-process and crash tests' worker scripts (an App, its worker, both stores)
WORKER = (
    "stepline",
    "stepline.sdk.app",
    "stepline.engine.worker",
    "stepline.store.sqlite",
    "stepline.store.postgres",
)
# the Python Inngest SDK apps (tests/inngest: FastAPI or Flask apps served by uvicorn / Flask)
SDK_APPS = ("inngest", "inngest.fast_api", "inngest.flask", "fastapi", "flask", "uvicorn")


def _startup_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The variables the interpreter reads when it starts (sys.path, buffering, warnings,
    encodings...)."""
    read = ("PYTHON", "LANG", "LC_")
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(read)))


def _how(argv: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """``("module", name, args)`` or ``("script", path, args)`` for ``python -m ...`` and
    ``python SCRIPT ...``; None for anything else (another program, interpreter options: a
    fresh program, ``_executed``)."""
    if len(argv) < 2 or argv[0] != sys.executable:
        return None
    if argv[1] == "-m" and len(argv) >= 3:
        return "module", argv[2], list(argv[3:])
    if argv[1].startswith("-"):
        return None
    return "script", argv[1], list(argv[2:])


# -- the server (this file run as a script) ----------------------------------------------------
def _serve(path: str, preload: Sequence[str], watch: int | None = None) -> None:
    """Serve on ``path`` until the test process that started it ends, or with ``watch`` (a
    server shared by the run's test processes) until process ``watch`` ends."""
    import gc
    import importlib

    for name in preload:
        importlib.import_module(name)
    # the preloaded objects out of the collector's reach (Python's advice for a fork without
    # exec): a forked process's collections (at the latest its exit's) otherwise visited every
    # one of them, and each visit wrote its header, which copied the page it is on: a forked
    # `stepline runs list` spent ~150 ms of CPU, ~50 ms with them frozen
    gc.collect()
    gc.freeze()
    parent = os.getppid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    if watch is not None:  # shared: its starter goes on without it (and need not reap it)
        server = os.fork()
        if server:
            sys.stdout.write(f"ready {server}\n")
            sys.stdout.flush()
            os._exit(0)
        os.setsid()  # no signal to its starter's process group reaches it
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)

    def serving() -> bool:
        if watch is None:
            return os.getppid() == parent  # the test process ended: so does the server
        try:
            os.kill(watch, 0)
        except ProcessLookupError:
            return False
        return True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    running: dict[int, socket.socket] = {}  # pid -> the connection its exit code goes to
    owners: dict[int, int] = {}  # pid -> a pidfd of the test process it was forked for
    guards = forkguard.Guards(selector)  # processes the test processes started themselves
    if watch is None:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
    while serving():
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ)
            elif key.fileobj == wake_r:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
            elif key.data is guards:  # a guarded process or its test process ended
                assert isinstance(key.fileobj, int)
                guards.ended(key.fileobj)
            elif key.data is not None:  # the test process a running one was forked for ended
                _kill(key.data)
                _forget(selector, owners, key.data)
            else:
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                selector.unregister(conn)  # one request a connection; then only its answers
                try:
                    message, fds, _flags, _addr = socket.recv_fds(conn, _MAX_MESSAGE, 3)
                except OSError:
                    message, fds = b"", []
                if not message:
                    conn.close()
                    continue
                request = json.loads(message)
                if "guard" in request:  # a process of the test process's own (forkguard)
                    guards.add(request["guard"], request["owner"])
                    conn.send(b"{}")
                    conn.close()
                    continue
                server_pid = os.getpid()
                pid = os.fork()
                if pid == 0:  # the requested process: never returns to this loop
                    # killed when the server ends, however it ends (a gate killed mid-run);
                    # and at once if it already did, between the fork and this call
                    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                    if os.getppid() != server_pid:
                        os._exit(1)
                    open_files = [listener, *running.values()]
                    open_files += [k.fileobj for k in selector.get_map().values()]
                    open_files.remove(wake_r)  # closed by become
                    selector.close()
                    for file in open_files:
                        if isinstance(file, socket.socket):
                            file.close()
                        elif isinstance(file, int):
                            os.close(file)  # an owner's pidfd
                    forkchild.become(request, fds, conn, (wake_r, wake_w))
                for fd in fds:
                    os.close(fd)
                running[pid] = conn
                _watch(selector, owners, pid, request.get("owner"))
                conn.send(json.dumps({"pid": pid}).encode())
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = running.pop(pid)
            _forget(selector, owners, pid)
            try:
                conn.send(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode())
            except OSError:
                pass  # its client is gone
            conn.close()
    guards.kill_all()


def _watch(
    selector: selectors.BaseSelector, owners: dict[int, int], pid: int, owner: int | None
) -> None:
    """Kill ``pid`` when the test process ``owner`` ends (its pidfd becomes readable then)."""
    if owner is None:
        return
    try:
        owners[pid] = os.pidfd_open(owner)
    except ProcessLookupError:  # already gone
        _kill(pid)
        return
    selector.register(owners[pid], selectors.EVENT_READ, pid)


def _forget(selector: selectors.BaseSelector, owners: dict[int, int], pid: int) -> None:
    """Stop watching ``pid``'s test process (``pid`` ended, or was killed)."""
    fd = owners.pop(pid, None)
    if fd is not None:
        selector.unregister(fd)
        os.close(fd)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # ended already (reaped by the loop below)


# -- the client ---------------------------------------------------------------------------------
class _Server:
    """A fork server with the modules ``preload`` imported, started with ``env``'s start-up
    variables: this test process's own (``own``), or the run's (``shared``)."""

    def __init__(self, path: str, pid: int, process: subprocess.Popen[bytes] | None) -> None:
        self.path = path
        self.pid = pid  # the server's: the processes it forks are its children
        self.process = process  # None: shared, not this process's to stop

    @classmethod
    def own(cls, env: Mapping[str, str], preload: Sequence[str]) -> _Server:
        """A server of this test process's, which ends with it."""
        path = os.path.join(tempfile.mkdtemp(prefix="stepline-forkserver-"), "socket")
        process, _ = _start(path, env, preload)
        return cls(path, process.pid, process)

    @classmethod
    def shared(
        cls, folder: str, watch: str, env: Mapping[str, str], preload: Sequence[str]
    ) -> _Server:
        """The run's server of this kind in ``folder``, started (under a lock: the test
        processes start one between them) by the first that needs it, ending with ``watch``."""
        kind = json.dumps([_startup_env(env), list(preload)]).encode()
        path = os.path.join(folder, hashlib.sha256(kind).hexdigest()[:16])
        with open(f"{path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(f"{path}.pid"):
                starter, pid = _start(path, env, preload, watch)
                starter.wait()  # the server went on detached
                with open(f"{path}.pid", "w") as written:
                    written.write(str(pid))
            with open(f"{path}.pid") as found:
                return cls(path, int(found.read()), None)

    def spawn(
        self,
        args: Sequence[str],
        how: tuple[str, str, list[str]],
        env: Mapping[str, str],
        cwd: Path | str,
        fds: Sequence[int],
    ) -> Forked:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(self.path)
        request = {"how": how, "env": dict(env), "cwd": str(cwd), "owner": os.getpid()}
        socket.send_fds(conn, [json.dumps(request).encode()], list(fds))
        conn.settimeout(30)
        return Forked(list(args), conn, json.loads(conn.recv(_MAX_MESSAGE))["pid"])

    def close(self) -> None:
        """Stop this test process's own server (a shared one ends with its watched process)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        folder = os.path.dirname(self.path)
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


def _start(
    path: str, env: Mapping[str, str], preload: Sequence[str], watch: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A server listening on ``path`` once this returns, and its pid (``watch``: shared, the
    process started is gone once the server, forked from it, is ready)."""
    detach = [_DETACH, watch] if watch is not None else []
    with forkguard.unguarded():  # it ends by itself, with its test process or its run
        process = subprocess.Popen(
            [sys.executable, __file__, *detach, path, *preload],
            env=dict(env),
            cwd=os.path.dirname(path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
    assert process.stdout is not None
    with process.stdout:
        ready = process.stdout.readline().split()
    if not ready or ready[0] != b"ready":
        raise RuntimeError(f"the fork server did not start ({process.wait()})")
    return process, int(ready[1]) if len(ready) > 1 else process.pid


def share_in(folder: str) -> None:
    """Make this process and those it starts (the run's test processes) share their servers
    in ``folder``, until this process ends (called by the run's controlling process)."""
    os.environ[SHARED_VARIABLE] = folder
    os.environ[WATCH_VARIABLE] = str(os.getpid())


class Forked:
    """A forked process, as ``subprocess.Popen`` shows one: ``pid``, ``poll()``, ``wait()``,
    ``send_signal()``, ``terminate()``, ``kill()``, ``returncode``."""

    def __init__(self, args: list[str], conn: socket.socket, pid: int) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._conn = conn

    def _ended(self, message: bytes) -> int:
        self._conn.close()
        if not message:
            raise RuntimeError(f"the fork server of process {self.pid} ended before it")
        code: int = json.loads(message)["code"]
        self.returncode = code
        return code

    def poll(self) -> int | None:
        if self.returncode is None:
            self._conn.setblocking(False)
            try:
                message = self._conn.recv(_MAX_MESSAGE)
            except BlockingIOError:
                return None
            return self._ended(message)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._conn.settimeout(timeout)
            try:
                message = self._conn.recv(_MAX_MESSAGE)
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            return self._ended(message)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # as Popen: an ended process is not signalled
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait()


Process = Forked | subprocess.Popen[bytes]  # what popen returns

_servers: dict[tuple[Any, ...], _Server] = {}
_lock = threading.Lock()


def _fresh() -> bool:
    return os.environ.get("STEPLINE_TEST_FRESH_PROCESSES", "") not in ("", "0")


def popen(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str,
    preload: Sequence[str],
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> Process:
    """``subprocess.Popen(argv, env=env, cwd=cwd, stdin=..., stdout=..., stderr=...)`` for
    ``python -m MODULE ...`` / ``python SCRIPT ...``, forked from the server that imported
    ``preload`` (see the module's docstring). ``stdin``/``stdout``/``stderr``: file
    descriptors, ``subprocess.DEVNULL``, ``subprocess.STDOUT`` (stderr), or None (this
    process's own)."""
    how = _how(argv)
    if _fresh():
        return subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr
        )
    if how is None:
        how = _executed(argv, env, cwd)
    server = _server(env, preload)
    with open(os.devnull, "r+b") as null:
        fds = [_fd(stdin, 0, null), _fd(stdout, 1, null)]
        fds.append(fds[1] if stderr == subprocess.STDOUT else _fd(stderr, 2, null))
        return server.spawn(argv, how, env, cwd, fds)


def _server(env: Mapping[str, str], preload: Sequence[str]) -> _Server:
    """The server of this kind: the run's shared one, or this process's own."""
    key = (_startup_env(env), tuple(preload))
    with _lock:
        if key not in _servers:
            shared, watch = os.environ.get(SHARED_VARIABLE), os.environ.get(WATCH_VARIABLE)
            if shared and watch:
                _servers[key] = _Server.shared(shared, watch, env, preload)
            else:
                _servers[key] = _Server.own(env, preload)
        return _servers[key]


def guard(pid: int) -> None:
    """Have process ``pid`` (started by this process with ``subprocess``) killed when this
    process ends, however it ends, or when the server does (``forkguard``): a server that
    imported nothing does it, the run's shared one or this process's own."""
    server = _server(os.environ, ())
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.connect(server.path)
        conn.send(json.dumps({"guard": pid, "owner": os.getpid()}).encode())
        conn.settimeout(30)
        if not conn.recv(_MAX_MESSAGE):
            raise RuntimeError(f"the fork server did not take process {pid}")


def _executed(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path | str
) -> tuple[str, str, list[str]]:
    """``("exec", file, args)``: ``argv`` executed afresh by the server's forked process, its
    file looked for here first, so that a missing one raises ``FileNotFoundError`` as
    ``subprocess.Popen`` does (a relative path from ``cwd``, a name on ``env``'s ``PATH``)."""
    program = argv[0]
    if os.sep in program:
        found = os.path.isfile(os.path.join(cwd, program)) and os.access(
            os.path.join(cwd, program), os.X_OK
        )
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
    if not found:
        raise FileNotFoundError(2, "No such file or directory", program)
    return "exec", program, list(argv[1:])


def _fd(given: int | None, own: int, null: Any) -> int:
    if given is None:
        return own
    if given == subprocess.DEVNULL:
        fd: int = null.fileno()
        return fd
    return given


def popen_logged(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str,
    preload: Sequence[str],
    log: Path,
) -> Process:
    """``popen`` with stdout and stderr both written to the file ``log`` (created or
    truncated): a server or worker process whose output a test reads, or shows on failure."""
    with log.open("wb") as sink:
        return popen(
            argv, env=env, cwd=cwd, preload=preload, stdout=sink.fileno(), stderr=subprocess.STDOUT
        )


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str,
    timeout: float,
    preload: Sequence[str],
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, env=env, cwd=cwd, stdin=DEVNULL, capture_output=True, text=True,
    timeout=timeout)``, the process forked as ``popen`` does (with ``fresh``: started afresh)."""
    if fresh or _how(argv) is None or _fresh():
        return subprocess.run(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = popen(
            argv,
            env=env,
            cwd=cwd,
            preload=preload,
            stdin=subprocess.DEVNULL,
            stdout=out.fileno(),
            stderr=err.fileno(),
        )
        try:
            code = process.wait(timeout)
        except BaseException:  # a timeout, or the test interrupted: as subprocess.run does
            process.kill()
            process.wait()
            raise
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(list(argv), code, _text(out.read()), _text(err.read()))


def _text(data: bytes) -> str:
    """What ``subprocess.run(text=True)`` makes of the bytes (universal newlines)."""
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


@atexit.register
def _close() -> None:
    with _lock:
        while _servers:
            _servers.popitem()[1].close()


if __name__ == "__main__":
    if sys.argv[1] == _DETACH:
        _serve(sys.argv[3], sys.argv[4:], watch=int(sys.argv[2]))
    else:
        _serve(sys.argv[1], sys.argv[2:])
