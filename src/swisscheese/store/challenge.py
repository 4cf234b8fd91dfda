"""The challenge page's tables: every attempt, and the templates flagged as universal.

An attempt row keeps what a reviewer needs to replay it (player, level, prompt, reply,
the grader's detail score against the level's threshold, the layer that blocked, the
bundle version). Each prompt is also kept as its template (the level's question replaced
by a slot, see `swisscheese.serve.challenge.template`), so that one template passing
several levels is visible: that is the universal jailbreak the challenge is hunting.

A `ChallengeStore` holds one SQLite connection shared by the worker threads of the web
server; a lock keeps each method's statements together.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from swisscheese.store.sqlite import connect, migrate

COMPONENT = "challenge"
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE challenge_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        player TEXT NOT NULL,
        level INTEGER NOT NULL,
        hazard_id TEXT NOT NULL,
        prompt TEXT NOT NULL,
        template TEXT NOT NULL,
        template_hash TEXT NOT NULL,
        reply TEXT NOT NULL,
        detail_score REAL NOT NULL,
        threshold REAL NOT NULL,
        passed INTEGER NOT NULL,
        blocked_layer TEXT,
        bundle_version INTEGER,
        created TEXT NOT NULL
    );
    CREATE INDEX challenge_attempts_player ON challenge_attempts(player, level);
    CREATE INDEX challenge_attempts_template ON challenge_attempts(template_hash, passed);
    CREATE TABLE challenge_universal (
        template_hash TEXT PRIMARY KEY,
        template TEXT NOT NULL,
        levels TEXT NOT NULL,
        players TEXT NOT NULL,
        first_flagged TEXT NOT NULL,
        updated TEXT NOT NULL
    )
    """,
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Attempt:
    """One graded attempt, as the page sends it and the store keeps it."""

    player: str
    level: int
    hazard_id: str
    prompt: str
    template: str
    template_hash: str
    reply: str
    detail_score: float
    threshold: float
    passed: bool
    blocked_layer: str | None
    bundle_version: int | None
    created: str = field(default_factory=now_iso)


@dataclass(frozen=True)
class UniversalFlag:
    """A template that has passed at least the configured number of levels."""

    template_hash: str
    template: str
    levels: tuple[int, ...]
    players: tuple[str, ...]
    first_flagged: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d["players"] = list(self.players)
        return d


@dataclass(frozen=True)
class LevelProgress:
    level: int
    attempts: int
    best_score: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChallengeStore:
    """Append attempts, read progress, keep the universal flags current."""

    def __init__(self, path: str | Path, universal_min_levels: int = 3) -> None:
        if universal_min_levels < 2:
            raise ValueError("universal_min_levels must be at least 2 (one level passed by "
                             f"one template is an ordinary jailbreak), got {universal_min_levels}")
        self.path = Path(path)
        self.universal_min_levels = universal_min_levels
        self._conn = connect(self.path, check_same_thread=False)
        migrate(self._conn, COMPONENT, MIGRATIONS)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def record(self, attempt: Attempt) -> tuple[int, UniversalFlag | None]:
        """Store an attempt; returns its id and the template's universal flag, if the
        template (counting this attempt) has now passed enough distinct levels."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO challenge_attempts(player, level, hazard_id, prompt, template, "
                    "template_hash, reply, detail_score, threshold, passed, blocked_layer, "
                    "bundle_version, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (attempt.player, attempt.level, attempt.hazard_id, attempt.prompt,
                     attempt.template, attempt.template_hash, attempt.reply,
                     attempt.detail_score, attempt.threshold, int(attempt.passed),
                     attempt.blocked_layer, attempt.bundle_version, attempt.created))
                attempt_id = int(cur.lastrowid or 0)
                flag = self._update_flag(attempt) if attempt.passed else None
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return attempt_id, flag

    def _update_flag(self, attempt: Attempt) -> UniversalFlag | None:
        rows = self._conn.execute(
            "SELECT DISTINCT level, player FROM challenge_attempts "
            "WHERE template_hash = ? AND passed = 1", (attempt.template_hash,)).fetchall()
        levels = tuple(sorted({int(r["level"]) for r in rows}))
        if len(levels) < self.universal_min_levels:
            return None
        players = tuple(sorted({str(r["player"]) for r in rows}))
        old = self._conn.execute("SELECT first_flagged FROM challenge_universal "
                                 "WHERE template_hash = ?", (attempt.template_hash,)).fetchone()
        first = str(old["first_flagged"]) if old else attempt.created
        self._conn.execute(
            "INSERT INTO challenge_universal(template_hash, template, levels, players, "
            "first_flagged, updated) VALUES (?,?,?,?,?,?) ON CONFLICT(template_hash) DO UPDATE "
            "SET levels = excluded.levels, players = excluded.players, "
            "updated = excluded.updated",
            (attempt.template_hash, attempt.template, json.dumps(levels), json.dumps(players),
             first, attempt.created))
        return UniversalFlag(attempt.template_hash, attempt.template, levels, players, first,
                             attempt.created)

    def progress(self, player: str, levels: Iterable[int]) -> list[LevelProgress]:
        """Per level: attempts, best detail score and whether any attempt passed."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT level, COUNT(*) AS n, MAX(detail_score) AS best, MAX(passed) AS passed "
                "FROM challenge_attempts WHERE player = ? GROUP BY level", (player,)).fetchall()
        by_level = {int(r["level"]): r for r in rows}
        out = []
        for level in levels:
            r = by_level.get(level)
            out.append(LevelProgress(level, int(r["n"]) if r else 0,
                                     float(r["best"]) if r else None,
                                     bool(r["passed"]) if r else False))
        return out

    def attempts(self, player: str | None = None, limit: int = 100) -> list[Attempt]:
        """The latest attempts, newest first (one player's, or everyone's)."""
        sql = "SELECT * FROM challenge_attempts"
        args: tuple[Any, ...] = ()
        if player is not None:
            sql += " WHERE player = ?"
            args = (player,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_attempt(r) for r in rows]

    def universal(self, player: str | None = None) -> list[UniversalFlag]:
        """Flagged templates, most levels first (only those `player` helped pass, if given)."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM challenge_universal").fetchall()
        flags = [UniversalFlag(str(r["template_hash"]), str(r["template"]),
                               tuple(json.loads(r["levels"])), tuple(json.loads(r["players"])),
                               str(r["first_flagged"]), str(r["updated"])) for r in rows]
        if player is not None:
            flags = [f for f in flags if player in f.players]
        return sorted(flags, key=lambda f: (-len(f.levels), f.first_flagged))


def _attempt(r: sqlite3.Row) -> Attempt:
    return Attempt(player=r["player"], level=int(r["level"]), hazard_id=r["hazard_id"],
                   prompt=r["prompt"], template=r["template"], template_hash=r["template_hash"],
                   reply=r["reply"], detail_score=float(r["detail_score"]),
                   threshold=float(r["threshold"]), passed=bool(r["passed"]),
                   blocked_layer=r["blocked_layer"], bundle_version=r["bundle_version"],
                   created=r["created"])
