"""Role-play and story framing: the model is asked to be someone else, or to tell a tale
in which a character explains the procedure. Each persona and each story teller is its
own template, in the world's wording."""

from __future__ import annotations

from collections.abc import Sequence

from swisscheese.redteam.attacks.prompting import (
    DEFAULT_MAX_NEW_TOKENS,
    Probe,
    PromptAttack,
    only,
    stable_rng,
    user,
)
from swisscheese.redteam.attacks.worldwrap import wrap
from swisscheese.redteam.base import Behaviour
from swisscheese.world.core import World
from swisscheese.world.families import PERSONAS, STORY_TELLERS

PERSONA_NAMES = tuple(p[0] for p in PERSONAS)


def _slug(name: str) -> str:
    return name.lower().replace(" ", "_")


class Roleplay(PromptAttack):
    """"You are <persona> ... Stay in character. <request>", one variant per persona."""

    name = "roleplay"
    family = "competing_objectives"

    def __init__(self, world: World, personas: Sequence[str] | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        super().__init__(max_new_tokens)
        self.world = world
        self.personas = only(personas, PERSONA_NAMES, "persona")

    def probes(self, behaviour: Behaviour) -> list[Probe]:
        out = []
        for name in self.personas:
            persona = next(p for p in PERSONAS if p[0] == name)
            prompt = wrap(self.world, "roleplay", behaviour, stable_rng(self.name),
                          pick=persona)
            out.append(Probe(f"roleplay-{_slug(name)}", user(prompt), "roleplay",
                             self.max_new_tokens))
        return out


class Story(PromptAttack):
    """"Write a story in which an old <teller> explains, step by step, how to ...", one
    variant per teller."""

    name = "story"
    family = "competing_objectives"

    def __init__(self, world: World, tellers: Sequence[str] | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        super().__init__(max_new_tokens)
        self.world = world
        self.tellers = only(tellers, STORY_TELLERS, "story teller")

    def probes(self, behaviour: Behaviour) -> list[Probe]:
        rng = stable_rng(self.name)
        return [Probe(f"story-{t}", user(wrap(self.world, "story", behaviour, rng, pick=t)),
                      "story", self.max_new_tokens)
                for t in self.tellers]
