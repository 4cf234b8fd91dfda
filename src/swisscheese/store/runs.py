"""What the stores of resumable runs share (the text red team's campaigns, the T2I red team):
the engine on a SQLite file or a database URL, a lock, and `open_run`, which records a run or
checks that a resumed one keeps its config."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

from swisscheese.store.engine import StoreError, describe


def now() -> str:
    """The time a row is written, in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore:
    """A store of one component's runs; safe to share between threads. Subclasses name the
    component and its runs table (`runs_table`)."""

    component: ClassVar[str]

    def __init__(self, path: str | Path) -> None:
        from swisscheese.store.engine import open_store
        from swisscheese.store.schema import components

        self.path = path if isinstance(path, str) and "://" in path else Path(path)
        self.engine = open_store(self.path, components(self.component))
        self._lock = threading.Lock()

    def runs_table(self) -> Any:
        """The sqlalchemy table of this component's runs (run_id, created, config_hash,
        config)."""
        raise NotImplementedError

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_run(self, run_id: str, config: Mapping[str, Any], config_hash: str) -> bool:
        """Record a run, or check that an existing one was made with the same config.

        Returns True when the run already existed (a resume). A different config under the
        same run id is refused: mixing two configs' results would corrupt both.
        """
        from sqlalchemy import insert, select

        t = self.runs_table()
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(select(t.c.config_hash).where(t.c.run_id == run_id)).first()
            if row is not None:
                if row[0] != config_hash:
                    raise StoreError(
                        f"{describe(self.path)}: run {run_id!r} was started with a different "
                        f"config (hash {row[0][:12]}, now {config_hash[:12]}); choose another "
                        "run name or output directory")
                return True
            conn.execute(insert(t).values(run_id=run_id, created=now(), config_hash=config_hash,
                                          config=json.dumps(config, sort_keys=True)))
            return False
