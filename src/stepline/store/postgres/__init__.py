"""The PostgreSQL store (psycopg 3 + psycopg-pool): ``PostgresStore``."""

from __future__ import annotations

from stepline.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
