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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from swisscheese.store.runs import RunStore, now

COMPONENT = "redteam-campaigns"

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


class CampaignStore(RunStore):
    """Append and query the campaigns of one store (a SQLite file or a database URL);
    safe to share between threads."""

    component: ClassVar[str] = COMPONENT

    def runs_table(self) -> Any:
        from swisscheese.store.schema import campaign_runs

        return campaign_runs

    # ---- references ---------------------------------------------------------------------
    def references(self, run_id: str) -> dict[str, str]:
        from sqlalchemy import select

        from swisscheese.store.schema import campaign_references as t

        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.hazard_id, t.c.answer)
                                .where(t.c.run_id == run_id)).all()
        return {r[0]: r[1] for r in rows}

    def save_references(self, run_id: str, answers: Mapping[str, str]) -> None:
        from swisscheese.store.engine import upsert
        from swisscheese.store.schema import campaign_references as t

        with self._lock, self.engine.begin() as conn:
            upsert(conn, t, [{"run_id": run_id, "hazard_id": k, "answer": v}
                             for k, v in answers.items()], ["run_id", "hazard_id"])

    # ---- attempts -----------------------------------------------------------------------
    def add_attempts(self, run_id: str, records: Sequence[AttemptRecord],
                     unit: Unit | None = None) -> None:
        """Write `records` (and mark `unit` finished) in one transaction: a crash leaves
        all of them or none."""
        from swisscheese.store.engine import upsert
        from swisscheese.store.schema import campaign_attempts, campaign_units

        rows = [{"run_id": run_id, "behaviour_id": r.behaviour_id, "attack": r.attack,
                 "target": r.target, "variant": r.variant, "sample": r.sample,
                 "family": r.family, "level": r.level,
                 "conversation": json.dumps(r.conversation), "response": r.response,
                 "score": r.score, "label": r.label, "reason": r.reason, "error": r.error,
                 "seconds": r.seconds, "meta": json.dumps(r.meta, sort_keys=True, default=str),
                 "created": now()} for r in records]
        with self._lock, self.engine.begin() as conn:
            upsert(conn, campaign_attempts, rows, _ATTEMPT_KEY)
            if unit is not None:
                upsert(conn, campaign_units, [{"run_id": run_id, "behaviour_id": unit[0],
                                               "attack": unit[1], "target": unit[2],
                                               "created": now()}],
                       ["run_id", "behaviour_id", "attack", "target"])

    def clear_unit(self, run_id: str, unit: Unit) -> None:
        """Drop a unit's attempts before it runs again (a search may take another path)."""
        from sqlalchemy import delete

        from swisscheese.store.schema import campaign_attempts as t

        with self._lock, self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.run_id == run_id, t.c.behaviour_id == unit[0],
                                         t.c.attack == unit[1], t.c.target == unit[2]))

    def finished_keys(self, run_id: str) -> set[Key]:
        """Keys of attempts that ended without an error."""
        from sqlalchemy import select

        from swisscheese.store.schema import campaign_attempts as t

        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.behaviour_id, t.c.attack, t.c.target, t.c.variant,
                                       t.c.sample)
                                .where(t.c.run_id == run_id, t.c.error.is_(None))).all()
        return {(r[0], r[1], r[2], r[3], int(r[4])) for r in rows}

    def finished_units(self, run_id: str) -> set[Unit]:
        """Units whose attempts were all written, with no error among them."""
        from sqlalchemy import and_, exists, select

        from swisscheese.store.schema import campaign_attempts as a
        from swisscheese.store.schema import campaign_units as u

        failed = exists().where(and_(a.c.run_id == u.c.run_id,
                                     a.c.behaviour_id == u.c.behaviour_id,
                                     a.c.attack == u.c.attack, a.c.target == u.c.target,
                                     a.c.error.is_not(None)))
        with self.engine.connect() as conn:
            rows = conn.execute(select(u.c.behaviour_id, u.c.attack, u.c.target)
                                .where(u.c.run_id == run_id, ~failed)).all()
        return {(r[0], r[1], r[2]) for r in rows}

    def attempts(self, run_id: str, targets: Iterable[str] | None = None) -> list[AttemptRecord]:
        """Every attempt of a run in key order (the order does not depend on timing)."""
        from sqlalchemy import select

        from swisscheese.store.schema import campaign_attempts as t

        q = select(t).where(t.c.run_id == run_id).order_by(
            t.c.target, t.c.attack, t.c.behaviour_id, t.c.variant, t.c.sample)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        wanted = set(targets) if targets is not None else None
        return [_record(r) for r in rows if wanted is None or r["target"] in wanted]

    def count(self, run_id: str) -> int:
        from sqlalchemy import func, select

        from swisscheese.store.schema import campaign_attempts as t

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t)
                                    .where(t.c.run_id == run_id)).scalar_one())


_ATTEMPT_KEY = ["run_id", "behaviour_id", "attack", "target", "variant", "sample"]


def _record(r: Mapping[Any, Any]) -> AttemptRecord:
    return AttemptRecord(
        behaviour_id=r["behaviour_id"], attack=r["attack"], target=r["target"],
        variant=r["variant"], sample=int(r["sample"]), family=r["family"], level=r["level"],
        conversation=json.loads(r["conversation"]), response=r["response"], score=r["score"],
        label=r["label"], reason=r["reason"], error=r["error"], seconds=float(r["seconds"]),
        meta=json.loads(r["meta"]))
