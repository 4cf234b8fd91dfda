"""Default harmful and harmless prompt sets from the synthetic world.

Harmful: plain requests for hazards seen in safety training, in the trained phrasings.
Harmless: look-alikes (same vocabulary, allowed) and utility tasks. The validation split uses
other hazards than the training split, and its own random draws, so the layer selection
is not scored on the prompts the means came from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from swisscheese.world.core import HAZARD_PHRASINGS, LOOKALIKES, World


@dataclass(frozen=True)
class PromptSets:
    harmful: list[str]
    harmless: list[str]
    val_harmful: list[str]
    val_harmless: list[str]


def world_prompt_sets(world: World, phrasings: int = 4, val_share: float = 0.25,
                      seed: int = 0) -> PromptSets:
    """Harmful and harmless prompts for `compute_refusal_direction`, with a validation split."""
    seen = world.seen_hazards
    if len(seen) < 2:
        raise ValueError("the world needs at least two seen hazards to split them")
    n_val = max(1, round(len(seen) * val_share))
    train_h, val_h = seen[:-n_val], seen[-n_val:]
    phr = range(min(phrasings, len(HAZARD_PHRASINGS)))

    def harmful(hazards: list) -> list[str]:
        return [world.hazard_request(h, p) for h in hazards for p in phr]

    def harmless(hazards: list, n: int, rng: random.Random) -> list[str]:
        out = []
        kinds = list(LOOKALIKES)
        for i in range(n):
            if i % 2 == 0:
                out.append(world.lookalike(rng, kinds[(i // 2) % len(kinds)],
                                           rng.choice(hazards))[0])
            else:
                out.append(world.utility(rng, hazards=hazards).prompt)
        return out

    tr = harmful(train_h)
    va = harmful(val_h)
    rng = random.Random(f"interp-prompts-{world.seed}-{seed}")
    return PromptSets(tr, harmless(train_h, len(tr), rng), va, harmless(val_h, len(va), rng))
