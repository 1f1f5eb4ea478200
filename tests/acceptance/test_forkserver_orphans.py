"""A process forked for a test by tests/forkserver.py dies with the test process that asked for
it, and with its fork server: a gate killed mid-run (its test processes SIGKILLed) left the
``stepline dev`` servers its tests had started running for good, re-parented to init.

Each case starts a stand-in for a test process (``_OWNER``: asks a fork server for a ``python
SCRIPT`` that sleeps, prints its pid, then waits), kills it (or the server) with SIGKILL, and
waits (with a deadline) for the forked process to be gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import forkserver

TESTS = Path(__file__).resolve().parents[1]
DEADLINE = 30.0  # a bound on each wait, never a sleep

# the test process's stand-in: popen a sleeping script (or another program, ``sleep``: executed
# afresh by the server's forked process) through the fork servers, print its pid
_OWNER = """
import subprocess, sys, time
import forkserver
command = [sys.executable, sys.argv[1]] if sys.argv[3] == "python" else ["sleep", "600"]
child = forkserver.popen(
    command, env=dict(__import__("os").environ), cwd=sys.argv[2],
    preload=(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
)
print(child.pid, flush=True)
time.sleep(600)
"""
# real time: the test process and the child program sleep until the test kills them (their 600 s
# are never waited for; the test asserts they are gone once their parent is)
_SLEEPER = "import time\ntime.sleep(600)\n"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)  # not left behind by this test either
            raise AssertionError(f"{what} still runs {DEADLINE:.0f} s later")
        time.sleep(0.05)  # real time: the poll interval; the deadline bounds the wait


@pytest.fixture
def owner_env(tmp_path: Path) -> dict[str, str]:
    """The stand-in's environment: servers of its own kind (a start-up variable no other
    command has), sharing none of the run's."""
    (tmp_path / "owner.py").write_text(_OWNER)
    (tmp_path / "sleeper.py").write_text(_SLEEPER)
    env = {k: v for k, v in os.environ.items() if k not in _shared()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["PYTHONSTEPLINETEST"] = str(tmp_path)
    return env


def _shared() -> tuple[str, str]:
    return forkserver.SHARED_VARIABLE, forkserver.WATCH_VARIABLE


@pytest.fixture(params=["python", "program"])
def command(request: pytest.FixtureRequest) -> str:
    """What the stand-in starts: a Python script (forked) or another program (executed)."""
    return str(request.param)


def _start_owner(
    env: dict[str, str], tmp_path: Path, command: str
) -> tuple[subprocess.Popen[bytes], int]:
    script, sleeper = str(tmp_path / "owner.py"), str(tmp_path / "sleeper.py")
    owner = subprocess.Popen(
        [sys.executable, script, sleeper, str(tmp_path), command],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert owner.stdout is not None
    with owner.stdout:
        line = owner.stdout.readline()
    assert line.strip().isdigit(), f"the stand-in gave no pid ({owner.wait()})"
    child = int(line)
    assert _alive(child)
    return owner, child


def _server_pids(folder: Path) -> list[int]:
    return [int(p.read_text()) for p in folder.glob("*.pid")]


def test_a_forked_process_dies_with_its_test_process_under_a_shared_server(
    owner_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    # the run's shared servers (watching this process, so they outlive the stand-in)
    folder = tmp_path / "servers"
    folder.mkdir()
    owner_env[forkserver.SHARED_VARIABLE] = str(folder)
    owner_env[forkserver.WATCH_VARIABLE] = str(os.getpid())
    owner, child = _start_owner(owner_env, tmp_path, command)
    [server] = _server_pids(folder)
    try:
        owner.kill()
        owner.wait()
        _wait_gone(child, "the process forked for a killed test process")
        assert _alive(server), "the shared server serves the run's other test processes on"
    finally:
        os.kill(server, signal.SIGKILL)


def test_a_forked_process_dies_with_its_test_processs_own_server(
    owner_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    owner, child = _start_owner(owner_env, tmp_path, command)  # a server of the stand-in's own
    owner.kill()
    owner.wait()
    _wait_gone(child, "the process forked by a killed test process's own server")


def test_a_forked_process_dies_with_its_server(
    owner_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    folder = tmp_path / "servers"
    folder.mkdir()
    owner_env[forkserver.SHARED_VARIABLE] = str(folder)
    owner_env[forkserver.WATCH_VARIABLE] = str(os.getpid())
    owner, child = _start_owner(owner_env, tmp_path, command)
    [server] = _server_pids(folder)
    try:
        os.kill(server, signal.SIGKILL)  # as a gate's end kills what it finds
        _wait_gone(child, "the process forked by a killed fork server")
    finally:
        owner.kill()
        owner.wait()


def test_a_program_not_found_raises_as_subprocess_does(tmp_path: Path) -> None:
    env = dict(os.environ)
    with pytest.raises(FileNotFoundError):
        forkserver.popen(["no-such-program-here"], env=env, cwd=tmp_path, preload=())
    with pytest.raises(FileNotFoundError):
        forkserver.popen(["./missing.sh"], env=env, cwd=tmp_path, preload=())


def test_a_program_runs_with_its_arguments_environment_and_folder(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "SAID": "hello"}
    out = tmp_path / "out"
    with out.open("wb") as sink:
        process = forkserver.popen(
            # its ignored signals: those a subprocess of this process has (Python ignores
            # SIGPIPE and SIGXFSZ, subprocess puts them back; the others ignored here, as under
            # nohup, stay so), its descriptors: 0-2 only (subprocess closes the others)
            [
                "sh",
                "-c",
                'echo "$SAID $1 $(pwd)"; grep SigIgn /proc/$$/status; ls /proc/$$/fd; exit 3',
                "sh",
                "world",
            ],
            env=env,
            cwd=tmp_path,
            preload=(),
            stdout=sink.fileno(),
        )
    assert process.wait(timeout=30) == 3
    said, ignored, *fds = out.read_text().split("\n")
    assert said == f"hello world {tmp_path}"
    plain = subprocess.run(
        ["sh", "-c", "grep SigIgn /proc/$$/status"], capture_output=True, text=True, check=True
    )
    assert ignored == plain.stdout.strip()
    assert sorted(fd for fd in fds if fd) == ["0", "1", "2"]
