"""Writing files so that a crash never leaves half of one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks (weights can be large)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def refuse_nonempty_dir(path: str | os.PathLike[str], hint: str = "choose a new directory",
                        *, overwrite: bool = False,
                        error: type[Exception] = ValueError) -> Path:
    """`path` as a Path, checked before any work is done: a file there is always refused,
    a non-empty directory unless `overwrite` (the caller replaces it atomically). Commands
    that write a new directory refuse to mix their output with what is there; `hint` says
    what to do instead."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise error(f"{p}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise error(f"{p}: directory is not empty; refusing to overwrite it ({hint})")
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename,
    so readers see the old file or the whole new one, never a part."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], data: object) -> None:
    """JSON (indented) through `atomic_write_text`; creates the parent directory."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_directory_atomically(target: str | os.PathLike[str],
                               write: Callable[[Path], None]) -> Path:
    """Build a directory with `write(tmp)` in a temporary sibling, then swap it in.

    An existing `target` is moved aside first and put back if the swap fails, so a crash
    at any point leaves the old directory or the whole new one, never a mix. Checks that
    must hold before anything is replaced belong at the end of `write`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        write(tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
