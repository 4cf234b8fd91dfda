"""The one classifier registry: name -> class, filled by the @register decorator.

Importing `swisscheese.classifiers` imports every backend module, which registers it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from swisscheese.classifiers.base import Classifier, ClassifierError

CLASSIFIERS: dict[str, type] = {}

C = TypeVar("C", bound=type)


def register(cls: C) -> C:
    """Class decorator: add a Classifier subclass to CLASSIFIERS under its `name`."""
    if not (isinstance(cls, type) and issubclass(cls, Classifier)):
        raise TypeError(f"only Classifier subclasses can be registered, got {cls!r}")
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name`")
    if name in CLASSIFIERS and CLASSIFIERS[name] is not cls:
        raise ValueError(f"classifier name {name!r} is already taken by "
                         f"{CLASSIFIERS[name].__name__}")
    CLASSIFIERS[name] = cls
    return cls


def list_classifiers() -> list[str]:
    """The registered classifier names, sorted."""
    return sorted(CLASSIFIERS)


def _lookup(name: str) -> type:
    try:
        return CLASSIFIERS[name]
    except KeyError:
        raise KeyError(f"unknown classifier {name!r}; registered: "
                       f"{', '.join(list_classifiers())}") from None


def get_classifier(name: str, **kwargs: Any) -> Classifier:
    """A new, unfitted classifier by registered name; kwargs go to its constructor."""
    return _lookup(name)(**kwargs)  # type: ignore[no-any-return]


def load_classifier(directory: str | Path) -> Classifier:
    """Load a saved classifier of whichever registered class its config.json names."""
    path = Path(directory) / "config.json"
    try:
        name = json.loads(path.read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClassifierError(f"{path}: cannot read the classifier's 'name' ({e})") from e
    try:
        cls = _lookup(name)
    except KeyError as e:
        raise ClassifierError(f"{path}: {e.args[0]}") from None
    return cls.load(directory)  # type: ignore[no-any-return]
