"""Jailbreak templates read from a file: each template has a `{request}` slot, and each
becomes one variant (one candidate universal jailbreak) of the attack.

The file shapes the red-team tools use are read as they are:

- JSON (`.json`): one template string (as a garak DAN file holds), a list of strings, a
  list of objects with `template` (or `prompt`, `value`, `text`) and an optional `name`,
  or an object mapping name -> template;
- YAML (`.yaml`, `.yml`): the same shapes, and PyRIT's jailbreak files: an object (or a
  list of objects) with `value` and `parameters`, whose slot is the Jinja placeholder of
  its one parameter (`{{ prompt }}`);
- CSV (`.csv`): one template per row in the `column` column (default: the first of
  `template`, `prompt`, `text`), the name in `name_column` (default: `name`, else the row
  number). The in-the-wild templates of `../shared/datasets/in_the_wild` mark the place of
  the request with "[INSERT PROMPT HERE]": give `slot: "[INSERT PROMPT HERE]"`, or
  `missing_slot: append` to put the request after templates that have no slot.

A template without the slot, or a row that is not a template, is an error naming the
file, the row and what is wrong (`TemplateFileError`), unless `missing_slot` says to skip
or append. Every template is read and checked when the attack is built, so a bad row
fails a campaign before anything is sent. The slot is replaced literally
(`str.replace`), so the other braces of a template in the wild stay as they are.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from swisscheese.data.readers import CSV_LIMIT
from swisscheese.redteam.attacks.prompting import DEFAULT_MAX_NEW_TOKENS, Probe, PromptAttack, user
from swisscheese.redteam.base import Behaviour

SLOT = "{request}"
MISSING_SLOT = ("error", "skip", "append")
TEMPLATE_KEYS = ("template", "prompt", "value", "text")
CSV_COLUMNS = ("template", "prompt", "text")
# The templates this project ships (its own wording; they name no real-world harm).
DEFAULT_FILE = "templates.yaml"
Row = tuple[int, str, str, str]  # (row number from 1, name, template text, slot)


class TemplateFileError(ValueError):
    """A template file that cannot be used; names the file, the row and what is wrong."""


@dataclass(frozen=True)
class Template:
    """One template of a file: its name (the attack's variant), its text and its slot
    ("" for a template without one, which the request follows)."""

    name: str
    text: str
    slot: str
    row: int

    def fill(self, request: str) -> str:
        if self.slot:
            return self.text.replace(self.slot, request)
        return f"{self.text.rstrip()}\n\n{request}"


def default_file() -> Path:
    return Path(str(resources.files("swisscheese.redteam.attacks") / DEFAULT_FILE))


def _text_of(where: str, raw: Any) -> tuple[str | None, str, list[str]]:
    """(name, template text, Jinja parameters) of one entry of a JSON or YAML file."""
    if isinstance(raw, str):
        return None, raw, []
    if not isinstance(raw, dict):
        raise TemplateFileError(f"{where}: expected a template string or an object with "
                                f"'template', got {type(raw).__name__}")
    key = next((k for k in TEMPLATE_KEYS if k in raw), None)
    if key is None:
        raise TemplateFileError(f"{where}: no template field (one of "
                                f"{', '.join(TEMPLATE_KEYS)}); fields found: "
                                f"{', '.join(map(str, raw)) or 'none'}")
    text = raw[key]
    if not isinstance(text, str):
        raise TemplateFileError(f"{where}: {key!r} must be a string, got "
                                f"{type(text).__name__}")
    params = raw.get("parameters") or []
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise TemplateFileError(f"{where}: 'parameters' must be a list of names")
    name = raw.get("name", raw.get("id"))
    return (None if name is None else str(name)), text, params


def _entries(path: Path, data: Any) -> list[tuple[int, str | None, Any]]:
    """(row number from 1, name from a mapping, raw entry) of a parsed JSON/YAML file."""
    if isinstance(data, str):
        return [(1, None, data)]
    if isinstance(data, list):
        return [(i, None, e) for i, e in enumerate(data, start=1)]
    if isinstance(data, dict):
        if any(k in data for k in TEMPLATE_KEYS):  # one PyRIT-style template object
            return [(1, None, data)]
        if isinstance(data.get("templates"), list):
            return [(i, None, e) for i, e in enumerate(data["templates"], start=1)]
        return [(i, str(k), v) for i, (k, v) in enumerate(data.items(), start=1)]
    raise TemplateFileError(f"{path}: expected a template, a list of templates or an object "
                            f"of name -> template, got {type(data).__name__}")


def _jinja_slot(text: str, params: list[str]) -> str | None:
    """The placeholder of a PyRIT template's one parameter as it is written in `text`."""
    if len(params) != 1:
        return None
    m = re.search(r"\{\{\s*" + re.escape(params[0]) + r"\s*\}\}", text)
    return m.group(0) if m else None


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise TemplateFileError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise TemplateFileError(f"{path}: {line}not valid YAML ({e})") from None


def _structured(path: Path, slot: str) -> Iterable[Row]:
    for row, key_name, raw in _entries(path, _parse(path)):
        name, text, params = _text_of(f"{path}: row {row}", raw)
        jinja = _jinja_slot(text, params) if slot == SLOT else None
        yield row, name or key_name or f"{row}", text, jinja or slot


def _csv_rows(path: Path, slot: str, column: str | None,
              name_column: str | None) -> Iterable[Row]:
    csv.field_size_limit(CSV_LIMIT)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        found = list(reader.fieldnames or [])
        col = column or next((c for c in CSV_COLUMNS if c in found), None)
        if col is None or col not in found:
            want = repr(column) if column else f"one of {', '.join(CSV_COLUMNS)}"
            raise TemplateFileError(f"{path}: no template column {want}; columns: "
                                    f"{', '.join(found) or 'none'} (give `column`)")
        if name_column is not None and name_column not in found:
            raise TemplateFileError(f"{path}: no name column {name_column!r}; columns: "
                                    f"{', '.join(found)}")
        names = name_column or ("name" if "name" in found else None)
        for row, r in enumerate(reader, start=1):  # data rows, after the header
            text = r.get(col)
            if text is None:
                raise TemplateFileError(f"{path}: row {row}: the row is short: no "
                                        f"{col!r} value")
            yield row, (r.get(names) or "").strip() if names else "", text, slot


def read_templates(path: str | Path, slot: str = SLOT, missing_slot: str = "error",
                   column: str | None = None, name_column: str | None = None,
                   limit: int | None = None) -> list[Template]:
    """The templates of `path` (see the module docstring), in file order."""
    p = Path(path)
    if missing_slot not in MISSING_SLOT:
        raise TemplateFileError(f"missing_slot must be one of {', '.join(MISSING_SLOT)}, "
                                f"got {missing_slot!r}")
    if not slot:
        raise TemplateFileError("slot must be a non-empty placeholder such as {request}")
    if not p.is_file():
        raise TemplateFileError(f"template file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".csv"):
        raise TemplateFileError(f"{p}: unknown template format {p.suffix!r}; use .json, "
                                ".yaml, .yml or .csv")
    try:
        rows = list(_csv_rows(p, slot, column, name_column) if suffix == ".csv"
                    else _structured(p, slot))
    except UnicodeDecodeError as e:
        raise TemplateFileError(f"{p}: not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise TemplateFileError(f"{p}: not a readable CSV file ({e})") from None
    out = _templates(p, rows, missing_slot, limit)
    if not out:
        raise TemplateFileError(f"{p}: no usable template (none has the slot {slot!r}; "
                                "give `slot` or missing_slot: append)")
    return out


def _templates(p: Path, rows: list[Row], missing_slot: str,
               limit: int | None) -> list[Template]:
    out: list[Template] = []
    seen: dict[str, int] = {}
    for row, name, text, slot in rows:
        if not text.strip():
            raise TemplateFileError(f"{p}: row {row}: the template is empty")
        has = slot in text
        if not has and missing_slot == "error":
            raise TemplateFileError(f"{p}: row {row}: the template has no {slot!r} slot "
                                    "for the request (give `slot`, or missing_slot: skip "
                                    "or append)")
        if not has and missing_slot == "skip":
            continue
        name = re.sub(r"\s+", "_", name.strip()) or f"{row}"
        if name in seen:
            raise TemplateFileError(f"{p}: row {row}: duplicate template name {name!r} "
                                    f"(first at row {seen[name]})")
        seen[name] = row
        out.append(Template(name, text, slot if has else "", row))
        if limit is not None and len(out) >= limit:
            break
    return out


class TemplateFileAttack(PromptAttack):
    """One probe per template of a file (default: the templates this project ships); the
    variant is `<file stem>:<template name>`."""

    name = "template_file"
    family = "competing_objectives"

    def __init__(self, path: str | None = None, slot: str = SLOT, missing_slot: str = "error",
                 column: str | None = None, name_column: str | None = None,
                 limit: int | None = None, family_name: str = "template_file",
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        super().__init__(max_new_tokens)
        if limit is not None and limit < 1:
            raise ValueError(f"template_file: limit must be >= 1, got {limit}")
        self.path = Path(path) if path is not None else default_file()
        self.templates = read_templates(self.path, slot, missing_slot, column, name_column,
                                        limit)
        self.family_name = family_name

    def probes(self, behaviour: Behaviour) -> list[Probe]:
        stem = self.path.stem
        return [Probe(f"{stem}:{t.name}", user(t.fill(behaviour.prompt)), self.family_name,
                      self.max_new_tokens, {"template_row": t.row})
                for t in self.templates]
