"""The baseline: the behaviour's prompt as it is."""

from __future__ import annotations

from swisscheese.redteam.attacks.prompting import Probe, PromptAttack, user
from swisscheese.redteam.base import Behaviour


class PlainAttack(PromptAttack):
    """Sends the request unchanged: what every other attack is measured against, and the
    probe of over-refusal on harmless look-alikes."""

    name = "plain"
    family = "none"

    def probes(self, behaviour: Behaviour) -> list[Probe]:
        return [Probe("plain", user(behaviour.prompt), "plain", self.max_new_tokens)]
