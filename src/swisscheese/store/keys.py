"""Client API keys, stored as sha256 hashes.

Keys are long random strings (`new_key`), so a fast hash is enough: nobody can guess a
preimage, and the gateway can hash the presented key on every request. The store never
holds a key in clear; the key id (the first hex digits of the hash) names a key in logs,
decisions and rate limits.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from swisscheese.store.decisions import now_iso

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

KEY_PREFIX = "sk-sc-"
MIN_KEY_CHARS = 16


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id(digest: str) -> str:
    return "key-" + digest[:12]


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def add_key(engine: Engine, key: str, label: str = "") -> str:
    """Store `key` (hashed); returns its id. Adding a key twice is a no-op."""
    from swisscheese.store.engine import upsert
    from swisscheese.store.schema import gateway_keys

    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"API keys must be at least {MIN_KEY_CHARS} characters; "
                         f"generate one with `swisscheese keys new`")
    digest = key_hash(key)
    with engine.begin() as conn:
        upsert(conn, gateway_keys, [{"key_id": key_id(digest), "sha256": digest,
                                     "label": label, "created": now_iso()}], ["sha256"],
               update=False)
    return key_id(digest)


def active_key_hashes(engine: Engine) -> dict[str, str]:
    """sha256 hex -> key id of every key not revoked."""
    from sqlalchemy import select

    from swisscheese.store.schema import gateway_keys as t

    with engine.connect() as conn:
        rows = conn.execute(select(t.c.sha256, t.c.key_id).where(t.c.revoked == 0)).all()
    return {r[0]: r[1] for r in rows}


def revoke_key(engine: Engine, kid: str) -> bool:
    from sqlalchemy import update

    from swisscheese.store.schema import gateway_keys as t

    with engine.begin() as conn:
        return conn.execute(update(t).where(t.c.key_id == kid).values(revoked=1)).rowcount > 0
