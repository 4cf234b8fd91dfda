"""The red team's tables: campaign runs, every attempt, finished units, reference answers.

An attempt is keyed by (run, behaviour, attack, target, variant, sample), so a campaign
that crashed resumes by skipping the keys it already holds. Attempts that ended in an
error are stored too (the report counts them apart) but do not count as finished: a
resumed run tries them again and overwrites them. A unit (behaviour, attack, target) is
marked finished for attacks whose attempts are only known once they ran (searches such as
best-of-N or PAIR); prompt attacks are resumed key by key.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from swisscheese.store.sqlite import StoreError, connect, migrate

COMPONENT = "redteam-campaigns"

MIGRATIONS = [
    """
    CREATE TABLE campaign_runs (
        run_id TEXT PRIMARY KEY,
        created TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TABLE campaign_attempts (
        run_id TEXT NOT NULL REFERENCES campaign_runs(run_id),
        behaviour_id TEXT NOT NULL,
        attack TEXT NOT NULL,
        target TEXT NOT NULL,
        variant TEXT NOT NULL,
        sample INTEGER NOT NULL,
        family TEXT NOT NULL DEFAULT '',
        level INTEGER,
        conversation TEXT NOT NULL,
        response TEXT NOT NULL DEFAULT '',
        score REAL,
        label TEXT,
        reason TEXT,
        error TEXT,
        seconds REAL NOT NULL DEFAULT 0,
        meta TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL,
        PRIMARY KEY (run_id, behaviour_id, attack, target, variant, sample)
    );
    CREATE TABLE campaign_units (
        run_id TEXT NOT NULL REFERENCES campaign_runs(run_id),
        behaviour_id TEXT NOT NULL,
        attack TEXT NOT NULL,
        target TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (run_id, behaviour_id, attack, target)
    );
    CREATE TABLE campaign_references (
        run_id TEXT NOT NULL REFERENCES campaign_runs(run_id),
        hazard_id TEXT NOT NULL,
        answer TEXT NOT NULL,
        PRIMARY KEY (run_id, hazard_id)
    )
    """,
]

Key = tuple[str, str, str, str, int]  # behaviour, attack, target, variant, sample
Unit = tuple[str, str, str]  # behaviour, attack, target


@dataclass(frozen=True)
class AttemptRecord:
    """One stored attempt: its key, what was sent and received, and the verdict."""

    behaviour_id: str
    attack: str
    target: str
    variant: str
    sample: int
    family: str
    level: int | None
    conversation: list[dict[str, str]]
    response: str
    score: float | None
    label: str | None
    reason: str | None
    error: str | None
    seconds: float
    meta: dict[str, Any]

    @property
    def key(self) -> Key:
        return (self.behaviour_id, self.attack, self.target, self.variant, self.sample)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CampaignStore:
    """Append and query one SQLite file of campaigns; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = connect(path)
        migrate(self._conn, COMPONENT, MIGRATIONS)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> CampaignStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- runs ---------------------------------------------------------------------------
    def open_run(self, run_id: str, config: Mapping[str, Any], config_hash: str) -> bool:
        """Record a run, or check that an existing one was made with the same config.

        Returns True when the run already existed (a resume). A different config under the
        same run id is refused: mixing two configs' attempts would corrupt the results.
        """
        with self._lock:
            row = self._conn.execute("SELECT config_hash FROM campaign_runs WHERE run_id = ?",
                                     (run_id,)).fetchone()
            if row is not None:
                if row[0] != config_hash:
                    raise StoreError(
                        f"{self.path}: run {run_id!r} was started with a different config "
                        f"(hash {row[0][:12]}, now {config_hash[:12]}); choose another run "
                        "name or output directory")
                return True
            self._conn.execute("INSERT INTO campaign_runs VALUES (?, ?, ?, ?)",
                               (run_id, _now(), config_hash, json.dumps(config, sort_keys=True)))
            return False

    # ---- references ---------------------------------------------------------------------
    def references(self, run_id: str) -> dict[str, str]:
        rows = self._conn.execute("SELECT hazard_id, answer FROM campaign_references "
                                  "WHERE run_id = ?", (run_id,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def save_references(self, run_id: str, answers: Mapping[str, str]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO campaign_references VALUES (?, ?, ?)",
                    [(run_id, k, v) for k, v in answers.items()])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # ---- attempts -----------------------------------------------------------------------
    def add_attempts(self, run_id: str, records: Sequence[AttemptRecord],
                     unit: Unit | None = None) -> None:
        """Write `records` (and mark `unit` finished) in one transaction: a crash leaves
        all of them or none."""
        rows = [(run_id, r.behaviour_id, r.attack, r.target, r.variant, r.sample, r.family,
                 r.level, json.dumps(r.conversation), r.response, r.score, r.label, r.reason,
                 r.error, r.seconds, json.dumps(r.meta, sort_keys=True, default=str), _now())
                for r in records]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO campaign_attempts VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                if unit is not None:
                    self._conn.execute(
                        "INSERT OR REPLACE INTO campaign_units VALUES (?, ?, ?, ?, ?)",
                        (run_id, *unit, _now()))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def clear_unit(self, run_id: str, unit: Unit) -> None:
        """Drop a unit's attempts before it runs again (a search may take another path)."""
        with self._lock:
            self._conn.execute("DELETE FROM campaign_attempts WHERE run_id = ? AND "
                               "behaviour_id = ? AND attack = ? AND target = ?", (run_id, *unit))

    def finished_keys(self, run_id: str) -> set[Key]:
        """Keys of attempts that ended without an error."""
        rows = self._conn.execute(
            "SELECT behaviour_id, attack, target, variant, sample FROM campaign_attempts "
            "WHERE run_id = ? AND error IS NULL", (run_id,)).fetchall()
        return {(r[0], r[1], r[2], r[3], int(r[4])) for r in rows}

    def finished_units(self, run_id: str) -> set[Unit]:
        """Units whose attempts were all written, with no error among them."""
        rows = self._conn.execute(
            "SELECT u.behaviour_id, u.attack, u.target FROM campaign_units u WHERE u.run_id = ? "
            "AND NOT EXISTS (SELECT 1 FROM campaign_attempts a WHERE a.run_id = u.run_id AND "
            "a.behaviour_id = u.behaviour_id AND a.attack = u.attack AND a.target = u.target "
            "AND a.error IS NOT NULL)", (run_id,)).fetchall()
        return {(r[0], r[1], r[2]) for r in rows}

    def attempts(self, run_id: str, targets: Iterable[str] | None = None) -> list[AttemptRecord]:
        """Every attempt of a run in key order (the order does not depend on timing)."""
        rows = self._conn.execute(
            "SELECT * FROM campaign_attempts WHERE run_id = ? "
            "ORDER BY target, attack, behaviour_id, variant, sample", (run_id,)).fetchall()
        wanted = set(targets) if targets is not None else None
        return [_record(r) for r in rows if wanted is None or r["target"] in wanted]

    def count(self, run_id: str) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM campaign_attempts WHERE run_id = ?",
                                      (run_id,)).fetchone()[0])


def _record(r: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(
        behaviour_id=r["behaviour_id"], attack=r["attack"], target=r["target"],
        variant=r["variant"], sample=int(r["sample"]), family=r["family"], level=r["level"],
        conversation=json.loads(r["conversation"]), response=r["response"], score=r["score"],
        label=r["label"], reason=r["reason"], error=r["error"], seconds=float(r["seconds"]),
        meta=json.loads(r["meta"]))
