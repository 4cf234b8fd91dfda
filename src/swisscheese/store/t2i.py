"""The text-to-image red team's tables: runs, every loop query, stage results, images.

A query is keyed by (run, loop, category, seq): the seq-th candidate a loop made for a
category, whether it was blocked by a prompt filter (no image rendered) or rendered and
judged. Loops are deterministic given what they have seen, so a run that crashed resumes
by replaying its stored queries and carrying on from the first missing seq. Later stages
(re-rendering for the measures, transfer, the guard) write their results under
(run, stage, key) and are skipped when present. Images kept for the report are PNG bytes
under (run, key). Each write is one transaction: a crash leaves all of it or none. The
tables are in `swisscheese.store.schema`; the store is a SQLite file or any database URL
(PostgreSQL for several machines), as for the text red team's campaigns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from swisscheese.store.engine import StoreError, upsert
from swisscheese.store.runs import RunStore, now

COMPONENT = "t2i-redteam"


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


class T2IStore(RunStore):
    """The T2I red-team runs of one store (a SQLite file or a database URL); safe to share
    between threads."""

    component: ClassVar[str] = COMPONENT

    def runs_table(self) -> Any:
        from swisscheese.store.schema import t2i_runs

        return t2i_runs

    # ---- queries ------------------------------------------------------------------------
    def add_queries(self, run_id: str, records: Sequence[QueryRecord]) -> None:
        """Write one step's records in one transaction: a crash leaves all or none."""
        from swisscheese.store.schema import t2i_queries

        rows = [{"run_id": run_id, "loop": r.loop, "category": r.category, "seq": r.seq,
                 "step": r.step, "thread": r.thread, "prompt": r.prompt, "parent": r.parent,
                 "blocked": int(r.blocked), "filters": json.dumps(r.filters, sort_keys=True),
                 "images": r.images, "verdicts": json.dumps(r.verdicts, sort_keys=True),
                 "success": int(r.success), "score": r.score, "guidance": r.guidance,
                 "created": now()} for r in records]
        with self._lock, self.engine.begin() as conn:
            upsert(conn, t2i_queries, rows, ["run_id", "loop", "category", "seq"])

    def queries(self, run_id: str, loop: str | None = None,
                category: str | None = None) -> list[QueryRecord]:
        from sqlalchemy import select

        from swisscheese.store.schema import t2i_queries as t

        q = select(t).where(t.c.run_id == run_id)
        if loop is not None:
            q = q.where(t.c.loop == loop)
        if category is not None:
            q = q.where(t.c.category == category)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.loop, t.c.category, t.c.seq)).mappings().all()
        return [QueryRecord(
            loop=r["loop"], category=r["category"], seq=int(r["seq"]), step=int(r["step"]),
            thread=r["thread"], prompt=r["prompt"], parent=r["parent"],
            blocked=bool(r["blocked"]), filters=json.loads(r["filters"]),
            images=int(r["images"]), verdicts=json.loads(r["verdicts"]),
            success=bool(r["success"]), score=r["score"], guidance=r["guidance"])
            for r in rows]

    # ---- stage results and images -------------------------------------------------------
    def stage(self, run_id: str, stage: str) -> dict[str, Any]:
        from sqlalchemy import select

        from swisscheese.store.schema import t2i_stages as t

        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.key, t.c.value)
                                .where(t.c.run_id == run_id, t.c.stage == stage)).all()
        return {r[0]: json.loads(r[1]) for r in rows}

    def put_stage(self, run_id: str, stage: str, items: Mapping[str, Any]) -> None:
        from swisscheese.store.schema import t2i_stages

        rows = [{"run_id": run_id, "stage": stage, "key": k,
                 "value": json.dumps(v, sort_keys=True), "created": now()}
                for k, v in items.items()]
        with self._lock, self.engine.begin() as conn:
            upsert(conn, t2i_stages, rows, ["run_id", "stage", "key"])

    def put_images(self, run_id: str, images: Mapping[str, bytes]) -> None:
        from swisscheese.store.schema import t2i_images

        rows = [{"run_id": run_id, "key": k, "png": v} for k, v in images.items()]
        with self._lock, self.engine.begin() as conn:
            upsert(conn, t2i_images, rows, ["run_id", "key"])

    def images(self, run_id: str, prefix: str = "") -> dict[str, bytes]:
        from sqlalchemy import select

        from swisscheese.store.schema import t2i_images as t

        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.key, t.c.png)
                                .where(t.c.run_id == run_id, t.c.key.startswith(prefix))
                                .order_by(t.c.key)).all()
        return {r[0]: bytes(r[1]) for r in rows}


__all__ = ["QueryRecord", "StoreError", "T2IStore"]
