"""A new version opening a SQLite file on which workers of the version before still run: a
migration that their code reads differently waits until they are stopped (review F3), and
``db copy --ignore-live-workers`` copies the file meanwhile without migrating it in place."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from stepline.cli import cli
from stepline.errors import ConfigError
from stepline.store import SQLiteStore
from stepline.store.sqlite.schema import MIGRATIONS

# the last commit of schema 19: its workers know nothing of migration 20's waits_resolved
BEFORE_MIGRATION_20 = "dc82492"

APP = """
from stepline import App, Context, TriggerEvent

app = App("upgraded")


@app.function(id="f", trigger=TriggerEvent("go"))
async def f(ctx: Context) -> int:
    return 1
"""


def _live_workers(path: Path) -> list[str]:
    if not path.exists():
        return []
    with closing(sqlite3.connect(path)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "workers" not in tables:
            return []
        rows = conn.execute("SELECT worker_id FROM workers WHERE expires_at > ?", (time.time(),))
        return [r[0] for r in rows]


def _registered(path: Path, worker: subprocess.Popen[bytes]) -> list[str]:
    """The workers alive on ``path`` once ``worker`` (a process starting) has registered."""
    deadline = time.monotonic() + 60  # a hang becomes a failure, not a timing assertion
    while not (alive := _live_workers(path)):
        assert worker.poll() is None, "the old worker exited before it registered"
        assert time.monotonic() < deadline, "the old worker never registered"
        time.sleep(0.05)  # real time: polling another process's registration
    return alive


def _schema_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])


def test_a_worker_of_the_version_before_is_stopped_before_migration_20_applies(
    tmp_path: Path,
) -> None:
    # after migration 20 a resolved wait's row stays until a purge: a worker of schema 19 still
    # running on the file would read it as pending and resolve the wait again with the next
    # matching event (review F3's repro: "old resumed ['r1']"). The new version refuses to
    # migrate while it is alive, and migrates once it has stopped.
    repo = Path(__file__).resolve().parents[2]
    known = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{BEFORE_MIGRATION_20}^{{commit}}"],
        capture_output=True,
    )
    if known.returncode != 0:  # a shallow clone or an unpacked release: no code of schema 19
        pytest.skip(
            f"needs commit {BEFORE_MIGRATION_20} in the repository's history (the refusal "
            "itself is proven by tests/store/test_sqlite_stop_workers_first.py)"
        )
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", BEFORE_MIGRATION_20, "src"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    (tmp_path / "upgraded_app.py").write_text(APP)
    path = tmp_path / "s.db"
    log = (tmp_path / "old-worker.out").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "stepline.cli", "worker", "upgraded_app:app", "--db", str(path)],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{old / 'src'}:{tmp_path}", "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        [old_worker] = _registered(path, worker)
        assert _schema_version(path) == 19
        store = SQLiteStore(path)
        with pytest.raises(ConfigError, match="stop them before the first start") as refused:
            store.migrate()
        assert old_worker in str(refused.value)
        assert _schema_version(path) == 19
        # moving to another database meanwhile: the copy migrates a copy of the file aside
        moved = f"sqlite:///{tmp_path / 'moved.db'}"
        copied = CliRunner().invoke(
            cli, ["db", "copy", f"sqlite:///{path}", moved, "--ignore-live-workers"]
        )
        assert copied.exit_code == 0, copied.output
        assert _schema_version(path) == 19 and worker.poll() is None
        assert _schema_version(tmp_path / "moved.db") == len(MIGRATIONS)
        worker.send_signal(signal.SIGTERM)  # a graceful stop unregisters it
        assert worker.wait(timeout=60) == 0, (tmp_path / "old-worker.out").read_text()
        store.migrate()
        assert _schema_version(path) == len(MIGRATIONS)
        store.close()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.close()
