"""Reported jailbreaks: what players and operators say got through, until it is patched.

A report comes from the challenge page's report button (the attempt's prompt and the reply
the player saw, taken from the attempt row, so a report cannot claim a reply the model
never gave) or from the gateway's admin API (any prompt, optionally a reply). Rapid
response reads the open reports, patches the bundle against them, deploys it and marks
them `patched` with the new bundle version; a report an operator dismisses is `rejected`.

    reports = ReportStore("runs/gateway/gateway.sqlite")
    rid = reports.add(NewReport(source="admin", prompt="...", reporter="ops"))
    open_ = reports.query(status="open")
    reports.resolve([rid], "patched", patched_version=3)

Like the other stores, one engine (a SQLite file or a database URL) shared by the
threads of a server; each method is one transaction.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

COMPONENT = "jailbreak-reports"
STATUSES = ("open", "patched", "rejected")
SOURCES = ("challenge", "admin")
MAX_PROMPT_CHARS = 32_000
MAX_NOTE_CHARS = 2_000


class ReportError(ValueError):
    """A report or a query the store refuses; the message names the field."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class NewReport:
    """A report as it comes in. `conversation` is the whole conversation when the attack
    took several turns (the prompt is then its last user turn)."""

    source: str
    prompt: str
    reporter: str | None = None
    response: str | None = None
    conversation: Sequence[Mapping[str, str]] = ()
    note: str = ""
    level: int | None = None
    hazard_id: str | None = None
    attempt_id: int | None = None
    detail_score: float | None = None
    bundle_version: int | None = None
    created: str = field(default_factory=now_iso)

    def check(self) -> None:
        if self.source not in SOURCES:
            raise ReportError(f"source must be one of {', '.join(SOURCES)}, got "
                              f"{self.source!r}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ReportError("prompt: a report needs the non-empty prompt that got through")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise ReportError(f"prompt: {len(self.prompt)} characters, the limit is "
                              f"{MAX_PROMPT_CHARS}")
        if self.response is not None and not isinstance(self.response, str):
            raise ReportError("response: must be a string or null")
        if not isinstance(self.note, str) or len(self.note) > MAX_NOTE_CHARS:
            raise ReportError(f"note: must be a string of at most {MAX_NOTE_CHARS} characters")
        for m in self.conversation:
            if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) \
                    or not isinstance(m.get("content"), str):
                raise ReportError("conversation: every message needs string 'role' and "
                                  "'content'")


@dataclass(frozen=True)
class StoredReport:
    """A report as the store keeps it."""

    id: int
    created: str
    source: str
    reporter: str | None
    prompt: str
    response: str | None
    conversation: list[dict[str, str]]
    note: str
    level: int | None
    hazard_id: str | None
    attempt_id: int | None
    detail_score: float | None
    bundle_version: int | None
    status: str
    patched_version: int | None
    resolved: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReportStore:
    """Add, list and resolve reported jailbreaks (see the module docstring)."""

    def __init__(self, target: str | Path | Engine) -> None:
        from sqlalchemy.engine import Engine

        from swisscheese.store.engine import open_store
        from swisscheese.store.schema import components

        self._owns = not isinstance(target, Engine)
        if isinstance(target, str) and "://" not in target:
            target = Path(target)
        self.engine = open_store(target, components(COMPONENT))
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owns:
            self.engine.dispose()

    def add(self, report: NewReport) -> tuple[int, bool]:
        """Store a report; returns (its id, whether it is new). Reporting one challenge
        attempt twice returns the first report's id."""
        from sqlalchemy import insert, select

        from swisscheese.store.schema import jailbreak_reports as t

        report.check()
        values = asdict(report)
        values["conversation"] = json.dumps([dict(m) for m in report.conversation])
        with self._lock, self.engine.begin() as conn:
            if report.attempt_id is not None:
                old = conn.execute(select(t.c.id).where(
                    t.c.attempt_id == report.attempt_id)).first()
                if old is not None:
                    return int(old[0]), False
            rid = conn.execute(insert(t).values(**values).returning(t.c.id)).scalar_one()
        return int(rid), True

    def query(self, status: str | None = None, after_id: int = 0, limit: int = 1000,
             ids: Sequence[int] | None = None) -> list[StoredReport]:
        """Reports oldest first: those with `status` (all when None), with an id above
        `after_id`, or exactly `ids`."""
        from sqlalchemy import select

        from swisscheese.store.schema import jailbreak_reports as t

        if status is not None and status not in STATUSES:
            raise ReportError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if limit < 1:
            raise ReportError(f"limit must be at least 1, got {limit}")
        q = select(t).where(t.c.id > after_id)
        if status is not None:
            q = q.where(t.c.status == status)
        if ids is not None:
            q = q.where(t.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.id).limit(limit)).mappings().all()
        return [_stored(r) for r in rows]

    def resolve(self, ids: Sequence[int], status: str,
                patched_version: int | None = None) -> int:
        """Mark reports `patched` (with the bundle version that closed them) or
        `rejected`; returns how many exist. Unknown ids are an error, nothing changed."""
        from sqlalchemy import func, select, update

        from swisscheese.store.schema import jailbreak_reports as t

        if status not in STATUSES or status == "open":
            raise ReportError(f"status must be 'patched' or 'rejected', got {status!r}")
        if status == "patched" and patched_version is None:
            raise ReportError("patched_version: a patched report needs the bundle version "
                              "that closed it")
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            raise ReportError("ids: give at least one report id")
        with self._lock, self.engine.begin() as conn:
            found = conn.execute(select(func.count()).where(t.c.id.in_(wanted))).scalar_one()
            if int(found) != len(wanted):
                have = {int(r[0]) for r in conn.execute(select(t.c.id).where(
                    t.c.id.in_(wanted))).all()}
                missing = [i for i in wanted if i not in have]
                raise ReportError(f"ids: no report {', '.join(map(str, missing))}")
            conn.execute(update(t).where(t.c.id.in_(wanted)).values(
                status=status, patched_version=patched_version, resolved=now_iso()))
        return len(wanted)

    def counts(self) -> dict[str, int]:
        """Reports per status (every status named, zero included)."""
        from sqlalchemy import func, select

        from swisscheese.store.schema import jailbreak_reports as t

        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.status, func.count()).group_by(t.c.status)).all()
        out = dict.fromkeys(STATUSES, 0)
        out.update({str(s): int(n) for s, n in rows})
        return out


def _stored(r: Mapping[Any, Any]) -> StoredReport:
    return StoredReport(
        id=int(r["id"]), created=r["created"], source=r["source"], reporter=r["reporter"],
        prompt=r["prompt"], response=r["response"],
        conversation=json.loads(r["conversation"] or "[]"), note=r["note"] or "",
        level=r["level"], hazard_id=r["hazard_id"], attempt_id=r["attempt_id"],
        detail_score=r["detail_score"], bundle_version=r["bundle_version"],
        status=r["status"], patched_version=r["patched_version"], resolved=r["resolved"])
