"""One labelled example of classifier training data, and its JSONL files.

A record is one conversation (usually a single user request) with its label from the
constitution, where it came from and which split it belongs to. Files are JSON Lines,
one record per line, written atomically so a crash never leaves half a file behind.

    >>> r = Record.make([{"role": "user", "content": "What is 4 plus 5?"}], label=0,
    ...                 category="general-utility", source="world")
    >>> r.text, r.family, r.split
    ('What is 4 plus 5?', 'plain', 'train')
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from swisscheese.data.readers import jsonl_objects
from swisscheese.fileio import atomic_write_text

SPLITS = ("train", "val", "test")
SOURCES = ("world", "llm")
ROLES = ("system", "user", "assistant")
PLAIN = "plain"


class RecordFormatError(ValueError):
    """A malformed row in a records file; the message starts with `FILE:LINE:`.

    A ValueError, so the CLI turns it into one clear line without knowing this class.
    """

    def __init__(self, path: str | os.PathLike[str], line: int, problem: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{self.path}:{line}: {problem}")


def render(messages: Sequence[Mapping[str, str]]) -> str:
    """The text a classifier reads: the request itself, or the whole conversation by turns."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def normalise_text(text: str) -> str:
    """The deduplication key: case and runs of whitespace do not make a new request."""
    return " ".join(text.casefold().split())


def content_id(messages: Sequence[Mapping[str, str]], label: int, category: str,
               family: str) -> str:
    """A stable id from what the record says and means, not from where or when it was made.

    The response and the split are left out, so an id names the same request before and
    after a responder has answered it.
    """
    canonical = json.dumps({"messages": [dict(m) for m in messages], "label": label,
                            "category": category, "family": family},
                           sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    """One labelled conversation of synthetic classifier data."""

    id: str
    text: str  # the request, or the conversation rendered by `render`
    messages: list[dict[str, str]] = field(hash=False)
    response: str | None
    label: int  # 1 harmful, 0 harmless
    category: str  # constitution category id
    family: str = PLAIN  # augmentation or jailbreak family
    source: str = "world"
    hazard_id: str | None = None
    split: str = "train"
    heldout_family: bool = False

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def make(cls, messages: Sequence[Mapping[str, str]], *, label: int, category: str,
             source: str, family: str = PLAIN, hazard_id: str | None = None,
             response: str | None = None, split: str = "train",
             heldout_family: bool = False) -> Record:
        """A record whose `text` and `id` are derived from its messages."""
        msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        return cls(id=content_id(msgs, label, category, family), text=render(msgs),
                   messages=msgs, response=response, label=label, category=category,
                   family=family, source=source, hazard_id=hazard_id, split=split,
                   heldout_family=heldout_family)

    @property
    def key(self) -> str:
        """The deduplication key of this record's text."""
        return normalise_text(self.text)

    def with_(self, **changes: Any) -> Record:
        """A copy with some fields changed (the id stays: it does not cover them)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """A record from a mapping; ValueError says what is missing or wrong."""
        names = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; "
                             f"expected: {', '.join(names)}")
        required = ("id", "text", "messages", "response", "label", "category")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(map(repr, missing))}")
        return cls(**dict(data))


def _problems(r: Record) -> list[str]:
    """What is wrong with a record's values (an empty list when nothing is)."""
    out: list[str] = []
    for name in ("id", "text", "category", "family", "source", "split"):
        if not isinstance(getattr(r, name), str) or not getattr(r, name):
            out.append(f"{name} must be a non-empty string, got {getattr(r, name)!r}")
    # bool is an int subclass; True is not a label.
    if type(r.label) is not int or r.label not in (0, 1):
        out.append(f"label must be 0 (harmless) or 1 (harmful), got {r.label!r}")
    if isinstance(r.source, str) and r.source and r.source not in SOURCES:
        out.append(f"source must be one of {', '.join(SOURCES)}, got {r.source!r}")
    if isinstance(r.split, str) and r.split and r.split not in SPLITS:
        out.append(f"split must be one of {', '.join(SPLITS)}, got {r.split!r}")
    if r.response is not None and not isinstance(r.response, str):
        out.append(f"response must be a string or null, got {type(r.response).__name__}")
    if r.hazard_id is not None and not isinstance(r.hazard_id, str):
        out.append(f"hazard_id must be a string or null, got {type(r.hazard_id).__name__}")
    if not isinstance(r.heldout_family, bool):
        out.append(f"heldout_family must be true or false, got {r.heldout_family!r}")
    if not isinstance(r.messages, list) or not r.messages:
        out.append("messages must be a non-empty list of {role, content}")
    else:
        for i, m in enumerate(r.messages):
            if (not isinstance(m, dict) or set(m) != {"role", "content"}
                    or m["role"] not in ROLES or not isinstance(m["content"], str)):
                out.append(f"messages[{i}] must be {{role: {'|'.join(ROLES)}, "
                           f"content: string}}, got {m!r}")
                break
    return out


# ---- files ---------------------------------------------------------------------------------
def dumps_record(record: Record) -> str:
    """One JSONL line (without the newline); non-ASCII text is kept as it is."""
    return json.dumps(record.to_dict(), ensure_ascii=False)


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Record]) -> int:
    """Write records one per line, atomically; returns how many were written."""
    lines = [dumps_record(r) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Records from a JSONL file; blank lines are skipped.

    Raises RecordFormatError naming the file and line of the first malformed row.
    """
    with open(path, encoding="utf-8") as f:
        for lineno, data in jsonl_objects(f, lambda n, m: RecordFormatError(path, n, m)):
            try:
                yield Record.from_dict(data)
            except (TypeError, ValueError) as e:
                raise RecordFormatError(path, lineno, str(e)) from None


def read_jsonl(path: str | os.PathLike[str]) -> list[Record]:
    """All records of a JSONL file (see `iter_jsonl`)."""
    return list(iter_jsonl(path))
