"""The gateway's tables: every guard decision, and the history of bundle deployments.

One row per chat completion (or moderation call): the scores, the layer that blocked,
latencies, the bundle version, the client's key id, and the conversation and reply text
so that offline monitoring can re-score the traffic with a heavier judge. `reply` is what
the model produced (up to the block), `sent` what the client received.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from swisscheese.store.sqlite import connect, migrate

DECISIONS_COMPONENT = "gateway-decisions"
DEPLOYMENTS_COMPONENT = "gateway-deployments"

DECISION_MIGRATIONS = [
    """
    CREATE TABLE gateway_decisions (
        id TEXT PRIMARY KEY,
        created TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        key_id TEXT,
        model TEXT,
        stream INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        blocked INTEGER NOT NULL DEFAULT 0,
        layer TEXT,
        input_score REAL,
        output_score REAL,
        error TEXT,
        bundle_version INTEGER,
        produced_chars INTEGER NOT NULL DEFAULT 0,
        released_chars INTEGER NOT NULL DEFAULT 0,
        hold_back INTEGER,
        finish_reason TEXT,
        latency_ms TEXT NOT NULL DEFAULT '{}',
        conversation TEXT NOT NULL,
        reply TEXT NOT NULL DEFAULT '',
        sent TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX gateway_decisions_created ON gateway_decisions(created)
    """,
]

DEPLOYMENT_MIGRATIONS = [
    """
    CREATE TABLE gateway_deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created TEXT NOT NULL,
        path TEXT NOT NULL,
        ok INTEGER NOT NULL,
        version INTEGER,
        previous_version INTEGER,
        error TEXT
    )
    """,
]


def now_iso() -> str:
    """UTC now with microseconds: decisions sort by time and `--since` compares strings."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class DecisionRecord:
    """One decision row (see the module docstring)."""

    id: str
    endpoint: str
    conversation: Sequence[Mapping[str, str]]
    status: str = "ok"
    key_id: str | None = None
    model: str | None = None
    stream: bool = False
    blocked: bool = False
    layer: str | None = None
    input_score: float | None = None
    output_score: float | None = None
    error: str | None = None
    bundle_version: int | None = None
    produced_chars: int = 0
    released_chars: int = 0
    hold_back: int | None = None
    finish_reason: str | None = None
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    reply: str = ""
    sent: str = ""
    created: str = field(default_factory=now_iso)


_COLUMNS = ("id", "created", "endpoint", "key_id", "model", "stream", "status", "blocked",
            "layer", "input_score", "output_score", "error", "bundle_version",
            "produced_chars", "released_chars", "hold_back", "finish_reason", "latency_ms",
            "conversation", "reply", "sent")


def open_gateway_store(path: str | Path) -> sqlite3.Connection:
    """Connect and bring the gateway's tables up to date."""
    conn = connect(path)
    migrate(conn, DECISIONS_COMPONENT, DECISION_MIGRATIONS)
    migrate(conn, DEPLOYMENTS_COMPONENT, DEPLOYMENT_MIGRATIONS)
    return conn


def insert_decision(conn: sqlite3.Connection, r: DecisionRecord) -> None:
    values = {
        "id": r.id, "created": r.created, "endpoint": r.endpoint, "key_id": r.key_id,
        "model": r.model, "stream": int(r.stream), "status": r.status,
        "blocked": int(r.blocked), "layer": r.layer, "input_score": r.input_score,
        "output_score": r.output_score, "error": r.error, "bundle_version": r.bundle_version,
        "produced_chars": r.produced_chars, "released_chars": r.released_chars,
        "hold_back": r.hold_back, "finish_reason": r.finish_reason,
        "latency_ms": json.dumps(dict(r.latency_ms)),
        "conversation": json.dumps([dict(m) for m in r.conversation]),
        "reply": r.reply, "sent": r.sent,
    }
    conn.execute(f"INSERT OR REPLACE INTO gateway_decisions ({', '.join(_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(_COLUMNS))})", [values[c] for c in _COLUMNS])


def query_decisions(conn: sqlite3.Connection, since: str | None = None,
                    endpoint: str | None = None) -> list[dict[str, Any]]:
    """Decision rows (oldest first) created at or after `since` (ISO 8601, UTC)."""
    sql = "SELECT * FROM gateway_decisions WHERE 1=1"
    args: list[Any] = []
    if since:
        sql += " AND created >= ?"
        args.append(since)
    if endpoint:
        sql += " AND endpoint = ?"
        args.append(endpoint)
    out = []
    for row in conn.execute(sql + " ORDER BY created", args):
        d = dict(row)
        d["stream"] = bool(d["stream"])
        d["blocked"] = bool(d["blocked"])
        d["latency_ms"] = json.loads(d["latency_ms"])
        d["conversation"] = json.loads(d["conversation"])
        out.append(d)
    return out


def record_deployment(conn: sqlite3.Connection, path: str, ok: bool, version: int | None,
                      previous_version: int | None, error: str | None = None) -> None:
    conn.execute("INSERT INTO gateway_deployments (created, path, ok, version, "
                 "previous_version, error) VALUES (?, ?, ?, ?, ?, ?)",
                 (now_iso(), path, int(ok), version, previous_version, error))


def query_deployments(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM gateway_deployments ORDER BY id").fetchall()
    return [dict(r) | {"ok": bool(r["ok"])} for r in rows]


class DecisionWriter:
    """Writes decision rows from one background thread.

    The gateway's event loop must not wait on SQLite (a busy WAL checkpoint can take
    milliseconds), so requests enqueue their records and this thread inserts them.
    `flush()` waits until everything enqueued so far is written.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = open_gateway_store(path)
        self._queue: queue.Queue[DecisionRecord | None] = queue.Queue()
        self._lock = threading.Lock()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="decision-writer", daemon=True)
        self._thread.start()

    @contextmanager
    def lock(self) -> Iterator[sqlite3.Connection]:
        """The writer's connection, for a few statements from another thread."""
        with self._lock:
            yield self._conn

    def record(self, r: DecisionRecord) -> None:
        self._queue.put(r)

    def deployment(self, path: str, ok: bool, version: int | None,
                   previous_version: int | None, error: str | None = None) -> None:
        # Rare and worth being sure of: written at once, in the caller's thread.
        with self._lock:
            record_deployment(self._conn, path, ok, version, previous_version, error)

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._conn.close()

    def _run(self) -> None:
        while True:
            r = self._queue.get()
            try:
                if r is None:
                    return
                with self._lock:
                    insert_decision(self._conn, r)
            except sqlite3.Error:
                # A lost log row must not take the gateway down; it is counted instead.
                self.failures += 1
            finally:
                self._queue.task_done()
