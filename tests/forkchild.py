"""The process a fork server (tests/forkserver.py) forks for a request, from the fork on: it
becomes ``python -m MODULE ARGS`` or ``python SCRIPT ARGS`` (run as ``__main__`` by ``runpy``)
and ends as the interpreter would, or executes another program as ``subprocess`` does.

Imported by the fork server (before its preloaded modules); it imports nothing of the tests.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
import threading
from typing import Any, NoReturn


def become(
    request: dict[str, Any], fds: list[int], conn: socket.socket, wake: tuple[int, int]
) -> NoReturn:
    """In the forked child: become ``python -m MODULE ARGS`` or ``python SCRIPT ARGS``, and end
    as the interpreter would (``_end``): SystemExit's code, an uncaught error's traceback and
    code 1, an uncaught KeyboardInterrupt's traceback and death by SIGINT."""
    import runpy

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    conn.close()
    for fd in wake:
        os.close(fd)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    cwd = str(request["cwd"])
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(request["env"])
    kind, target, args = request["how"]
    if kind == "exec":
        _execute(target, args)
    try:
        if kind == "module":
            sys.argv = ["-m", *args]  # runpy puts the module's path first, as python -m does
            sys.path[0] = cwd  # python -m: the working directory comes first
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [target, *args]
            sys.path[0] = os.path.dirname(os.path.abspath(target))  # python SCRIPT: its folder
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        _end(_exit_code(exc.code))
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        _end(1, by_sigint=True)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        _end(1)
    _end(0)


def _execute(target: str, args: list[str]) -> NoReturn:
    """(In the forked child, its descriptors and environment set) execute ``target`` with
    ``args``, as ``subprocess.Popen`` would: the signals Python ignores back to their default,
    every descriptor above 2 closed, the file found on the environment's ``PATH``. A failure
    (the parent checked the file first: ``forkserver._executed``) is said on stderr, exit
    code 127."""
    for ignored in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(ignored, signal.SIG_DFL)
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, closed already
    try:
        os.execvpe(target, [target, *args], os.environ)
    except OSError as exc:
        os.write(2, f"cannot execute {target}: {exc}\n".encode())
    os._exit(127)


def _exit_code(code: object) -> int:
    """The exit code of ``SystemExit(code)``, as the interpreter makes it (anything but None and
    an int is printed on stderr and ends with 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _end(code: int, *, by_sigint: bool = False) -> NoReturn:
    """End the forked process with what an interpreter's end does that can be seen from outside:
    the non-daemon threads waited for, the atexit functions run (logging's flush among them),
    stdout and stderr flushed; then exit (``os._exit``), or die by SIGINT as the interpreter
    does after an uncaught KeyboardInterrupt. The rest of a normal end, every module's objects
    torn down, is skipped, as multiprocessing's forked children skip it: it wrote to nearly
    every page the child shares with its server, each then copied (a forked ``stepline runs
    list`` made ~8,000 page faults and spent ~55 ms of CPU; ~3,000 and ~24 ms without)."""
    threading._shutdown()  # what the interpreter's end runs first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream: as at the interpreter's end, nothing more to do
    if by_sigint:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)
