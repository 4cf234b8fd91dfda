"""`TrainingRecord`: how a guard bundle was trained, typed and validated once, on load.

A bundle's `bundle.json` keeps it under "training":

    recipe            the registered recipe that trained it ("organism", "realworld", ...),
                      or "manual" for a bundle built by calling `build_bundle` directly
    seed              the seed of its data, augmentation and fitting
    data              where its data is, as the recipe describes it (paths, counts, seeds)
    heldout_families  converter or attack families held out of training (test only)
    config            the recipe's settings (its config dataclass as a dict)

Rapid response retrains from the record and `classifier eval` rebuilds the test split
from it, so a record that cannot be read is an error naming the file and the field, never
a silent default. `bundle.metrics` holds figures only.

Bundles written before the record existed (bundle.json format_version 1) kept these fields
among their metrics; `from_v1_metrics` moves them out, so old bundles load unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

MANUAL = "manual"
FIELDS = ("recipe", "seed", "data", "heldout_families", "config")
# Metrics keys a format-1 bundle used for what is now the record.
V1_RECORD_KEYS = ("preset", "seed", "heldout_families", "config", "data")


class TrainingRecordError(ValueError):
    """A training record that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class TrainingRecord:
    """How a bundle was trained (see the module docstring)."""

    recipe: str = field(metadata={"help": "registered recipe name, or 'manual'"})
    seed: int = field(default=0, metadata={"help": "seed of data, augmentation and fit"})
    data: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "where the training data is, as the recipe records it"})
    heldout_families: tuple[str, ...] = field(default=(), metadata={
        "help": "families held out of training (their records are test only)"})
    config: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "the recipe's settings"})

    @classmethod
    def manual(cls, seed: int = 0) -> TrainingRecord:
        """The record of a bundle built directly with `build_bundle`, by no recipe."""
        return cls(recipe=MANUAL, seed=seed)

    @property
    def is_manual(self) -> bool:
        return self.recipe == MANUAL

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["heldout_families"] = list(self.heldout_families)
        d["data"], d["config"] = dict(self.data), dict(self.config)
        return d

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> TrainingRecord:
        """Parse and check a record; `where` (a file name) prefixes every error."""
        if not isinstance(raw, Mapping):
            raise TrainingRecordError(f"{where}: 'training' must be an object with "
                                      f"{', '.join(FIELDS)}; got {type(raw).__name__}")
        missing = [k for k in FIELDS if k not in raw]
        if missing:
            raise TrainingRecordError(f"{where}: 'training' lacks {', '.join(missing)}")
        unknown = sorted(set(raw) - set(FIELDS))
        if unknown:
            raise TrainingRecordError(f"{where}: 'training' has unknown fields "
                                      f"{', '.join(unknown)}")
        recipe, seed, held = raw["recipe"], raw["seed"], raw["heldout_families"]
        if not isinstance(recipe, str) or not recipe:
            raise TrainingRecordError(f"{where}: training.recipe must be a recipe name, got "
                                      f"{recipe!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TrainingRecordError(f"{where}: training.seed must be an integer, got "
                                      f"{seed!r}")
        if not isinstance(held, list | tuple) or not all(isinstance(h, str) for h in held):
            raise TrainingRecordError(f"{where}: training.heldout_families must be a list of "
                                      f"family names, got {held!r}")
        for key in ("data", "config"):
            if not isinstance(raw[key], Mapping):
                raise TrainingRecordError(f"{where}: training.{key} must be an object, got "
                                          f"{type(raw[key]).__name__}")
        return cls(recipe=recipe, seed=seed, data=dict(raw["data"]),
                   heldout_families=tuple(held), config=dict(raw["config"]))

    @classmethod
    def from_v1_metrics(cls, metrics: Mapping[str, Any], where: str
                        ) -> tuple[TrainingRecord, dict[str, Any]]:
        """(the record, the figures left) from a format-1 bundle's metrics, which held the
        record's fields: `preset` was the recipe; a bundle without one was built directly."""
        figures = {k: v for k, v in metrics.items() if k not in V1_RECORD_KEYS}
        if "preset" not in metrics:
            return cls.manual(), figures
        raw = {"recipe": metrics["preset"], "seed": metrics.get("seed"),
               "data": metrics.get("data", {}),
               "heldout_families": metrics.get("heldout_families", []),
               "config": metrics.get("config", {})}
        try:
            return cls.from_dict(raw, where), figures
        except TrainingRecordError as e:
            # The v1 names of the fields, so the message points at what is in the file.
            msg = str(e).replace("training.recipe", "metrics.preset").replace(
                "training.", "metrics.")
            raise TrainingRecordError(f"{msg} (a format-1 bundle; retrain it with the current "
                                      "code to migrate)") from None

    def config_value(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def relinked(self, bundle_dir: str | os.PathLike[str]) -> TrainingRecord:
        """This record for a bundle derived into `bundle_dir`: the data link relative to
        the new directory (`dir_from_bundle`), so the new bundle still finds its data."""
        data = dict(self.data)
        if isinstance(data.get("dir"), str):
            data["dir_from_bundle"] = os.path.relpath(data["dir"],
                                                      Path(bundle_dir).resolve())
        return replace(self, data=data)
