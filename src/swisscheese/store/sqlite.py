"""The SQLite store every component shares: one file, WAL mode, versioned schemas.

Each component (gateway decisions, red-team campaigns, ...) owns its tables and declares
them as an ordered list of migrations; `migrate` applies the ones a database lacks, in a
transaction, and records the component's version. A database written by a newer
swisscheese (a version above what the code knows) is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path


class StoreError(RuntimeError):
    """The store cannot be opened or is from an incompatible version; says which file."""


def connect(path: str | Path, *, check_same_thread: bool = False) -> sqlite3.Connection:
    """Open (creating if needed) a SQLite database for concurrent readers and one writer.

    WAL lets readers (monitoring, reports) work while a gateway or campaign writes; the
    busy timeout makes a second writer wait instead of failing at once.
    """
    p = Path(path)
    if str(path) != ":memory:":
        if p.exists() and p.is_dir():
            raise StoreError(f"{p} is a directory, not a SQLite database file")
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=check_same_thread,
                               isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: not a usable SQLite database ({e})") from None
    return conn


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[str]) -> int:
    """Bring `component`'s tables to the newest of `migrations` (SQL scripts, oldest
    first); returns the version now recorded. Safe to call on every open."""
    with _LOCK:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_versions ("
                     "component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_versions WHERE component = ?",
                           (component,)).fetchone()
        have = int(row[0]) if row else 0
        if have > len(migrations):
            raise StoreError(f"the store's {component!r} tables are at version {have}, newer "
                             f"than this swisscheese knows ({len(migrations)}); upgrade it")
        for version in range(have + 1, len(migrations) + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(migrations[version - 1]):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_versions(component, version) VALUES (?, ?) "
                             "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                             (component, version))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return len(migrations)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


# Migrations of several components may run from threads of one process at the same time.
_LOCK = threading.Lock()
