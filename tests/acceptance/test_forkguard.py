"""A process a test process starts itself (``subprocess.Popen``, ``forkserver.run``'s fresh
interpreters) dies with that test process (tests/forkguard.py): a gate killed mid-run left them
running, re-parented to init (a ``stepline worker`` for good, a nested pytest run for minutes).

Each case starts a stand-in for a test process (``_OWNER``: guards its subprocesses as
tests/conftest.py does, starts a sleeping process one way, writes its pid to a file, then waits),
kills it with SIGKILL, and waits (with a deadline) for the sleeping process to be gone."""

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

# the stand-in: guard, start a sleeper (a program, a fresh interpreter through forkserver.run,
# asyncio's subprocess, or a program in a session of its own), its pid in the file "pid"
_OWNER = """
import asyncio, os, subprocess, sys, time
import forkguard, forkserver
forkguard.install(forkserver.guard)
how, folder = sys.argv[1], sys.argv[2]
pid_file = os.path.join(folder, "pid")
def started(pid):
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(pid_file + ".tmp", pid_file)
if how == "popen":
    started(subprocess.Popen(["sleep", "600"]).pid)
elif how == "session":
    started(subprocess.Popen(["sleep", "600"], start_new_session=True).pid)
elif how == "asyncio":
    async def main():
        process = await asyncio.create_subprocess_exec("sleep", "600")
        started(process.pid)
        await process.wait()
    asyncio.run(main())
else:  # forkserver.run of a fresh interpreter: the script writes its own pid
    sleeper = [sys.executable, os.path.join(folder, "sleeper.py"), pid_file]
    forkserver.run(sleeper, env=dict(os.environ), cwd=folder, timeout=600, preload=(), fresh=True)
time.sleep(600)
"""
_SLEEPER = """
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""
# real time: the stand-in and the sleepers sleep until killed (their 600 s are never waited for)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _guarded(pid: int) -> bool:
    """Whether a fork server holds a pidfd of ``pid`` (its fdinfo names the pid): the guard
    was taken, which the stand-in's ``forkserver.run`` does not say (its sleeper may write its
    pid before)."""
    for proc in Path("/proc").iterdir():
        try:
            if b"forkserver.py" not in (proc / "cmdline").read_bytes():
                continue
            for info in (proc / "fdinfo").iterdir():
                if f"Pid:\t{pid}\n" in info.read_text():
                    return True
        except OSError:
            continue  # a process that ended meanwhile, or an fd closed
    return False


def _wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE:.0f} s"
        time.sleep(0.05)  # real time: the poll interval; the deadline bounds the wait


@pytest.fixture(params=["shared", "own"])
def owner_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The stand-in's environment: the run's servers shared (a folder of its own, watching
    this process) or servers of its own."""
    (tmp_path / "owner.py").write_text(_OWNER)
    (tmp_path / "sleeper.py").write_text(_SLEEPER)
    env = {k: v for k, v in os.environ.items() if k not in _shared_variables()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["PYTHONSTEPLINETEST"] = str(tmp_path)  # a kind of server no other test starts
    if request.param == "shared":
        (tmp_path / "servers").mkdir()
        env[forkserver.SHARED_VARIABLE] = str(tmp_path / "servers")
        env[forkserver.WATCH_VARIABLE] = str(os.getpid())
    return env


def _shared_variables() -> tuple[str, str]:
    return forkserver.SHARED_VARIABLE, forkserver.WATCH_VARIABLE


def _started(env: dict[str, str], tmp_path: Path, how: str) -> tuple[subprocess.Popen[bytes], int]:
    owner = subprocess.Popen(
        [sys.executable, str(tmp_path / "owner.py"), how, str(tmp_path)],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    pid_file = tmp_path / "pid"
    _wait_for(lambda: pid_file.exists() or owner.poll() is not None, "the sleeper's pid")
    assert owner.poll() is None, f"the stand-in ended ({owner.returncode})"
    sleeper = int(pid_file.read_text())
    assert _alive(sleeper)
    return owner, sleeper


def _stop_servers(tmp_path: Path) -> None:
    for found in (tmp_path / "servers").glob("*.pid"):
        try:
            os.kill(int(found.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("how", ["popen", "asyncio", "run"])
def test_a_process_a_test_process_started_dies_with_it(
    owner_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    owner, sleeper = _started(owner_env, tmp_path, how)
    try:
        _wait_for(lambda: _guarded(sleeper), "the sleeper guarded")
        owner.kill()
        owner.wait()
        _wait_for(lambda: not _alive(sleeper), "the killed test process's sleeper still runs")
    finally:
        if _alive(sleeper):
            os.kill(sleeper, signal.SIGKILL)  # not left behind by this test either
        _stop_servers(tmp_path)


def test_a_process_in_a_session_of_its_own_outlives_its_test_process(
    owner_env: dict[str, str], tmp_path: Path
) -> None:
    # pgcluster's watchers: they outlive the test process on purpose, to stop its cluster
    owner, sleeper = _started(owner_env, tmp_path, "session")
    try:
        owner.kill()
        owner.wait()
        assert _alive(sleeper)
    finally:
        os.kill(sleeper, signal.SIGKILL)
        _stop_servers(tmp_path)


def test_a_guarded_process_dies_with_the_runs_servers(tmp_path: Path) -> None:
    # the run is over (its controlling process gone, its shared servers with it): nothing it
    # started is left, whoever started it
    (tmp_path / "owner.py").write_text(_OWNER)
    (tmp_path / "servers").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _shared_variables()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["PYTHONSTEPLINETEST"] = str(tmp_path)
    env[forkserver.SHARED_VARIABLE] = str(tmp_path / "servers")
    watched = subprocess.Popen(["sleep", "600"])  # stands for the run's controlling process
    env[forkserver.WATCH_VARIABLE] = str(watched.pid)
    owner, sleeper = _started(env, tmp_path, "popen")
    try:
        _wait_for(lambda: _guarded(sleeper), "the sleeper guarded")
        watched.kill()
        watched.wait()
        _wait_for(lambda: not _alive(sleeper), "the sleeper of a run that ended still runs")
    finally:
        owner.kill()
        owner.wait()
        if _alive(sleeper):
            os.kill(sleeper, signal.SIGKILL)
        _stop_servers(tmp_path)
