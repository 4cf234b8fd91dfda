"""The text-to-image red team's tables: runs, every loop query, stage results, images.

A query is keyed by (run, loop, category, seq): the seq-th candidate a loop made for a
category, whether it was blocked by a prompt filter (no image rendered) or rendered and
judged. Loops are deterministic given what they have seen, so a run that crashed resumes
by replaying its stored queries and carrying on from the first missing seq. Later stages
(re-rendering for the measures, transfer, the guard) write their results under
(run, stage, key) and are skipped when present. Images kept for the report are PNG bytes
under (run, key). Each write is one transaction: a crash leaves all of it or none.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from swisscheese.store.sqlite import StoreError, connect, migrate

COMPONENT = "t2i-redteam"

MIGRATIONS = [
    """
    CREATE TABLE t2i_runs (
        run_id TEXT PRIMARY KEY,
        created TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TABLE t2i_queries (
        run_id TEXT NOT NULL REFERENCES t2i_runs(run_id),
        loop TEXT NOT NULL,
        category TEXT NOT NULL,
        seq INTEGER NOT NULL,
        step INTEGER NOT NULL,
        thread TEXT NOT NULL,
        prompt TEXT NOT NULL,
        parent TEXT,
        blocked INTEGER NOT NULL,
        filters TEXT NOT NULL,
        images INTEGER NOT NULL,
        verdicts TEXT NOT NULL,
        success INTEGER NOT NULL,
        score REAL,
        guidance TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL,
        PRIMARY KEY (run_id, loop, category, seq)
    );
    CREATE TABLE t2i_stages (
        run_id TEXT NOT NULL REFERENCES t2i_runs(run_id),
        stage TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (run_id, stage, key)
    );
    CREATE TABLE t2i_images (
        run_id TEXT NOT NULL REFERENCES t2i_runs(run_id),
        key TEXT NOT NULL,
        png BLOB NOT NULL,
        PRIMARY KEY (run_id, key)
    )
    """,
]


@dataclass(frozen=True)
class QueryRecord:
    """One candidate prompt of a loop and what became of it.

    `filters` maps filter name -> verdict dict; `verdicts` holds, per rendered image, a
    mapping judge name -> verdict dict (empty when blocked). `success`: at least one image
    flagged for the category by a loop judge, on a prompt every filter passed.
    """

    loop: str
    category: str
    seq: int
    step: int
    thread: str
    prompt: str
    parent: str | None
    blocked: bool
    filters: dict[str, Any]
    images: int
    verdicts: list[dict[str, Any]]
    success: bool
    score: float | None
    guidance: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class T2IStore:
    """One SQLite file of T2I red-team runs; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = connect(path)
        migrate(self._conn, COMPONENT, MIGRATIONS)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> T2IStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # ---- runs ---------------------------------------------------------------------------
    def open_run(self, run_id: str, config: Mapping[str, Any], config_hash: str) -> bool:
        """Record a run, or check an existing one has the same config; True on resume."""
        row = self._conn.execute("SELECT config_hash FROM t2i_runs WHERE run_id = ?",
                                 (run_id,)).fetchone()
        if row is not None:
            if row[0] != config_hash:
                raise StoreError(f"{self.path}: run {run_id!r} was started with a different "
                                 f"config (hash {row[0][:12]}, now {config_hash[:12]}); choose "
                                 "another output directory")
            return True
        self._write("INSERT INTO t2i_runs VALUES (?, ?, ?, ?)",
                    [(run_id, _now(), config_hash, json.dumps(config, sort_keys=True))])
        return False

    # ---- queries ------------------------------------------------------------------------
    def add_queries(self, run_id: str, records: Sequence[QueryRecord]) -> None:
        self._write("INSERT OR REPLACE INTO t2i_queries VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(run_id, r.loop, r.category, r.seq, r.step, r.thread, r.prompt, r.parent,
                      int(r.blocked), json.dumps(r.filters, sort_keys=True), r.images,
                      json.dumps(r.verdicts, sort_keys=True), int(r.success), r.score,
                      r.guidance, _now()) for r in records])

    def queries(self, run_id: str, loop: str | None = None,
                category: str | None = None) -> list[QueryRecord]:
        sql = "SELECT * FROM t2i_queries WHERE run_id = ?"
        args: list[Any] = [run_id]
        if loop is not None:
            sql += " AND loop = ?"
            args.append(loop)
        if category is not None:
            sql += " AND category = ?"
            args.append(category)
        rows = self._conn.execute(sql + " ORDER BY loop, category, seq", args).fetchall()
        return [QueryRecord(
            loop=r["loop"], category=r["category"], seq=int(r["seq"]), step=int(r["step"]),
            thread=r["thread"], prompt=r["prompt"], parent=r["parent"],
            blocked=bool(r["blocked"]), filters=json.loads(r["filters"]),
            images=int(r["images"]), verdicts=json.loads(r["verdicts"]),
            success=bool(r["success"]), score=r["score"], guidance=r["guidance"])
            for r in rows]

    # ---- stage results and images -------------------------------------------------------
    def stage(self, run_id: str, stage: str) -> dict[str, Any]:
        rows = self._conn.execute("SELECT key, value FROM t2i_stages WHERE run_id = ? AND "
                                  "stage = ?", (run_id, stage)).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    def put_stage(self, run_id: str, stage: str, items: Mapping[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO t2i_stages VALUES (?, ?, ?, ?, ?)",
                    [(run_id, stage, k, json.dumps(v, sort_keys=True), _now())
                     for k, v in items.items()])

    def put_images(self, run_id: str, images: Mapping[str, bytes]) -> None:
        self._write("INSERT OR REPLACE INTO t2i_images VALUES (?, ?, ?)",
                    [(run_id, k, v) for k, v in images.items()])

    def images(self, run_id: str, prefix: str = "") -> dict[str, bytes]:
        rows = self._conn.execute("SELECT key, png FROM t2i_images WHERE run_id = ? AND "
                                  "key LIKE ? ORDER BY key", (run_id, prefix + "%")).fetchall()
        return {r[0]: bytes(r[1]) for r in rows}


__all__ = ["QueryRecord", "StoreError", "T2IStore"]
