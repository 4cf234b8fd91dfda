"""What the classifiers built from other classifiers share (`cascade`, `ensemble`): building
members by registered name with the options every backend may take, saving each member in
its own sub-directory, loading them back checked, and the seeded split that calibrates a
composite on texts its members were not fitted on.

A member is named by its registered backend and built with its own keyword arguments plus
the composite's shared ones: `seed` (each member gets it if its settings have one),
`model_dir` (to members that read a local model) and `context` (to streaming members, so
an exchange composite is made of exchange members).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.classifiers.base import Classifier, StreamingClassifier
from swisscheese.classifiers.errors import ClassifierError
from swisscheese.classifiers.registry import CLASSIFIERS, get_classifier, load_classifier

# Scores are clipped this far from 0 and 1 before their logits are taken.
LOGIT_EPS = 1e-6


def takes_option(cls: type, key: str) -> bool:
    """Whether backend class `cls` takes the constructor option `key`."""
    config_class = getattr(cls, "config_class", None)
    if config_class is not None and dataclasses.is_dataclass(config_class):
        return key in {f.name for f in dataclasses.fields(config_class)}
    params = inspect.signature(cls).parameters
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def reads_model(name: str) -> bool:
    """Whether backend `name` reads a local model directory (a probe, an encoder, ...)."""
    cls = CLASSIFIERS.get(name)
    return bool(getattr(cls, "needs_model_dir", False) or getattr(cls, "model_kind", ""))


def build_member(name: str, params: Mapping[str, Any] | None, *, seed: int,
                 model_dir: str | None, context: str | None,
                 streaming: bool, nested_ok: bool = False) -> Classifier:
    """A new member: backend `name` with `params` and the shared options it takes.
    `nested_ok`: the member may be a composite that allows nesting (`nestable`: an
    ensemble as a cascade's stage, whose own members are plain classifiers)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown member backend {name!r}; registered: "
                         f"{', '.join(CLASSIFIERS.names())}")
    cls = CLASSIFIERS.get(name)
    if getattr(cls, "composite", False) and not (nested_ok and getattr(cls, "nestable", False)):
        raise ValueError(f"a member cannot itself be a composite classifier ({name!r})"
                         + ("; a cascade's stage may be an ensemble" if not nested_ok else ""))
    if streaming and not issubclass(cls, StreamingClassifier):
        raise ValueError(f"member {name!r} is not a streaming classifier; a streaming "
                         "composite needs streaming members")
    kwargs = dict(params or {})
    if takes_option(cls, "seed"):
        kwargs.setdefault("seed", seed)
    if model_dir and reads_model(name):
        kwargs.setdefault("model_dir", model_dir)
    if context is not None and context != "reply":
        if context not in getattr(cls, "contexts", ("reply",)):
            raise ValueError(f"member {name!r} reads the reply alone; it cannot be part of "
                             f"an {context} classifier")
        kwargs.setdefault("context", context)
    return get_classifier(name, **kwargs)


def save_members(directory: Path, members: Mapping[str, Classifier]) -> dict[str, str]:
    """Save each member in `directory/KEY`; returns {key: backend name} for config.json."""
    for key, member in members.items():
        member.save(directory / key)
    return {key: member.name for key, member in members.items()}


def load_members(directory: Path, cpath: Path, names: Any,
                 keys: Sequence[str]) -> dict[str, Classifier]:
    """The members saved by `save_members`, each checked against the name `cpath` records."""
    if not isinstance(names, dict) or sorted(names) != sorted(keys):
        raise ClassifierError(f"{cpath}: 'members' must map {list(keys)} to backend names, "
                              f"got {names!r}")
    out = {}
    for key in keys:
        member = load_classifier(directory / key)
        if member.name != names[key]:
            raise ClassifierError(f"{directory / key}: holds a {member.name!r} classifier, "
                                  f"but {cpath} names {names[key]!r}")
        out[key] = member
    return out


def calibration_split(labels: np.ndarray, fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, calibration indices): a seeded stratified split that keeps at least
    one text of each class on each side (both sides when a class has a single text)."""
    rng = np.random.default_rng(seed)
    fit_idx, cal_idx = [], []
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_cal = min(len(idx) - 1, max(1, math.ceil(fraction * len(idx))))
        if n_cal <= 0:  # one text of this class: it serves both sides
            fit_idx.append(idx)
            cal_idx.append(idx)
            continue
        cal_idx.append(idx[:n_cal])
        fit_idx.append(idx[n_cal:])
    return np.sort(np.concatenate(fit_idx)), np.sort(np.concatenate(cal_idx))


def logit(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 - p)), clipped so that scores of exactly 0 or 1 stay finite."""
    q = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(q) - np.log1p(-q)


def check_context(name: str, context: str, streaming: bool) -> str:
    """`context` if a composite `name` can be built as it: an input composite reads
    prompts ("reply" is the only form), a streaming one replies or exchanges."""
    allowed = ("reply", "exchange") if streaming else ("reply",)
    if context not in allowed:
        raise ValueError(f"{name} cannot be built as a {context!r} classifier; it can be: "
                         f"{', '.join(allowed)}")
    return context


def check_fraction(value: float, what: str) -> float:
    if not isinstance(value, int | float) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{what} must be in (0, 1), got {value!r}")
    return float(value)
