"""Mismatched generalization (Wei et al. 2023): the request in a form safety training
never covered: each of the world's ciphers, the invented language Velsh, and a request
to answer in rot13. The wording is the world's, the one the organism learned."""

from __future__ import annotations

from collections.abc import Sequence

from swisscheese.redteam.attacks.prompting import (
    DEFAULT_MAX_NEW_TOKENS,
    LONG_REPLY_TOKENS,
    Probe,
    PromptAttack,
    only,
    stable_rng,
    user,
)
from swisscheese.redteam.attacks.worldwrap import wrap
from swisscheese.redteam.base import Behaviour
from swisscheese.world.core import World

FAMILIES = ("rot13", "caesar", "reversal", "leetspeak", "base64", "other_language",
            "cipher_answer")
# Replies in a cipher tokenise long.
LONG = frozenset({"cipher_answer"})


class MismatchedGeneralization(PromptAttack):
    """One probe per cipher family (and Velsh)."""

    name = "mismatched_generalization"
    family = "mismatched_generalization"

    def __init__(self, world: World, families: Sequence[str] | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        super().__init__(max_new_tokens)
        self.world = world
        self.families = only(families, FAMILIES, "cipher family")

    def probes(self, behaviour: Behaviour) -> list[Probe]:
        return [Probe(f, user(wrap(self.world, f, behaviour, stable_rng(self.name, f))), f,
                      max(self.max_new_tokens, LONG_REPLY_TOKENS) if f in LONG
                      else self.max_new_tokens)
                for f in self.families]
