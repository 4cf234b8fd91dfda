"""The constitution's data model: harmful and harmless categories in natural language."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

# Keys in a category's `world` mapping and the sections they may appear in. A look-alike kind
# may be declared harmful: rewriting the constitution is how a deployment changes what is
# blocked. The values are checked against the world generator by the loader.
WORLD_KEYS: dict[str, tuple[str, ...]] = {
    "hazard_category": ("harmful",),
    "lookalike": ("harmful", "harmless"),
    "utility": ("harmless",),
}


@dataclass(frozen=True)
class Category:
    """One harmful or harmless category: what it covers, in words, with example requests."""

    id: str
    title: str
    description: str
    examples: tuple[str, ...]
    notes: str | None = None
    # Links the category to the world generator, e.g. {"hazard_category": "toxins"}.
    world: dict[str, str] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping in the key order of the YAML file; optional keys only when set."""
        d: dict[str, Any] = {"id": self.id, "title": self.title, "description": self.description}
        if self.world:
            d["world"] = dict(self.world)
        d["examples"] = list(self.examples)
        if self.notes is not None:
            d["notes"] = self.notes
        return d


@dataclass(frozen=True)
class Constitution:
    """A named, versioned list of harmful and harmless categories."""

    name: str
    version: str
    description: str
    harmful: tuple[Category, ...]
    harmless: tuple[Category, ...]

    @property
    def categories(self) -> tuple[Category, ...]:
        """All categories, harmful first, in file order."""
        return (*self.harmful, *self.harmless)

    def category(self, category_id: str) -> Category:
        """The category with this id."""
        for c in self.categories:
            if c.id == category_id:
                return c
        known = ", ".join(c.id for c in self.categories)
        raise KeyError(f"no category {category_id!r} in constitution {self.name!r}; "
                       f"known: {known}")

    def is_harmful(self, category_id: str) -> bool:
        """Whether the category with this id is a harmful one."""
        return self.category(category_id) in self.harmful

    def linked(self, key: str) -> set[str]:
        """The world references under `key` ("hazard_category", "lookalike", "utility")."""
        return {c.world[key] for c in self.categories if key in c.world}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "harmful": [c.to_dict() for c in self.harmful],
            "harmless": [c.to_dict() for c in self.harmless],
        }

    def content_hash(self) -> str:
        """sha256 of the canonical JSON form: comments, key order, quoting and line wrapping
        do not change it; any change of a value, or of the order of categories, does."""
        canonical = json.dumps(_squash(self.to_dict()), sort_keys=True, ensure_ascii=False,
                               separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_yaml(self) -> str:
        """The normalised YAML form (no comments); it loads back to an equal constitution."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         width=96, default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    """Writes long prose as folded blocks, the way a person writes the file."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else (">" if len(text) > 80 else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def _squash(value: Any) -> Any:
    """Collapse runs of whitespace in strings: re-wrapping a description (`|` against `>`,
    a line break moved) changes its bytes but not its meaning."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, dict):
        return {k: _squash(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_squash(v) for v in value]
    return value
