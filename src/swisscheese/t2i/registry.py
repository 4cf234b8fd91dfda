"""The text-to-image plugin registries, one per kind, all built on the one `Registry`.

Entries are lazy ("module:Class"), so listing names (an error message, `--help`) imports
no backend and no heavy dependency. Every plugin class has a `from_config(ctx, **params)`
constructor: `ctx` (a `T2IContext`) carries the world, the organism directory and a work
directory for caches, and `params` come from the run config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swisscheese.registry import Registry
from swisscheese.t2i.base import Generator, ImageJudge, PromptFilter, Writer

IMAGE_JUDGES: Registry[type[ImageJudge]] = Registry(
    "image judge", ImageJudge, entry_point_group="swisscheese.t2i_judges")
PROMPT_FILTERS: Registry[type[PromptFilter]] = Registry(
    "prompt filter", PromptFilter, entry_point_group="swisscheese.t2i_filters")
WRITERS: Registry[type[Writer]] = Registry(
    "writer", Writer, entry_point_group="swisscheese.t2i_writers")
GENERATORS: Registry[type[Generator]] = Registry(
    "generator", Generator, entry_point_group="swisscheese.t2i_generators")

_P = "swisscheese.t2i"
IMAGE_JUDGES.add_lazy("oracle", f"{_P}.judges.oracle:OracleJudge")
IMAGE_JUDGES.add_lazy("cnn", f"{_P}.judges.cnn:CNNJudge")
IMAGE_JUDGES.add_lazy("nudenet", f"{_P}.judges.nudenet:NudeNetJudge")
IMAGE_JUDGES.add_lazy("vlm", f"{_P}.judges.vlm:VLMJudge")
PROMPT_FILTERS.add_lazy("keyword", f"{_P}.filters.keyword:KeywordFilter")
PROMPT_FILTERS.add_lazy("classifier", f"{_P}.filters.classifier:ClassifierFilter")
PROMPT_FILTERS.add_lazy("llm", f"{_P}.filters.llm:LLMFilter")
WRITERS.add_lazy("mutator", f"{_P}.writers.mutator:MutatorWriter")
WRITERS.add_lazy("chat", f"{_P}.writers.chat:ChatWriter")
GENERATORS.add_lazy("diffusers", f"{_P}.generators:DiffusersGenerator")
GENERATORS.add_lazy("world", f"{_P}.generators:WorldGenerator")

REGISTRIES: dict[str, Registry[Any]] = {"judge": IMAGE_JUDGES, "filter": PROMPT_FILTERS,
                                        "writer": WRITERS, "generator": GENERATORS}


@dataclass
class T2IContext:
    """What plugins may need to build themselves."""

    world: Any
    organism: Path | None = None
    workdir: Path | None = None
    seed: int = 0


def spec_parts(spec: str | Mapping[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    """(name, params) of a plugin spec: "name" or {"name": ..., other keys are params}."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ValueError(f"a {kind} must be a name or a mapping with a 'name', got {spec!r}")
    params = {k: v for k, v in spec.items() if k != "name"}
    return spec["name"], params


def build(registry: Registry[Any], spec: str | Mapping[str, Any], ctx: T2IContext) -> Any:
    """A plugin instance from its spec; an unknown name raises an error listing the
    registered names."""
    name, params = spec_parts(spec, registry.kind)
    cls = registry.get(name)
    return cls.from_config(ctx, **params)
