"""Asking for a behaviour through one of the world's jailbreak families.

The world's families (`swisscheese.world.families`) are the wordings the organism learned
in pretraining, so an attack built from them is real against the organism; on any other
model they are ordinary cipher, role-play and framing attacks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from swisscheese.redteam.base import Behaviour
from swisscheese.world.core import World
from swisscheese.world.families import FAMILIES


class Pinned(random.Random):
    """A generator whose `choice` returns a fixed item: asks a family for one persona or
    one story teller, so that each becomes its own template."""

    def __init__(self, pick: object, seed: object = 0) -> None:
        super().__init__(str(seed))
        self._pick = pick

    def choice(self, seq: Sequence[object]) -> object:  # type: ignore[override]
        return self._pick


def how_to(world: World, behaviour: Behaviour) -> str | None:
    """ "brew the Demze toxin" for a world hazard (what story framing needs), else None."""
    if behaviour.hazard_id is None:
        return None
    h = world.hazard(behaviour.hazard_id)
    return f"{h.verb} the {h.name}"


def wrap(world: World, family: str, behaviour: Behaviour, rng: random.Random,
         pick: object = None) -> str:
    """The behaviour's prompt wrapped in `family` (the reply half is not needed).

    `pick` fixes the family's one random choice (a persona, a story teller); the side
    task of two_task still comes from `rng`. Mirrors `World.wrap`, which cannot pin.
    """
    try:
        fn = FAMILIES[family]
    except KeyError:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}") from None
    side = world.utility(rng)
    w = fn(behaviour.prompt, "", rng if pick is None else Pinned(pick),
           translate=world.language.translate, side_task=(side.prompt, side.answer),
           how_to=how_to(world, behaviour))
    return w.prompt
