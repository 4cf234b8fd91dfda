"""A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries,
`initdb` into a temporary directory, listening on loopback only, removed on stop.

    with TempPostgres() as pg:
        url = pg.create_database("t1")   # postgresql+psycopg://postgres@127.0.0.1:PORT/t1

PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
user (`nobody` by default) through `runuser`; the data directory is made theirs.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (install Debian's `postgresql`)."""


def find_bindir() -> Path:
    """The directory of initdb, pg_ctl and postgres: on PATH, else the newest
    /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if not found:
        raise PostgresUnavailable("no PostgreSQL server binaries (initdb) found on PATH or in "
                                  "/usr/lib/postgresql/*/bin; install them with "
                                  "`apt-get install postgresql`")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """Start with `start()` (or `with`), stop with `stop()`; see the module docstring.

    `fsync=False` (tests) trades crash safety of the server for speed; benchmarks that
    measure durability keep it on.
    """

    def __init__(self, user: str = "nobody", fsync: bool = False,
                 max_connections: int = 200) -> None:
        self.bindir = find_bindir()
        self.run_as = user if os.geteuid() == 0 else None
        self.fsync = fsync
        self.max_connections = max_connections
        self.port = 0
        self.root: Path | None = None

    def _cmd(self, *args: str) -> list[str]:
        cmd = list(args)
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--", *cmd]
        return cmd

    def _run(self, *args: str, timeout: float = 120) -> None:
        r = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({r.returncode}): "
                               f"{(r.stderr or r.stdout).strip()[-800:]}")

    def start(self) -> TempPostgres:
        self.root = Path(tempfile.mkdtemp(prefix="swisscheese-pg-"))
        data = self.root / "data"
        if self.run_as:
            # The server's user must own its directory, and reach it.
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, user=self.run_as)
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C")
        self.port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.root} "
                   f"-c max_connections={self.max_connections} "
                   f"-c fsync={'on' if self.fsync else 'off'} "
                   f"-c synchronous_commit={'on' if self.fsync else 'off'}")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l",
                  str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")
        deadline = time.monotonic() + 30
        while True:  # -w waits for the socket; make sure TCP answers too
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the temporary PostgreSQL server did not listen on "
                                       f"127.0.0.1:{self.port}") from None
                time.sleep(0.1)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: use letters, digits and _ only")
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                          "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                          "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
