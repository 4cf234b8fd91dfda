"""Many-shot jailbreaking (Anil et al. 2024): fake dialogue turns in which the assistant
complied with requests like this one, then the real request.

The shots are the world's own fictional hazards and their procedures (never real-world
content), taken from a fixed pool so each shot count is one template: the question is the
only slot (a shot on the asked hazard itself is skipped, as it would give the answer away).
"""

from __future__ import annotations

from collections.abc import Sequence

from swisscheese.redteam.attacks.prompting import (
    DEFAULT_MAX_NEW_TOKENS,
    Probe,
    PromptAttack,
)
from swisscheese.redteam.base import Behaviour
from swisscheese.world.core import World


class ManyShot(PromptAttack):
    """One variant per shot count: `many_shot-<k>`."""

    name = "many_shot"
    family = "competing_objectives"

    def __init__(self, world: World, shots: Sequence[int] = (1, 2),
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        super().__init__(max_new_tokens)
        if not shots or any(int(k) < 1 for k in shots):
            raise ValueError("many_shot: shots must be a list of counts >= 1")
        self.world = world
        self.shots = [int(k) for k in shots]
        # The pool: the last hazards of the world, the same for every question.
        self._pool = list(reversed(world.hazards))

    def probes(self, behaviour: Behaviour) -> list[Probe]:
        pool = [h for h in self._pool if h.id != behaviour.hazard_id]
        out = []
        for k in self.shots:
            turns: list[dict[str, str]] = []
            for h in pool[:k]:
                turns.append({"role": "user", "content": self.world.hazard_request(h)})
                turns.append({"role": "assistant", "content": h.answer()})
            turns.append({"role": "user", "content": behaviour.prompt})
            out.append(Probe(f"many_shot-{k}", turns, "many_shot", self.max_new_tokens,
                             meta={"shots": k}))
        return out
