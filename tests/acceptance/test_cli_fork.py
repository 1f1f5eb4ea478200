"""The tests' fork server (tests/forkserver.py) behaves as ``subprocess`` where tests lean on it.

``forkserver.run`` stands for ``subprocess.run``, which kills its child on ANY exception
while it waits (``except: process.kill(); raise``). It kills it only on ``TimeoutExpired``: a
test interrupted while a command runs (pytest-timeout's default ``signal`` method raises
``Failed: Timeout`` in the test's thread; Ctrl-C) leaves the forked command running on, into
the next tests (here a ``send`` blocked on the database, which then sends its event)."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from types import FrameType

import _cli_fork
import pytest

import forkserver
from stepline.store.sqlite import SQLiteStore

REPO = Path(__file__).parents[2]


class Interrupted(Exception):
    pass


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def _children(pid: int) -> list[int]:
    """The live (not zombie) children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def test_an_interrupted_command_does_not_outlive_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # a server of this test's own (a start-up variable no other command has, and not the run's
    # shared ones): its children are this test's commands only
    env["PYTHONSTEPLINETEST"] = str(tmp_path)
    monkeypatch.delenv(forkserver.SHARED_VARIABLE, raising=False)
    db = tmp_path / "locked.db"
    store = SQLiteStore(db)
    store.migrate()
    store.close()
    first = _cli_fork.run_cli(["runs", "list", "--db", str(db)], env=env, cwd=tmp_path, timeout=60)
    assert first.returncode == 0, first.stderr
    server = forkserver._servers[forkserver._startup_env(env), forkserver.CLI]
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the next command waits for it (busy timeout)
    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    left: list[int] = []
    try:
        with pytest.raises(Interrupted):  # as pytest-timeout's Failed: Timeout would
            _cli_fork.run_cli(["send", "x", "--db", str(db)], env=env, cwd=tmp_path, timeout=60)
        left = _children(server.pid)
        assert left == [], "the interrupted command still runs"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        lock.execute("ROLLBACK")
        lock.close()
