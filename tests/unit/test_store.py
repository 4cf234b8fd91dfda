"""The store on SQLAlchemy, run against SQLite and a real PostgreSQL: migrations applied
once and in order, newer schemas and unreachable databases refused before anything is
written, and every component's tables (decisions, deployments, keys, workers, rate
limits, campaigns, challenge attempts) behaving the same on both."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, inspect, select, text

from swisscheese.store.campaigns import AttemptRecord, CampaignStore
from swisscheese.store.challenge import Attempt, ChallengeStore
from swisscheese.store.decisions import (
    DecisionRecord,
    DecisionWriter,
    count_decisions,
    heartbeat,
    latest_deployment,
    live_workers,
    open_gateway_store,
    query_decisions,
    query_deployments,
    record_deployment,
    take_token,
)
from swisscheese.store.engine import StoreError, create_tables, make_engine, migrate, open_store
from swisscheese.store.keys import active_key_hashes, add_key, key_hash, new_key, revoke_key

md = MetaData()
things = Table("things", md, Column("id", Integer, primary_key=True),
               Column("name", Text, nullable=False))


def add_score(conn) -> None:
    conn.execute(text("ALTER TABLE things ADD COLUMN score FLOAT"))


def broken(conn) -> None:
    conn.execute(text("ALTER TABLE missing_table ADD COLUMN x INTEGER"))


def test_migrations_apply_once_and_in_order(store_target: str) -> None:
    engine = make_engine(store_target)
    assert migrate(engine, {"things": [create_tables(things)]}) == {"things": 1}
    with engine.begin() as conn:
        conn.execute(things.insert().values(name="a"))
    steps = [create_tables(things), add_score]
    assert migrate(engine, {"things": steps}) == {"things": 2}
    assert migrate(engine, {"things": steps}) == {"things": 2}  # idempotent
    with engine.begin() as conn:
        conn.execute(text("UPDATE things SET score = 0.5"))
    engine.dispose()
    again = make_engine(store_target)
    with again.connect() as conn:
        assert [tuple(r) for r in conn.execute(text("SELECT name, score FROM things"))] == \
            [("a", 0.5)]
    again.dispose()


def test_failed_migration_leaves_the_old_version(store_target: str) -> None:
    engine = make_engine(store_target)
    migrate(engine, {"things": [create_tables(things)]})
    with pytest.raises(Exception, match="missing_table"):
        migrate(engine, {"things": [create_tables(things), broken]})
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version FROM schema_versions "
                                    "WHERE component = 'things'")).scalar_one()
    assert version == 1
    engine.dispose()


def test_newer_schema_is_refused_before_anything_is_written(store_target: str) -> None:
    engine = make_engine(store_target)
    migrate(engine, {"things": [create_tables(things), add_score]})
    with pytest.raises(StoreError, match="version 2, newer than this swisscheese knows"):
        # A component that is new to the store comes first: it must not be created either.
        open_store(engine, {"fresh": [create_tables(Table("fresh", md, Column("id", Integer,
                                                                            primary_key=True)))],
                            "things": [create_tables(things)]})
    assert not inspect(engine).has_table("fresh")
    engine.dispose()
    md.remove(md.tables["fresh"])


def test_unreachable_or_malformed_database_urls_are_named(tmp_path: Path) -> None:
    from swisscheese.serve.server import free_port

    port = free_port()
    url = f"postgresql+psycopg://alice:s3cret@127.0.0.1:{port}/gw"
    with pytest.raises(StoreError, match=rf"cannot reach the store at .*127.0.0.1:{port}/gw") \
            as e:
        open_gateway_store(url)
    assert "s3cret" not in str(e.value)
    with pytest.raises(StoreError, match="not a usable database URL"):
        open_gateway_store("nosuchdb+driver://host/db")


def test_unusable_sqlite_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        open_gateway_store(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all, just some bytes" * 100)
    with pytest.raises(StoreError, match="junk.sqlite"):
        open_gateway_store(junk)


def test_sqlite_files_of_the_earlier_store_open_unchanged(tmp_path: Path) -> None:
    """A file written by the sqlite3 store of earlier releases: same tables, same versions."""
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
        CREATE TABLE gateway_keys (key_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE,
            label TEXT NOT NULL DEFAULT '', created TEXT NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0);
        INSERT INTO schema_versions VALUES ('gateway-keys', 1);
        INSERT INTO gateway_keys VALUES ('key-abc', 'abc', 'old', '2025-01-01', 0);
    """)
    conn.close()
    engine = open_gateway_store(db)
    assert active_key_hashes(engine) == {"abc": "key-abc"}
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    engine.dispose()


def test_decisions_deployments_workers_and_keys(store_target: str) -> None:
    engine = open_gateway_store(store_target)
    convo = [{"role": "user", "content": "What is 2 plus 3? \u00e9\u00e8"}]
    writer = DecisionWriter(store_target)
    futures = [writer.record(DecisionRecord(id=f"r{i}", endpoint="chat.completions",
                                            conversation=convo, stream=True, blocked=i == 1,
                                            latency_ms={"input": 1.5}, reply="five"))
               for i in range(3)]
    for f in futures:
        f.result(timeout=30)  # committed: visible to another connection at once
    rows = query_decisions(engine)
    assert [r["id"] for r in rows] == ["r0", "r1", "r2"]
    assert rows[1]["blocked"] is True and rows[0]["stream"] is True
    assert rows[0]["conversation"] == convo and rows[0]["latency_ms"] == {"input": 1.5}
    assert query_decisions(engine, since="9999") == []
    writer.record(DecisionRecord(id="r0", endpoint="chat.completions", conversation=convo,
                                 status="error")).result(timeout=30)
    assert count_decisions(engine) == 3  # same id: replaced, never duplicated
    writer.close()

    assert latest_deployment(engine) is None
    first = record_deployment(engine, "/b/v1", True, 1, None)
    record_deployment(engine, "/b/bad", False, None, 1, "refused")
    assert latest_deployment(engine)["id"] == first
    assert latest_deployment(engine, since_id=first + 1) is None
    assert [d["ok"] for d in query_deployments(engine)] == [True, False]

    heartbeat(engine, "h:1", "h", 1, "2026-01-01T00:00:00", 1, first)
    heartbeat(engine, "h:2", "h", 2, "2026-01-01T00:00:01", 1, first)
    heartbeat(engine, "h:2", "h", 2, "2026-01-01T00:00:01", 1, first, stopped=True)
    assert [w["worker_id"] for w in live_workers(engine)] == ["h:1"]

    key = new_key()
    kid = add_key(engine, key, "alice")
    assert add_key(engine, key, "alice") == kid  # twice: a no-op
    assert active_key_hashes(engine) == {key_hash(key): kid}
    assert revoke_key(engine, kid) and not revoke_key(engine, "key-000000000000")
    assert active_key_hashes(engine) == {}
    with pytest.raises(ValueError, match="at least 16"):
        add_key(engine, "short")
    engine.dispose()


def test_shared_token_bucket_is_atomic_across_threads(store_target: str) -> None:
    engine = open_gateway_store(store_target)
    assert take_token(engine, "k", rate=1.0, burst=2.0, now=100.0) == 0.0
    assert take_token(engine, "k", rate=1.0, burst=2.0, now=100.0) == 0.0
    assert take_token(engine, "k", rate=1.0, burst=2.0, now=100.0) == pytest.approx(1.0)
    assert take_token(engine, "k", rate=1.0, burst=2.0, now=101.0) == 0.0  # refilled one
    # A request that read the clock before the last one but writes after it: no refill,
    # and no drain either (a negative elapsed time must not take tokens away).
    assert take_token(engine, "fast", rate=1000.0, burst=5.0, now=200.0) == 0.0
    assert take_token(engine, "fast", rate=1000.0, burst=5.0, now=199.0) == 0.0
    assert take_token(engine, "fast", rate=1000.0, burst=5.0, now=200.0) == 0.0
    # 8 threads race for a bucket of 5 (no refill within the test): exactly 5 succeed.
    results: list[float] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(3):
            w = take_token(engine, "race", rate=1e-6, burst=5.0)
            with lock:
                results.append(w)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(w == 0.0 for w in results) == 5 and len(results) == 24
    engine.dispose()


def _attempt(b: str, sample: int, error: str | None = None) -> AttemptRecord:
    return AttemptRecord(behaviour_id=b, attack="plain", target="aligned", variant="v",
                         sample=sample, family="plain", level=1,
                         conversation=[{"role": "user", "content": "q"}], response="r",
                         score=0.25, label="refused", reason="x", error=error, seconds=0.1,
                         meta={"k": 1})


def test_campaign_store_resume_keys_and_config_check(store_target: str) -> None:
    with CampaignStore(store_target) as store:
        assert store.open_run("run", {"a": 1}, "h1") is False
        assert store.open_run("run", {"a": 1}, "h1") is True
        with pytest.raises(StoreError, match="different config"):
            store.open_run("run", {"a": 2}, "h2")
        store.save_references("run", {"hz1": "answer"})
        store.save_references("run", {"hz1": "answer 2"})
        assert store.references("run") == {"hz1": "answer 2"}
        store.add_attempts("run", [_attempt("b1", 0), _attempt("b1", 1, error="boom")])
        store.add_attempts("run", [_attempt("b2", 0)], unit=("b2", "plain", "aligned"))
        store.add_attempts("run", [_attempt("b3", 0, error="x")], unit=("b3", "plain", "aligned"))
        assert store.finished_keys("run") == {("b1", "plain", "aligned", "v", 0),
                                              ("b2", "plain", "aligned", "v", 0)}
        assert store.finished_units("run") == {("b2", "plain", "aligned")}
        store.add_attempts("run", [_attempt("b1", 1)])  # the retry replaces the error
        assert store.count("run") == 4
        store.clear_unit("run", ("b3", "plain", "aligned"))
        got = store.attempts("run")
        assert [(r.behaviour_id, r.sample) for r in got] == [("b1", 0), ("b1", 1), ("b2", 0)]
        assert got[0] == _attempt("b1", 0)


def test_challenge_store_flags_universal_templates(store_target: str) -> None:
    store = ChallengeStore(store_target, universal_min_levels=2)

    def attempt(player: str, level: int, passed: bool) -> Attempt:
        return Attempt(player=player, level=level, hazard_id=f"h{level}", prompt="p",
                       template="T {q}", template_hash="th", reply="r", detail_score=0.5,
                       threshold=0.3, passed=passed, blocked_layer=None, bundle_version=1)

    i1, flag = store.record(attempt("ann", 1, True))
    assert flag is None
    i2, _ = store.record(attempt("bob", 2, False))
    i3, flag = store.record(attempt("bob", 3, True))
    assert i1 < i2 < i3
    assert flag is not None and flag.levels == (1, 3) and flag.players == ("ann", "bob")
    assert [f.template_hash for f in store.universal("ann")] == ["th"]
    progress = store.progress("bob", [1, 2, 3])
    assert [(p.attempts, p.passed) for p in progress] == [(0, False), (1, False), (1, True)]
    assert [a.level for a in store.attempts(limit=2)] == [3, 2]
    store.close()


def test_two_processes_worth_of_writers_lose_nothing(store_target: str) -> None:
    """Two writers on one store (as two gateway workers have): every row lands once."""
    w1, w2 = DecisionWriter(store_target), DecisionWriter(store_target)
    futures = []
    for i in range(200):
        w = w1 if i % 2 else w2
        futures.append(w.record(DecisionRecord(id=f"d{i}", endpoint="chat.completions",
                                               conversation=[])))
    for f in futures:
        f.result(timeout=60)
    engine = open_gateway_store(store_target)
    with engine.connect() as conn:
        from swisscheese.store.schema import gateway_decisions as t

        ids = [r[0] for r in conn.execute(select(t.c.id))]
    assert sorted(ids) == sorted(f"d{i}" for i in range(200))
    w1.close()
    w2.close()
    engine.dispose()
