"""The engine root's one SQLite database: connection settings, transactions, schemas.

Many CLIs and a daemon may act on one engine root at once, so every connection uses WAL (readers
never block the writer), a generous busy timeout, and ``BEGIN IMMEDIATE`` for writes so that
two writers queue instead of failing on a lock upgrade. Each layer that keeps rows here owns its
tables and declares them with :func:`ensure_schema` (a component name and a list of migrations).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

DB_NAME = "dockyard.db"
BUSY_TIMEOUT_S = 60.0

_schema_lock = threading.Lock()


def open_database(root: str) -> sqlite3.Connection:
    os.makedirs(root, mode=0o711, exist_ok=True)
    conn = sqlite3.connect(os.path.join(root, DB_NAME), timeout=BUSY_TIMEOUT_S,
                           isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, "
        "version INTEGER NOT NULL)")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken up front (BEGIN IMMEDIATE), committed or rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def ensure_schema(conn: sqlite3.Connection, component: str,
                  migrations: Sequence[Sequence[str]]) -> None:
    """Apply the migrations of ``component`` that this database has not seen yet."""
    row = conn.execute("SELECT version FROM schema_versions WHERE component = ?",
                       (component,)).fetchone()
    if row is not None and int(row[0]) == len(migrations):
        return      # up to date (versions only go up): no write lock for every reader
    with _schema_lock, transaction(conn):
        row = conn.execute("SELECT version FROM schema_versions WHERE component = ?",
                           (component,)).fetchone()
        have = int(row[0]) if row else 0
        for version in range(have, len(migrations)):
            for stmt in migrations[version]:
                conn.execute(stmt)
        if have != len(migrations):
            conn.execute("INSERT OR REPLACE INTO schema_versions VALUES (?, ?)",
                         (component, len(migrations)))
