"""Reading data files with errors that say where: JSON Lines, CSV and JSON.

Every reader of a user's or a dataset's file goes through these, so a bad row is reported
the same way everywhere: `FILE:LINE: what is wrong`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# In-the-wild jailbreak templates are long; the csv module's default field limit is 128 KiB.
CSV_LIMIT = 1 << 24

ErrorAt = Callable[[int, str], Exception]  # (line number, message) -> the error to raise


def errors_at(path: str | os.PathLike[str], cls: type[Exception] = ValueError) -> ErrorAt:
    """An `ErrorAt` that raises `cls("FILE:LINE: message")`."""
    return lambda line, message: cls(f"{path}:{line}: {message}")


def jsonl_objects(lines: Iterable[str], error: ErrorAt) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines text; a line that is
    not a JSON object raises `error(line, ...)`."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue  # blank lines carry no row; a trailing one is common
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise error(lineno, f"expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_jsonl(path: str | os.PathLike[str], cls: type[Exception] = ValueError
               ) -> list[tuple[int, dict[str, Any]]]:
    """Every object of a UTF-8 JSON Lines file, with its line number; errors are `cls`."""
    p = Path(path)
    try:
        with p.open(encoding="utf-8-sig") as f:
            return list(jsonl_objects(f, errors_at(p, cls)))
    except UnicodeDecodeError as e:
        raise cls(f"{p}: not UTF-8 text ({e.reason})") from None


def read_json(path: str | os.PathLike[str], cls: type[Exception] = ValueError) -> Any:
    """A UTF-8 JSON file's value; errors are `cls` naming the file."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise cls(f"{p}: not readable JSON ({e})") from e


def read_csv(path: str | os.PathLike[str], columns: Sequence[str],
             cls: type[Exception] = ValueError) -> list[dict[str, str]]:
    """Rows of a CSV file that must have `columns`; a missing column raises `cls` naming
    the file and the columns it has."""
    p = Path(path)
    csv.field_size_limit(CSV_LIMIT)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            found = list(reader.fieldnames or [])
            lacking = [c for c in columns if c not in found]
            if lacking:
                raise cls(f"{p}: no column {', '.join(map(repr, lacking))}; "
                          f"found columns: {', '.join(map(repr, found)) or 'none'}")
            return [dict(row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise cls(f"{p}: not a readable UTF-8 CSV file ({e})") from e


def strings_of(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], key: str,
               cls: type[Exception] = ValueError) -> list[str]:
    """The non-blank string `key` of every row (stripped); a row without one raises `cls`."""
    out = []
    for i, row in enumerate(rows):
        v = row.get(key) if isinstance(row, Mapping) else None
        if not isinstance(v, str):
            raise cls(f"{path}: row {i} has no string {key!r}")
        if v.strip():
            out.append(v.strip())
    return out
