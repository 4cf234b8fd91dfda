"""The attacks, one module each (or a small group), all named in the one ATTACKS registry
(`redteam.base`), which imports a module the first time its attack is built."""

from __future__ import annotations

from swisscheese.redteam.attacks.prompting import Probe, PromptAttack
from swisscheese.redteam.base import ATTACKS

__all__ = ["ATTACKS", "Probe", "PromptAttack"]
