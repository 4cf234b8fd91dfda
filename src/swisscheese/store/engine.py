"""The store every component shares, on SQLAlchemy 2 Core: SQLite by default, PostgreSQL
(or another SQLAlchemy URL) for several processes or machines.

`open_store(target, components)` takes a file path (SQLite, the embedded default) or a
database URL (`postgresql+psycopg://user:pass@host/db`), checks that the database can be
reached, and brings the components' tables up to date. Each component (gateway
decisions, keys, campaigns, ...) owns its tables (`swisscheese.store.schema`) and lists
its migrations, oldest first; a migration is a function of a connection written with
SQLAlchemy constructs, so the same path runs on every dialect. The versions live in
`schema_versions` (the same table, component names and version numbers as the SQLite
store of earlier releases, whose files open unchanged).

Nothing is written before every component's version has been checked: a database
written by a newer swisscheese is refused as a whole, and one that cannot be reached
gives a one-line error that names it (without its password).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection, Engine

Migration = Callable[["Connection"], None]
# component name -> its migrations, oldest first
Components = Mapping[str, Sequence[Migration]]


class StoreError(RuntimeError):
    """The store cannot be opened or is from an incompatible version; says which one."""


def is_url(target: str | Path) -> bool:
    """A database URL (`dialect+driver://...`) rather than a SQLite file path."""
    return isinstance(target, str) and "://" in target


def describe(target: str | Path | Engine) -> str:
    """How to name the store in a message: the path, or the URL without its password."""
    from sqlalchemy.engine import Engine, make_url

    if isinstance(target, Engine):
        url = target.url
        return url.database or ":memory:" if url.get_backend_name() == "sqlite" else \
            url.render_as_string(hide_password=True)
    if is_url(target):
        try:
            return make_url(str(target)).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - a malformed URL is named as given, minus nothing
            return "<malformed database URL>"
    return str(target)


def _sqlite_engine(path: Path) -> Engine:
    from sqlalchemy import create_engine, event

    if path.exists() and path.is_dir():
        raise StoreError(f"{path} is a directory, not a SQLite database file")
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30.0,
                                                               "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling is off; SQLAlchemy's BEGIN below takes over.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL: readers (monitoring, reports) work while a gateway or campaign writes.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE: a transaction that reads then writes takes the write lock first, so
        # two writers queue on the busy timeout instead of one failing at its upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _url_engine(url: str) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        backend = url.split("://", 1)[0].split("+", 1)[0]
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if backend == "postgresql":
            # A database that is down must fail the start, not hang it.
            kwargs.update(connect_args={"connect_timeout": 5}, pool_size=4, max_overflow=16)
        return create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise StoreError(f"--store {describe(url)}: not a usable database URL ({e}); give a "
                         "SQLite file path or a URL like postgresql+psycopg://user@host/db"
                         ) from None


def make_engine(target: str | Path) -> Engine:
    """An engine for a SQLite path or a database URL, checked to be reachable."""
    from sqlalchemy.exc import SQLAlchemyError

    engine = _url_engine(str(target)) if is_url(target) else _sqlite_engine(Path(target))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").fetchone()
            else:
                conn.exec_driver_sql("SELECT 1").fetchone()
    except SQLAlchemyError as e:
        engine.dispose()
        reason = " ".join(str(getattr(e, "orig", None) or e).split())[:300]
        if engine.dialect.name == "sqlite":
            raise StoreError(f"{target}: not a usable SQLite database ({reason})") from None
        raise StoreError(f"cannot reach the store at {describe(target)}: {reason}") from None
    return engine


def open_store(target: str | Path | Engine, components: Components) -> Engine:
    """An engine on `target` with `components`' tables at their newest versions."""
    from sqlalchemy.engine import Engine

    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        migrate(engine, components)
    except BaseException:
        if not isinstance(target, Engine):
            engine.dispose()
        raise
    return engine


def _versions(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    from sqlalchemy import select

    from swisscheese.store.versions import schema_versions as sv

    rows = conn.execute(select(sv.c.component, sv.c.version)
                        .where(sv.c.component.in_(list(names)))).all()
    return {str(r[0]): int(r[1]) for r in rows}


def migrate(engine: Engine, components: Components) -> dict[str, int]:
    """Bring every component to its newest migration in one transaction; returns the
    versions now recorded. Safe to call on every open, from several processes at once."""
    from sqlalchemy import insert, update

    from swisscheese.store.versions import schema_versions

    with _LOCK, engine.begin() as conn:
        _serialize(conn)
        schema_versions.create(conn, checkfirst=True)
        have = _versions(conn, components)
        for name, steps in components.items():
            if have.get(name, 0) > len(steps):
                raise StoreError(
                    f"{describe(engine)}: the store's {name!r} tables are at version "
                    f"{have[name]}, newer than this swisscheese knows ({len(steps)}); "
                    "upgrade swisscheese")
        for name, steps in components.items():
            start = have.get(name, 0)
            for version in range(start + 1, len(steps) + 1):
                steps[version - 1](conn)
            if start == 0 and steps:
                conn.execute(insert(schema_versions).values(component=name, version=len(steps)))
            elif start < len(steps):
                conn.execute(update(schema_versions).where(schema_versions.c.component == name)
                             .values(version=len(steps)))
    return {name: len(steps) for name, steps in components.items()}


def _serialize(conn: Connection) -> None:
    """Make concurrent migrations of one database (gateway workers starting together)
    take turns: SQLite's BEGIN IMMEDIATE already does; PostgreSQL takes an advisory lock
    that ends with the transaction."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7164210531)")


def create_tables(*tables: Table) -> Migration:
    """A migration that creates `tables` (and their indexes)."""
    def step(conn: Connection) -> None:
        for t in tables:
            t.create(conn, checkfirst=True)

    return step


def upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
           keys: Sequence[str], *, update: bool = True) -> None:
    """Insert `rows`; a row whose `keys` exist already replaces the old one (or, with
    update=False, is skipped)."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        # Both dialects spell an upsert the same way, on their own Insert class.
        upsert: Any = (sqlite if dialect == "sqlite" else postgresql).insert
        stmt = upsert(table)
        cols = [c.name for c in table.columns if c.name not in keys and c.name in rows[0]]
        if update and cols:
            stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                              set_={c: stmt.excluded[c] for c in cols})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        conn.execute(stmt, list(rows))
        return
    # Other dialects: per row, in the caller's transaction.
    from sqlalchemy import and_, delete, insert, select

    for row in rows:
        where = and_(*(table.c[k] == row[k] for k in keys))
        if conn.execute(select(table.c[keys[0]]).where(where)).first() is not None:
            if not update:
                continue
            conn.execute(delete(table).where(where))
        conn.execute(insert(table).values(**row))


# Migrations of several components may run from threads of one process at the same time.
_LOCK = threading.Lock()
