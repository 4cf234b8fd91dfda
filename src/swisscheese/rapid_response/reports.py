"""Reported jailbreaks: what a red team, a bug bounty or the challenge page hands to rapid
response. JSONL with `prompt` and optional `response`, or plain text, one prompt per line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from swisscheese.data.readers import errors_at, jsonl_objects

JSONL_SUFFIXES = (".jsonl", ".json-lines", ".jsonlines", ".ndjson")


class JailbreakFileError(ValueError):
    """A malformed jailbreaks file; the message starts with FILE:LINE: when a line is bad."""


@dataclass(frozen=True)
class ReportedJailbreak:
    """One reported attack: the prompt that got through, and the reply if known."""

    prompt: str
    response: str | None = None
    line: int = 0


def read_jailbreaks(path: str | os.PathLike[str]) -> list[ReportedJailbreak]:
    """The reports in `path`: JSONL (`.jsonl`, `.ndjson`, ... or a file whose every line
    is a JSON object) with a non-empty string `prompt` and an optional string `response`,
    or plain text with one prompt per line. Blank lines are skipped. Any bad line raises
    JailbreakFileError naming FILE:LINE and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise JailbreakFileError(f"{p}: no such file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise JailbreakFileError(f"{p}:{line}: not UTF-8 text") from None
    lines = [(i, s) for i, s in enumerate(text.splitlines(), start=1) if s.strip()]
    if not lines:
        raise JailbreakFileError(f"{p}: no jailbreaks in the file (it is empty)")
    is_jsonl = (p.suffix.lower() in JSONL_SUFFIXES
                or all(s.lstrip().startswith("{") for _, s in lines))
    if not is_jsonl:
        return [ReportedJailbreak(s.strip(), None, i) for i, s in lines]
    out = []
    for i, row in jsonl_objects(text.splitlines(), errors_at(p, JailbreakFileError)):
        where = f"{p}:{i}"
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            got = "no 'prompt' field" if "prompt" not in row else f"'prompt' is {prompt!r}"
            raise JailbreakFileError(f"{where}: needs a non-empty string 'prompt' ({got}; "
                                     f"fields found: {', '.join(map(repr, row)) or 'none'})")
        response = row.get("response")
        if response is not None and not isinstance(response, str):
            raise JailbreakFileError(f"{where}: 'response' must be a string or null, got "
                                     f"{type(response).__name__}")
        out.append(ReportedJailbreak(prompt, response if response and response.strip()
                                     else None, i))
    return out
