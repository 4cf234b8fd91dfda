"""Client API keys, stored as sha256 hashes.

Keys are long random strings (`new_key`), so a fast hash is enough: nobody can guess a
preimage, and the gateway can hash the presented key on every request. The store never
holds a key in clear; the key id (the first hex digits of the hash) names a key in logs,
decisions and rate limits.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3

from swisscheese.store.decisions import now_iso
from swisscheese.store.sqlite import migrate

KEYS_COMPONENT = "gateway-keys"
KEY_PREFIX = "sk-sc-"
MIN_KEY_CHARS = 16
KEY_MIGRATIONS = [
    """
    CREATE TABLE gateway_keys (
        key_id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    )
    """,
]


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id(digest: str) -> str:
    return "key-" + digest[:12]


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def add_key(conn: sqlite3.Connection, key: str, label: str = "") -> str:
    """Store `key` (hashed); returns its id. Adding a key twice is a no-op."""
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"API keys must be at least {MIN_KEY_CHARS} characters; "
                         f"generate one with `swisscheese keys new`")
    migrate(conn, KEYS_COMPONENT, KEY_MIGRATIONS)
    digest = key_hash(key)
    conn.execute("INSERT INTO gateway_keys (key_id, sha256, label, created) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT(sha256) DO NOTHING", (key_id(digest), digest, label, now_iso()))
    return key_id(digest)


def active_key_hashes(conn: sqlite3.Connection) -> dict[str, str]:
    """sha256 hex -> key id of every key not revoked."""
    migrate(conn, KEYS_COMPONENT, KEY_MIGRATIONS)
    rows = conn.execute("SELECT sha256, key_id FROM gateway_keys WHERE revoked = 0")
    return {r[0]: r[1] for r in rows}


def revoke_key(conn: sqlite3.Connection, kid: str) -> bool:
    migrate(conn, KEYS_COMPONENT, KEY_MIGRATIONS)
    cur = conn.execute("UPDATE gateway_keys SET revoked = 1 WHERE key_id = ?", (kid,))
    return cur.rowcount > 0
