"""The challenge page's tables: every attempt, and the templates flagged as universal.

An attempt row keeps what a reviewer needs to replay it (player, level, prompt, reply,
the grader's detail score against the level's threshold, the layer that blocked, the
bundle version). Each prompt is also kept as its template (the level's question replaced
by a slot, see `swisscheese.serve.challenge.template`), so that one template passing
several levels is visible: that is the universal jailbreak the challenge is hunting.

A `ChallengeStore` holds one engine (a SQLite file or a database URL) shared by the
worker threads of the web server; each method runs in one transaction.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

COMPONENT = "challenge"


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
        self.path = path if isinstance(path, str) and "://" in path else Path(path)
        self.universal_min_levels = universal_min_levels
        from swisscheese.store.engine import open_store
        from swisscheese.store.schema import components

        self.engine = open_store(self.path, components(COMPONENT))
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.engine.dispose()

    def record(self, attempt: Attempt) -> tuple[int, UniversalFlag | None]:
        """Store an attempt; returns its id and the template's universal flag, if the
        template (counting this attempt) has now passed enough distinct levels."""
        from sqlalchemy import insert

        from swisscheese.store.schema import challenge_attempts as t

        values = {k: v for k, v in asdict(attempt).items()}
        values["passed"] = int(attempt.passed)
        with self._lock, self.engine.begin() as conn:
            attempt_id = int(conn.execute(insert(t).values(**values).returning(t.c.id))
                             .scalar_one())
            flag = self._update_flag(conn, attempt) if attempt.passed else None
        return attempt_id, flag

    def _update_flag(self, conn: Connection, attempt: Attempt) -> UniversalFlag | None:
        from sqlalchemy import select

        from swisscheese.store.engine import upsert
        from swisscheese.store.schema import challenge_attempts as a
        from swisscheese.store.schema import challenge_universal as u

        rows = conn.execute(select(a.c.level, a.c.player).distinct().where(
            a.c.template_hash == attempt.template_hash, a.c.passed == 1)).all()
        levels = tuple(sorted({int(r[0]) for r in rows}))
        if len(levels) < self.universal_min_levels:
            return None
        players = tuple(sorted({str(r[1]) for r in rows}))
        old = conn.execute(select(u.c.first_flagged)
                           .where(u.c.template_hash == attempt.template_hash)).first()
        first = str(old[0]) if old else attempt.created
        upsert(conn, u, [{"template_hash": attempt.template_hash, "template": attempt.template,
                          "levels": json.dumps(levels), "players": json.dumps(players),
                          "first_flagged": first, "updated": attempt.created}],
               ["template_hash"])
        return UniversalFlag(attempt.template_hash, attempt.template, levels, players, first,
                             attempt.created)

    def progress(self, player: str, levels: Iterable[int]) -> list[LevelProgress]:
        """Per level: attempts, best detail score and whether any attempt passed."""
        from sqlalchemy import func, select

        from swisscheese.store.schema import challenge_attempts as t

        q = (select(t.c.level, func.count().label("n"), func.max(t.c.detail_score).label("best"),
                    func.max(t.c.passed).label("passed"))
             .where(t.c.player == player).group_by(t.c.level))
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
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
        from sqlalchemy import select

        from swisscheese.store.schema import challenge_attempts as t

        q = select(t)
        if player is not None:
            q = q.where(t.c.player == player)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.id.desc()).limit(limit)).mappings().all()
        return [_attempt(r) for r in rows]

    def attempt(self, attempt_id: int) -> tuple[Attempt, int] | None:
        """One attempt by id (with its id), or None."""
        from sqlalchemy import select

        from swisscheese.store.schema import challenge_attempts as t

        with self.engine.connect() as conn:
            r = conn.execute(select(t).where(t.c.id == attempt_id)).mappings().first()
        return (_attempt(r), int(r["id"])) if r is not None else None

    def operator_stats(self, levels: Iterable[int]) -> dict[str, Any]:
        """What the operators watch: players and attempts in all, and per level the
        attempts, the players, the passes, and the effort before the first pass (the
        attempts made on the level before it, and the seconds from its first attempt)."""
        from sqlalchemy import func, select

        from swisscheese.store.schema import challenge_attempts as t

        per_level = (select(t.c.level, func.count().label("attempts"),
                            func.count(t.c.player.distinct()).label("players"),
                            func.sum(t.c.passed).label("passes"),
                            func.max(t.c.detail_score).label("best"),
                            func.min(t.c.id).label("first_id"),
                            func.min(t.c.created).label("first_attempt"))
                     .group_by(t.c.level))
        first_pass = (select(t.c.level, func.min(t.c.id).label("pass_id"))
                      .where(t.c.passed == 1).group_by(t.c.level))
        with self.engine.connect() as conn:
            totals = conn.execute(select(func.count(), func.count(t.c.player.distinct()),
                                         func.coalesce(func.sum(t.c.passed), 0))).one()
            rows = {int(r["level"]): r for r in conn.execute(per_level).mappings().all()}
            passes = {int(r[0]): int(r[1]) for r in conn.execute(first_pass).all()}
            firsts = {}
            for level, pid in passes.items():
                created, before = conn.execute(select(
                    select(t.c.created).where(t.c.id == pid).scalar_subquery(),
                    select(func.count()).where(t.c.level == level, t.c.id < pid)
                    .scalar_subquery())).one()
                firsts[level] = (str(created), int(before))
            players_passed: dict[Any, Any] = dict(conn.execute(
                select(t.c.level, func.count(t.c.player.distinct())).where(t.c.passed == 1)
                .group_by(t.c.level)).all())
        return {"players": int(totals[1]), "attempts": int(totals[0]),
                "passes": int(totals[2]),
                "levels": [_level_stats(n, rows.get(n), firsts.get(n),
                                        int(players_passed.get(n, 0))) for n in levels],
                "universal": [f.to_dict() | {"players": len(f.players)}
                              for f in self.universal()]}

    def universal(self, player: str | None = None) -> list[UniversalFlag]:
        """Flagged templates, most levels first (only those `player` helped pass, if given)."""
        from sqlalchemy import select

        from swisscheese.store.schema import challenge_universal as t

        with self.engine.connect() as conn:
            rows = conn.execute(select(t)).mappings().all()
        flags = [UniversalFlag(str(r["template_hash"]), str(r["template"]),
                               tuple(json.loads(r["levels"])), tuple(json.loads(r["players"])),
                               str(r["first_flagged"]), str(r["updated"])) for r in rows]
        if player is not None:
            flags = [f for f in flags if player in f.players]
        return sorted(flags, key=lambda f: (-len(f.levels), f.first_flagged))


def _seconds_between(start: str, end: str) -> float:
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start))
                 .total_seconds(), 3)


def _level_stats(level: int, row: Mapping[Any, Any] | None, first: tuple[str, int] | None,
                 players_passed: int) -> dict[str, Any]:
    if row is None:
        return {"level": level, "attempts": 0, "players": 0, "passes": 0,
                "players_passed": 0, "best_score": None, "first_attempt": None,
                "first_pass": None, "attempts_before_first_pass": None,
                "seconds_to_first_pass": None}
    return {"level": level, "attempts": int(row["attempts"]), "players": int(row["players"]),
            "passes": int(row["passes"] or 0), "players_passed": players_passed,
            "best_score": float(row["best"]), "first_attempt": str(row["first_attempt"]),
            "first_pass": first[0] if first else None,
            "attempts_before_first_pass": first[1] if first else None,
            "seconds_to_first_pass": _seconds_between(str(row["first_attempt"]), first[0])
            if first else None}


def _attempt(r: Mapping[Any, Any]) -> Attempt:
    return Attempt(player=r["player"], level=int(r["level"]), hazard_id=r["hazard_id"],
                   prompt=r["prompt"], template=r["template"], template_hash=r["template_hash"],
                   reply=r["reply"], detail_score=float(r["detail_score"]),
                   threshold=float(r["threshold"]), passed=bool(r["passed"]),
                   blocked_layer=r["blocked_layer"], bundle_version=r["bundle_version"],
                   created=r["created"])
