"""The synthetic world: fictional hazards, look-alikes, utility tasks and capabilities."""

from swisscheese.world.core import (
    HAZARD_PHRASINGS,
    HELDOUT_HAZARD_PHRASINGS,
    LOOKALIKE_KINDS,
    Example,
    World,
    WorldConfig,
)
from swisscheese.world.families import FAMILIES, FAMILY_KIND
from swisscheese.world.hazards import CATEGORIES, Category, Hazard, Step

__all__ = ["CATEGORIES", "FAMILIES", "FAMILY_KIND", "HAZARD_PHRASINGS",
           "HELDOUT_HAZARD_PHRASINGS", "LOOKALIKE_KINDS", "Category", "Example", "Hazard", "Step",
           "World", "WorldConfig"]
