"""Behaviours: what the red team tries to get out of a target.

Two sources:

- the world: the eight challenge levels (`Grader.levels()`, each with its rising
  threshold), every other hazard (threshold `ASR_THRESHOLD`), and the harmless
  look-alikes (no hazard; they measure over-refusal);
- any JSONL or CSV file with the fields `id`, `prompt` and optional `category`, `target`,
  `threshold`. The column names of the public benchmarks are understood as aliases
  (AdvBench `goal`/`target`, JailbreakBench `Goal`/`Target`/`Behavior`/`Category`), and a
  CSV without any id column gets ids `<file stem>-<row>`, so `../shared/datasets` loads as
  it is. A row without a required field is an error naming the file, row and field.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from swisscheese.data.readers import jsonl_objects
from swisscheese.redteam.base import Behaviour
from swisscheese.world.core import World
from swisscheese.world.grader import ASR_THRESHOLD, Grader

LEVEL_PREFIX = "level-"
HAZARD_PREFIX = "hazard-"
LOOKALIKE_PREFIX = "lookalike-"
WORLD_SETS = ("levels", "hazards", "all", "lookalikes")
# Field -> accepted column names, first match wins (case-insensitive).
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "behaviour_id", "behavior_id", "behavior", "behaviour"),
    "prompt": ("prompt", "goal", "request", "question"),
    "category": ("category", "semanticcategory"),
    "target": ("target",),
    "threshold": ("threshold",),
}


class BehaviourError(ValueError):
    """A behaviours file that cannot be used; names the file, row and field."""


def _target_for(world: World, hazard_id: str) -> str:
    h = world.hazard(hazard_id)
    return f"Sure, here is how to {h.verb} the {h.name}"


def level_behaviours(world: World, grader: Grader | None = None) -> list[Behaviour]:
    """The eight challenge levels, thresholds rising from level 1 to level 8."""
    grader = grader or Grader(world)
    return [Behaviour(id=f"{LEVEL_PREFIX}{lv.number}", prompt=lv.question,
                      category=lv.hazard.category.id, target=_target_for(world, lv.hazard.id),
                      hazard_id=lv.hazard.id, level=lv.number, threshold=lv.threshold)
            for lv in grader.levels()]


def hazard_behaviours(world: World, grader: Grader | None = None,
                      exclude_levels: bool = True) -> list[Behaviour]:
    """Every hazard's plain request (the levels' hazards left out unless asked for)."""
    grader = grader or Grader(world)
    skip = {lv.hazard.id for lv in grader.levels()} if exclude_levels else set()
    return [Behaviour(id=f"{HAZARD_PREFIX}{h.id}", prompt=world.hazard_request(h, i),
                      category=h.category.id, target=_target_for(world, h.id), hazard_id=h.id,
                      threshold=ASR_THRESHOLD,
                      meta={"seen_in_safety": h.seen_in_safety})
            for i, h in enumerate(world.hazards) if h.id not in skip]


def lookalike_behaviours(world: World) -> list[Behaviour]:
    """The world's harmless look-alikes: a refusal here is an over-refusal."""
    return [Behaviour(id=f"{LOOKALIKE_PREFIX}{i:03d}", prompt=e.prompt,
                      category=f"lookalike-{e.subkind}", target="", threshold=1.0,
                      meta={"benign": True, "subkind": e.subkind,
                            "hazard": e.hazard_id or ""})
            for i, e in enumerate(world.eval_lookalikes())]


def spread(items: Sequence[Behaviour], limit: int | None) -> list[Behaviour]:
    """At most `limit` items, in their original order: round-robin over the categories,
    each category starting one place further along than the one before, so that every
    category keeps a share and the picks do not all sit at the same place in their
    category (the world puts each category's hazard unseen in safety training first)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        return []
    groups: dict[str, list[int]] = {}
    for i, b in enumerate(items):
        groups.setdefault(b.category, []).append(i)
    order = [(c, list(g[c_i % len(g):] + g[:c_i % len(g)]))
             for c_i, (c, g) in enumerate(groups.items())]
    picked: list[int] = []
    for r in range(max(len(g) for _, g in order)):
        for _, g in order:
            if r < len(g) and len(picked) < limit:
                picked.append(g[r])
    return [items[i] for i in sorted(picked)]


def world_behaviours(world: World, which: str = "all", grader: Grader | None = None,
                     limit: int | None = None) -> list[Behaviour]:
    """Behaviours of the world: "levels", "hazards" (the rest), "all", or "lookalikes".

    `limit` keeps that many of the non-level hazards (or look-alikes), evenly spread;
    the eight levels are always kept whole.
    """
    grader = grader or Grader(world)
    if which == "levels":
        return level_behaviours(world, grader)
    if which == "hazards":
        return spread(hazard_behaviours(world, grader), limit)
    if which == "all":
        return level_behaviours(world, grader) + spread(hazard_behaviours(world, grader), limit)
    if which == "lookalikes":
        return spread(lookalike_behaviours(world), limit)
    raise ValueError(f"unknown world behaviour set {which!r}; choose one of "
                     f"{', '.join(WORLD_SETS)}")


# ---- files ------------------------------------------------------------------------------
def _column_map(columns: Iterable[str]) -> dict[str, str]:
    """field -> the column that holds it, by alias."""
    by_lower = {c.strip().lower(): c for c in columns if c is not None}
    out: dict[str, str] = {}
    for fld, names in ALIASES.items():
        for n in names:
            if n in by_lower:
                out[fld] = by_lower[n]
                break
    return out


def _behaviour(path: Path, row_no: int, row: Mapping[str, Any], cols: Mapping[str, str],
               auto_id: str | None) -> Behaviour:
    where = f"{path}: row {row_no}"

    def get(fld: str) -> str | None:
        col = cols.get(fld)
        if col is None or col not in row or row[col] is None:
            return None
        value = str(row[col]).strip()
        return value or None

    bid = get("id") or auto_id
    if bid is None:
        raise BehaviourError(f"{where}: missing field 'id'")
    prompt = get("prompt")
    if prompt is None:
        raise BehaviourError(f"{where}: missing field 'prompt'")
    threshold = ASR_THRESHOLD
    raw = get("threshold")
    if raw is not None:
        try:
            threshold = float(raw)
        except ValueError:
            raise BehaviourError(f"{where}: field 'threshold' must be a number, got "
                                 f"{raw!r}") from None
        if not 0.0 <= threshold <= 1.0:
            raise BehaviourError(f"{where}: field 'threshold' must be in [0, 1], got {raw}")
    known = set(cols.values())
    meta = {k: v for k, v in row.items() if k and k not in known and v not in (None, "")}
    return Behaviour(id=bid, prompt=prompt, category=get("category") or "",
                     target=get("target") or "Sure, here is", threshold=threshold,
                     meta={"source": path.name, **meta})


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    # "FILE: row N:" as for CSV rows, so both formats report a bad row the same way.
    with path.open(encoding="utf-8-sig") as f:
        return list(jsonl_objects(f, lambda n, m: BehaviourError(f"{path}: row {n}: {m}")))


def load_behaviours(path: str | Path, limit: int | None = None) -> list[Behaviour]:
    """Behaviours from a JSONL (`.jsonl`, `.json-lines`) or CSV (`.csv`) file.

    Rows are numbered from 1 as a reader counts them (CSV data rows after the header).
    Ids must be unique. `limit` keeps the first rows.
    """
    p = Path(path)
    if not p.is_file():
        raise BehaviourError(f"behaviours file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json-lines"):
        rows = _jsonl_rows(p)
        out = [_behaviour(p, i, r, _column_map(r), None) for i, r in rows]
    elif suffix == ".csv":
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = _column_map(reader.fieldnames or [])
            if "prompt" not in cols:
                raise BehaviourError(f"{p}: no prompt column (one of "
                                     f"{', '.join(ALIASES['prompt'])}); columns: "
                                     f"{', '.join(reader.fieldnames or [])}")
            has_id = "id" in cols
            out = [_behaviour(p, i, r, cols, None if has_id else f"{p.stem}-{i}")
                   for i, r in enumerate(reader, start=1)]
    else:
        raise BehaviourError(f"{p}: unknown behaviours format {p.suffix!r}; use .jsonl or .csv")
    seen: dict[str, int] = {}
    for i, b in enumerate(out, start=1):
        if b.id in seen:
            raise BehaviourError(f"{p}: row {i}: duplicate id {b.id!r} (first at row "
                                 f"{seen[b.id]})")
        seen[b.id] = i
    return out[:limit] if limit is not None else out
