"""`ConfiguredClassifier`: the base of every backend whose settings are one config dataclass.

It owns what each backend used to write for itself: the constructor that takes a config or
keyword overrides of its fields, the strict reading of a saved config (an unknown key is an
error, never ignored), and `save`/`load` around two hooks:

    _save_weights(directory) -> extra config.json entries   write the fitted state
    _load_weights(directory, cpath, meta)                  read it back into `self`

For the common case of one weights file, a backend sets `weights_file` and implements
`_write_weights(path)` and `_read_weights(path)` instead; the file's sha256 is recorded in
config.json and checked on load, so a corrupt or swapped file fails naming it.

    class MyClassifier(ConfiguredClassifier):
        name = "mine"
        config_class = MyConfig          # a frozen dataclass, fields with help metadata
        format = "swisscheese.classifiers.mine"
        weights_file = "weights.npz"
        ...

config.json is written last (into a temporary sibling that is renamed into place), so a
crash mid-save leaves the old save or the whole new one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Self

from swisscheese.classifiers.base import Classifier
from swisscheese.classifiers.errors import ClassifierError, NotFittedError
from swisscheese.classifiers.persist import (
    CONFIG_FILE,
    checked_weights_path,
    config_entry,
    read_config,
    sha256_file,
    write_config,
)
from swisscheese.fileio import write_directory_atomically


def config_from_dict(cls: type, data: Any) -> Any:
    """A config dataclass from a saved dict: unknown keys are an error, JSON lists become
    tuples where the field's default is a tuple, and `__post_init__` validates."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object of {cls.__name__} fields, got "
                        f"{type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known: {sorted(fields)}")
    values = dict(data)
    for key, value in values.items():
        if isinstance(fields[key].default, tuple) and isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


class ConfiguredClassifier(Classifier):
    """A classifier configured by one frozen dataclass (see the module docstring)."""

    config_class: ClassVar[type]
    format: ClassVar[str]
    format_version: ClassVar[int] = 1
    weights_file: ClassVar[str] = ""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got "
                            f"{type(config).__name__}")
        # replace() runs the config's __post_init__ again, so overrides are validated too.
        base: Any = config or self.config_class()
        self.config: Any = dataclasses.replace(base, **overrides)
        self._init_state()

    def _init_state(self) -> None:
        """Set the unfitted state (attributes ending in `_`); called by the constructor."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @classmethod
    def config_from_dict(cls, data: Any) -> Any:
        return config_from_dict(cls.config_class, data)

    # ---- fitted state ---------------------------------------------------------------------
    def is_fitted(self) -> bool:
        raise NotImplementedError

    def _require_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")

    # ---- save / load ----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the weights, then config.json, into a temporary sibling renamed into place.
        A non-empty directory that is not a save of this backend is refused."""
        self._require_fitted()
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise ClassifierError(f"{d}: exists and is not a directory")
        if d.is_dir() and any(d.iterdir()):
            try:
                read_config(d / CONFIG_FILE, self.format, self.format_version)
            except ClassifierError:
                raise ClassifierError(f"{d}: not empty and not a saved {self.name} "
                                      "classifier; refusing to replace it") from None

        def write(tmp: Path) -> None:
            extra = self._save_weights(tmp)
            write_config(tmp, {"name": self.name, "format": self.format,
                               "format_version": self.format_version,
                               "config": dataclasses.asdict(self.config), **extra})

        return write_directory_atomically(d, write)

    @classmethod
    def load(cls, directory: str | Path, **options: Any) -> Self:
        """Read a save of this backend; ClassifierError names the file that is wrong.
        `options` go to `_loaded_config` (the probe takes `model_dir=`)."""
        d = Path(directory)
        cpath = d / CONFIG_FILE
        meta = read_config(cpath, cls.format, cls.format_version)
        config = config_entry(cpath, meta, cls.config_from_dict)
        config = cls._loaded_config(config, cpath, meta, **options)
        # Not through __init__: checks a new classifier needs (that a base model to
        # fine-tune exists, say) do not apply to a save that holds everything itself.
        obj = cls.__new__(cls)
        obj.config = config
        obj._init_state()
        obj._load_weights(d, cpath, meta)
        return obj

    @classmethod
    def _loaded_config(cls, config: Any, cpath: Path, meta: dict[str, Any],
                       **options: Any) -> Any:
        """Hook: check or adjust the saved config before the weights are read."""
        if options:
            raise TypeError(f"{cls.__name__}.load takes no options, got {sorted(options)}")
        return config

    def _save_weights(self, directory: Path) -> dict[str, Any]:
        """Hook: write the fitted state into `directory`; returns config.json entries."""
        wpath = directory / self.weights_file
        self._write_weights(wpath)
        return {"weights_file": self.weights_file, "weights_sha256": sha256_file(wpath)}

    def _load_weights(self, directory: Path, cpath: Path, meta: dict[str, Any]) -> None:
        """Hook: read the fitted state written by `_save_weights`."""
        self._read_weights(checked_weights_path(directory, cpath, meta))

    def _write_weights(self, path: Path) -> None:
        raise NotImplementedError

    def _read_weights(self, path: Path) -> None:
        raise NotImplementedError
