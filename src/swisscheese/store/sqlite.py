"""Where `StoreError` used to live; the store is now `swisscheese.store.engine` (SQLAlchemy:
a SQLite file by default, any database URL for several processes or machines)."""

from __future__ import annotations

from swisscheese.store.engine import StoreError

__all__ = ["StoreError"]
