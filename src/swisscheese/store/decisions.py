"""The gateway's tables: every guard decision, the history of bundle deployments, the
workers' heartbeats and the shared rate-limit buckets.

One decision row per chat completion (or moderation call): the scores, the layer that
blocked, latencies, the bundle version, the client's key id, and the conversation and
reply text so that offline monitoring can re-score the traffic with a heavier judge.
`reply` is what the model produced (up to the block), `sent` what the client received.

Every function takes the engine `open_gateway_store` returns (a SQLite file or any
database URL); several gateway workers, on one machine or many, share one store.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger("swisscheese.store")


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
    categories: Mapping[str, float] | None = None  # per-category input scores
    stages: Mapping[str, int] | None = None  # the cascade stage that decided each layer


def open_gateway_store(target: str | Path) -> Engine:
    """The gateway's store (a SQLite path or a database URL), tables up to date."""
    from swisscheese.store.engine import open_store
    from swisscheese.store.schema import GATEWAY, components

    return open_store(target, components(*GATEWAY))


def _decision_row(r: DecisionRecord) -> dict[str, Any]:
    return {
        "id": r.id, "created": r.created, "endpoint": r.endpoint, "key_id": r.key_id,
        "model": r.model, "stream": int(r.stream), "status": r.status,
        "blocked": int(r.blocked), "layer": r.layer, "input_score": r.input_score,
        "output_score": r.output_score, "error": r.error, "bundle_version": r.bundle_version,
        "produced_chars": r.produced_chars, "released_chars": r.released_chars,
        "hold_back": r.hold_back, "finish_reason": r.finish_reason,
        "latency_ms": json.dumps(dict(r.latency_ms)),
        "conversation": json.dumps([dict(m) for m in r.conversation]),
        "reply": r.reply, "sent": r.sent,
        "categories": None if r.categories is None else json.dumps(dict(r.categories)),
        "stages": None if r.stages is None else json.dumps(dict(r.stages)),
    }


def insert_decisions(engine: Engine, records: Sequence[DecisionRecord]) -> None:
    """Write `records` in one transaction (all or none); a known id is replaced."""
    from swisscheese.store.engine import upsert
    from swisscheese.store.schema import gateway_decisions

    with engine.begin() as conn:
        upsert(conn, gateway_decisions, [_decision_row(r) for r in records], ["id"])


def insert_decision(engine: Engine, r: DecisionRecord) -> None:
    insert_decisions(engine, [r])


def query_decisions(engine: Engine, since: str | None = None,
                    endpoint: str | None = None) -> list[dict[str, Any]]:
    """Decision rows (oldest first) created at or after `since` (ISO 8601, UTC)."""
    from sqlalchemy import select

    from swisscheese.store.schema import gateway_decisions as t

    q = select(t)
    if since:
        q = q.where(t.c.created >= since)
    if endpoint:
        q = q.where(t.c.endpoint == endpoint)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(t.c.created, t.c.id)).mappings().all()
    out = []
    for row in rows:
        d = dict(row)
        d["stream"] = bool(d["stream"])
        d["blocked"] = bool(d["blocked"])
        d["latency_ms"] = json.loads(d["latency_ms"])
        d["conversation"] = json.loads(d["conversation"])
        d["categories"] = None if d["categories"] is None else json.loads(d["categories"])
        d["stages"] = None if d["stages"] is None else json.loads(d["stages"])
        out.append(d)
    return out


def count_decisions(engine: Engine) -> int:
    from sqlalchemy import func, select

    from swisscheese.store.schema import gateway_decisions as t

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t)).scalar_one())


# ---- deployments -----------------------------------------------------------------------------
def record_deployment(engine: Engine, path: str, ok: bool, version: int | None,
                      previous_version: int | None, error: str | None = None) -> int:
    """Append a deployment (or a refused one); returns its id, which orders them."""
    from sqlalchemy import insert

    from swisscheese.store.schema import gateway_deployments as t

    with engine.begin() as conn:
        res = conn.execute(insert(t).values(created=now_iso(), path=path, ok=int(ok),
                                            version=version, previous_version=previous_version,
                                            error=error).returning(t.c.id))
        return int(res.scalar_one())


def query_deployments(engine: Engine) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from swisscheese.store.schema import gateway_deployments as t

    with engine.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.id)).mappings().all()
    return [dict(r) | {"ok": bool(r["ok"])} for r in rows]


def latest_deployment(engine: Engine, since_id: int = 0) -> dict[str, Any] | None:
    """The newest successful deployment with an id of at least `since_id`: the bundle
    every worker of the store should serve."""
    from sqlalchemy import select

    from swisscheese.store.schema import gateway_deployments as t

    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.ok == 1, t.c.id >= since_id)
                           .order_by(t.c.id.desc()).limit(1)).mappings().first()
    return dict(row) | {"ok": True} if row is not None else None


def last_deployment_id(engine: Engine) -> int:
    from sqlalchemy import func, select

    from swisscheese.store.schema import gateway_deployments as t

    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(t.c.id), 0))).scalar_one())


# ---- workers ---------------------------------------------------------------------------------
def heartbeat(engine: Engine, worker_id: str, host: str, pid: int, started: str,
              bundle_version: int | None, deployment_id: int | None,
              stopped: bool = False) -> None:
    """Record that a worker is alive (or, with stopped=True, that it has shut down)."""
    from swisscheese.store.engine import upsert
    from swisscheese.store.schema import gateway_workers

    with engine.begin() as conn:
        upsert(conn, gateway_workers, [{
            "worker_id": worker_id, "host": host, "pid": pid, "started": started,
            "heartbeat": time.time(), "bundle_version": bundle_version,
            "deployment_id": deployment_id, "stopped": int(stopped)}], ["worker_id"])


def live_workers(engine: Engine, within_s: float = 5.0) -> list[dict[str, Any]]:
    """Workers that beat within the last `within_s` seconds and have not stopped."""
    from sqlalchemy import select

    from swisscheese.store.schema import gateway_workers as t

    now = time.time()
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.heartbeat >= now - within_s, t.c.stopped == 0)
                            .order_by(t.c.started, t.c.worker_id)).mappings().all()
    return [dict(r) | {"heartbeat_age_s": round(now - float(r["heartbeat"]), 3)} for r in rows]


# ---- shared rate limits ----------------------------------------------------------------------
def take_token(engine: Engine, who: str, rate: float, burst: float,
               now: float | None = None) -> float:
    """Take one token from `who`'s bucket (refilled at `rate` per second up to `burst`),
    in one atomic statement; returns 0.0, or the seconds to wait when it is empty."""
    from sqlalchemy import case, literal

    from swisscheese.store.schema import gateway_rate_buckets as t

    now = time.time() if now is None else now
    from sqlalchemy.dialects import postgresql, sqlite

    # Both dialects spell an upsert the same way, on their own Insert class.
    insert: Any = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert
    # Requests race: one that read the clock earlier may write after a later one. Its
    # elapsed time is then negative and must refill nothing (not drain the bucket).
    elapsed = case((literal(now) > t.c.updated, literal(now) - t.c.updated), else_=0.0)
    refilled = t.c.tokens + elapsed * rate
    refilled = case((refilled > burst, literal(burst)), else_=refilled)
    stmt = insert(t).values(who=who, tokens=burst - 1.0, updated=now, taken=1)
    stmt = stmt.on_conflict_do_update(index_elements=["who"], set_={
        "tokens": case((refilled >= 1.0, refilled - 1.0), else_=refilled),
        "updated": case((literal(now) > t.c.updated, literal(now)), else_=t.c.updated),
        "taken": case((refilled >= 1.0, 1), else_=0),
    }).returning(t.c.tokens, t.c.taken)
    with engine.begin() as conn:
        tokens, taken = conn.execute(stmt).one()
    return 0.0 if taken else (1.0 - float(tokens)) / rate


class DecisionWriter:
    """Writes decision rows from one background thread.

    The gateway's event loop must not wait on the database, so requests enqueue their
    records and this thread writes them, everything queued at once in one transaction.
    `record` returns a future that is done once the row is committed: the gateway waits
    on it before a reply's last byte, so a reply a client received whole has its row even
    if the worker is killed right after. `flush()` waits until everything enqueued so far
    is written.
    """

    def __init__(self, target: str | Path | Engine) -> None:
        from sqlalchemy.engine import Engine

        self.path = target if not isinstance(target, Engine) else target.url
        self._owns_engine = not isinstance(target, Engine)
        self.engine = target if isinstance(target, Engine) else open_gateway_store(target)
        self._queue: queue.Queue[tuple[DecisionRecord, Future[None]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="decision-writer", daemon=True)
        self._thread.start()

    @contextmanager
    def lock(self) -> Iterator[Engine]:
        """The writer's engine, for a few statements from another thread."""
        with self._lock:
            yield self.engine

    def record(self, r: DecisionRecord) -> Future[None]:
        done: Future[None] = Future()
        self._queue.put((r, done))
        return done

    def deployment(self, path: str, ok: bool, version: int | None,
                   previous_version: int | None, error: str | None = None) -> int:
        # Rare and worth being sure of: written at once, in the caller's thread.
        return record_deployment(self.engine, path, ok, version, previous_version, error)

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self._owns_engine:
            self.engine.dispose()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:  # everything already waiting goes in the same transaction
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = [b for b in batch if b is not None]
            stop = len(items) < len(batch)
            try:
                if items:
                    insert_decisions(self.engine, [r for r, _ in items])
                for _, done in items:
                    done.set_result(None)
            except Exception as e:  # noqa: BLE001 - the thread must outlive any bad batch
                # A lost log row must not take the gateway down; it is counted instead.
                self.failures += len(items)
                log.error("could not write %d decision rows: %s", len(items), e)
                for _, done in items:
                    done.set_exception(e)
            finally:
                for _ in batch:
                    self._queue.task_done()
