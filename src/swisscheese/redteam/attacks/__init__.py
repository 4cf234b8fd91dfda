"""The attacks, one module each (or a small group), all in the one ATTACKS registry.

Importing this package imports every attack module, which registers it. Modules that
another part of the project may not have yet (the adaptive and white-box attacks) are
imported when they exist.
"""

from __future__ import annotations

import importlib

from swisscheese.redteam.attacks import (  # noqa: F401  (imported to register)
    best_of_n,
    competing,
    converters,
    many_shot,
    mismatched,
    plain,
    roleplay,
    universal,
)
from swisscheese.redteam.attacks.prompting import Probe, PromptAttack
from swisscheese.redteam.base import ATTACKS

OPTIONAL_MODULES = ("pair", "tap", "art", "gcg", "embedding")

for _name in OPTIONAL_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:
        # Only the module's own absence is expected; a missing dependency inside it is not.
        if e.name != f"{__name__}.{_name}":
            raise

__all__ = ["ATTACKS", "Probe", "PromptAttack"]
