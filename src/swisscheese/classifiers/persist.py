"""Reading a saved classifier directory: its config.json and its checksummed weights.

Every backend saves `config.json` (name, format, format_version, its settings, the weights
file name and sha256) beside one weights file; these checks are the same for all of them,
so a corrupt or foreign directory fails with the same clear message whatever the backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from swisscheese.classifiers.errors import ClassifierError
from swisscheese.fileio import sha256_file

__all__ = ["CONFIG_FILE", "checked_weights_path", "config_entry", "read_config",
           "sha256_file", "write_config"]

CONFIG_FILE = "config.json"
C = TypeVar("C")


def read_config(cpath: Path, fmt: str, version: int) -> dict[str, Any]:
    """A classifier's config.json as a dict, checked for format and version."""
    if not cpath.is_file():
        raise ClassifierError(f"{cpath}: missing; is {cpath.parent} a saved classifier "
                              "directory?")
    try:
        meta = json.loads(cpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClassifierError(f"{cpath}: not readable JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ClassifierError(f"{cpath}: expected a JSON object")
    if meta.get("format") != fmt:
        raise ClassifierError(f"{cpath}: format {meta.get('format')!r} is not {fmt!r}; it was "
                              "written by another classifier backend")
    if meta.get("format_version") != version:
        raise ClassifierError(f"{cpath}: format_version {meta.get('format_version')!r}, this "
                              f"code reads version {version}")
    return meta


def checked_weights_path(d: Path, cpath: Path, meta: dict[str, Any]) -> Path:
    """The weights file named in `meta`, present and with the recorded sha256."""
    wname, want = meta.get("weights_file"), meta.get("weights_sha256")
    if not isinstance(wname, str) or Path(wname).name != wname or not isinstance(want, str):
        raise ClassifierError(f"{cpath}: needs 'weights_file' (a file name in {d}) and "
                              "'weights_sha256'")
    wpath = d / wname
    if not wpath.is_file():
        raise ClassifierError(f"{wpath}: weights file missing (named in {cpath})")
    got = sha256_file(wpath)
    if got != want:
        raise ClassifierError(f"{wpath}: sha256 {got} does not match {want} recorded in "
                              f"{cpath}; the weights file is corrupt or from another model")
    return wpath


def write_config(d: Path, meta: dict[str, Any]) -> None:
    """Write `d`/config.json; backends call it after their weights, so that a crash
    mid-save leaves no config pointing at missing weights."""
    (d / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def config_entry(cpath: Path, meta: dict[str, Any], from_dict: Callable[[Any], C]) -> C:
    """The backend's settings from the 'config' entry of `meta` (read from `cpath`)."""
    try:
        return from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ClassifierError(f"{cpath}: bad 'config' entry ({e})") from e
