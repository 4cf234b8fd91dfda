"""The shared SQLite store: migrations are applied once, in order, and newer schemas refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from swisscheese.store.sqlite import StoreError, connect, migrate

V1 = "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"
V2 = "ALTER TABLE things ADD COLUMN score REAL; CREATE INDEX things_name ON things(name)"


def test_migrations_apply_once_and_in_order(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    conn = connect(db)
    assert migrate(conn, "things", [V1]) == 1
    conn.execute("INSERT INTO things(name) VALUES ('a')")
    assert migrate(conn, "things", [V1, V2]) == 2
    assert migrate(conn, "things", [V1, V2]) == 2  # idempotent
    conn.execute("UPDATE things SET score = 0.5")
    conn.close()
    again = connect(db)
    assert [tuple(r) for r in again.execute("SELECT name, score FROM things")] == [("a", 0.5)]
    assert again.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.sqlite")
    migrate(conn, "things", [V1])
    with pytest.raises(Exception, match="no such table"):
        migrate(conn, "things", [V1, "ALTER TABLE missing ADD COLUMN x"])
    row = conn.execute("SELECT version FROM schema_versions WHERE component='things'").fetchone()
    assert row[0] == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.sqlite")
    migrate(conn, "things", [V1, V2])
    with pytest.raises(StoreError, match="version 2, newer"):
        migrate(conn, "things", [V1])


def test_unusable_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        connect(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all, just some bytes" * 100)
    with pytest.raises(StoreError, match="junk.sqlite"):
        connect(junk)
