"""The floor: one raw durable SQLite commit on this disk.

``BEGIN IMMEDIATE; INSERT; COMMIT`` in a loop on a fresh file. Stepline's mode is WAL with
``synchronous=FULL`` (one fsync of the WAL per commit). The DBOS column measures the same loop in
the mode DBOS's SQLite system database runs in (it sets no journal mode or synchronous pragma, so
SQLite's defaults: rollback journal ``DELETE``, ``synchronous=FULL``: several fsyncs per commit),
which is the floor DBOS works against on this disk.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.common import Sizes, median, percentile, pg_database, pg_server

ROW = b"x" * 200


class CommitLoop:
    """A fresh SQLite file in the given mode, ready to time ``BEGIN IMMEDIATE; INSERT; COMMIT``."""

    def __init__(self, path: Path, journal_mode: str = "WAL", synchronous: str = "FULL") -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.mode = self.conn.execute(f"PRAGMA journal_mode = {journal_mode}").fetchone()[0]
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        self.commits(20)  # the first commits grow the file and the WAL

    def commits(self, n: int) -> list[float]:
        """Seconds taken by each of ``n`` durable commits."""
        conn, samples = self.conn, []
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (ROW,))
            conn.execute("COMMIT")
            samples.append(time.perf_counter() - t0)
        return samples

    def close(self) -> None:
        self.conn.close()


class PgCommitLoop:
    """One synchronous PostgreSQL commit of one small row (``INSERT`` in autocommit, the
    server's ``synchronous_commit=on``: the commit returns once its WAL is flushed)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.mode = "postgresql"
        self.conn.execute("DROP TABLE IF EXISTS bench_floor")
        self.conn.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, v bytea NOT NULL)")
        self.commits(20)

    def commits(self, n: int) -> list[float]:
        conn, samples = self.conn, []
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO bench_floor (v) VALUES (%s)", (ROW,))
            samples.append(time.perf_counter() - t0)
        return samples

    def close(self) -> None:
        self.conn.close()


def commit_loop(workdir: Path, name: str) -> CommitLoop | PgCommitLoop:
    """The floor timed next to a workload: a SQLite file in Stepline's mode, or with ``--pg``
    a table in a database of the same PostgreSQL server."""
    if pg_server():
        return PgCommitLoop(pg_database(f"floor_{name}"))
    return CommitLoop(workdir / f"{name}.db")


def measure_commits(path: Path, journal_mode: str, synchronous: str, n: int) -> dict[str, Any]:
    """Milliseconds per durable commit of one small row."""
    loop: CommitLoop | PgCommitLoop
    if pg_server():
        loop = PgCommitLoop(pg_database("floor_alone"))
    else:
        loop = CommitLoop(path, journal_mode, synchronous)
    try:
        samples = loop.commits(n)
        mode = loop.mode
    finally:
        loop.close()
    return {
        "commit_ms": sum(samples) / len(samples) * 1000,
        "commit_p50_ms": median(samples) * 1000,
        "commit_p99_ms": percentile(samples, 99) * 1000,
        "commits": n,
        "journal_mode": mode,
        "synchronous": synchronous,
    }


def run_stepline(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return measure_commits(workdir / "floor-wal.db", "WAL", "FULL", sizes.floor_commits)


def run_dbos(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    if pg_server():  # the same server: the same floor
        result = measure_commits(workdir, "", "", sizes.floor_commits)
        result["note"] = "the same synchronous PostgreSQL commit (DBOS runs on the same server)"
        return result
    result = measure_commits(
        workdir / "floor-rollback.db", "DELETE", "FULL", sizes.floor_commits // 2
    )
    result["note"] = "raw SQLite in DBOS's mode (rollback journal, synchronous=FULL)"
    return result
