"""The context attacks (Constitutional Classifiers++): intent that no single message or the
reply alone shows. The world's context families, in the world's wording: the hazard asked
for by its description, under a name an earlier turn defined, split over turns that are
each harmless, answered in a code word the request defined, or buried after harmless
exchanges. Each family is one template (its code word and wording fixed), with the
question as the only slot; multi-turn families send the earlier turns too.

`heldout` names the families the guard's classifiers were not trained on (by default the
world's `NEW_ATTACK_FAMILIES`, which the organism recipe holds out of the input
classifier): their attempts carry `meta["heldout"] = True`, so a report can show how a
layer does on attacks it has never seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from swisscheese.redteam.attacks.prompting import (
    DEFAULT_MAX_NEW_TOKENS,
    Probe,
    PromptAttack,
    only,
    stable_rng,
)
from swisscheese.redteam.base import Behaviour
from swisscheese.world.core import World
from swisscheese.world.families import CONTEXT_FAMILIES, NEEDS_SUBJECT, NEW_ATTACK_FAMILIES


class ContextFamilies(PromptAttack):
    """One probe per context family; the subject families need a world hazard."""

    name = "context"
    family = "context"

    def __init__(self, world: World, context_families: Sequence[str] | None = None,
                 heldout: Sequence[str] | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        super().__init__(max_new_tokens)
        self.world = world
        self.families = only(context_families, CONTEXT_FAMILIES, "context family")
        held = list(NEW_ATTACK_FAMILIES if heldout is None else heldout)
        unknown = [f for f in held if f not in CONTEXT_FAMILIES]
        if unknown:
            raise ValueError(f"unknown held-out context families {unknown}; available: "
                             f"{', '.join(CONTEXT_FAMILIES)}")
        self.heldout = frozenset(held)

    def probes(self, behaviour: Behaviour) -> list[Probe]:
        subject = None
        if behaviour.hazard_id is not None:
            h = self.world.hazard(behaviour.hazard_id)
            if f"the {h.name}" in behaviour.prompt:
                subject = self.world.subject(h)
        out = []
        for fam in self.families:
            if fam in NEEDS_SUBJECT and subject is None:
                continue  # nothing in the request the family could rename
            # Seeded by the family alone: the code word, the wording and the buried
            # exchanges are the same for every question, so each family is a template.
            w = self.world.wrap_turns(fam, behaviour.prompt, "", stable_rng(self.name, fam),
                                      subject=subject)
            convo = [*w.messages, {"role": "user", "content": w.prompt}]
            out.append(Probe(fam, convo, fam, self.max_new_tokens,
                             meta={"heldout": fam in self.heldout}))
        return out
