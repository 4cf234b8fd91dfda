"""Converter stacks: the request disguised by converters from the one converter registry
(`swisscheese.data.converters`), applied in order. Each stack is one template."""

from __future__ import annotations

from collections.abc import Sequence

from swisscheese.redteam.attacks.prompting import (
    DEFAULT_MAX_NEW_TOKENS,
    Probe,
    PromptAttack,
)
from swisscheese.redteam.base import Behaviour

# Stacks of two that each undo a different defence: a cipher under an obfuscation.
DEFAULT_PAIRS = (("rot13", "zero_width"), ("reversal", "char_spacing"),
                 ("leetspeak", "homoglyphs"))


def default_stacks() -> list[list[str]]:
    """Every registered converter alone, then a few pairs of registered converters."""
    from swisscheese.data.converters import list_converters

    names = list_converters()
    pairs = [list(p) for p in DEFAULT_PAIRS if all(n in names for n in p)]
    return [[n] for n in names] + pairs


class ConverterAttack(PromptAttack):
    """One probe per converter stack; the variant is the stack's name ("rot13+base64")."""

    name = "converters"
    family = "mismatched_generalization"

    def __init__(self, stacks: Sequence[Sequence[str] | str] | None = None, seed: int = 0,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        from swisscheese.data.converters import stack

        super().__init__(max_new_tokens)
        chosen = default_stacks() if stacks is None else [
            s.split("+") if isinstance(s, str) else list(s) for s in stacks]
        if not chosen:
            raise ValueError("converters: give at least one stack")
        # Built now, so that an unknown converter name fails when the config is read.
        self.stacks = [stack(names, seed=seed) for names in chosen]

    def probes(self, behaviour: Behaviour) -> list[Probe]:
        return [Probe(s.name, [m.to_dict() for m in s.to_messages(behaviour.prompt)],
                      "converter", self.max_new_tokens, meta={"stack": s.name})
                for s in self.stacks]
