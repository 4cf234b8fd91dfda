"""Best-of-N jailbreaking (Hughes et al. 2024): sample the target N times, each time at
temperature > 0 and/or on a randomly augmented prompt, and stop at the first reply the
judge counts as a success.

Augmentations are the paper's: shuffle the middle letters of words, flip letter case,
nudge a few characters by one code point. `base` wraps the augmented request in a world
family first (None: the request alone). Samples go out in chunks of `chunk` in one batched
call each; attempts after the first success of a chunk are dropped, so the attempts are
exactly those up to and including the first success.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from swisscheese.models.base import ChatModel
from swisscheese.redteam.attacks.prompting import (
    DEFAULT_MAX_NEW_TOKENS,
    Probe,
    send,
    stable_rng,
    stable_seed,
    user,
)
from swisscheese.redteam.attacks.worldwrap import wrap
from swisscheese.redteam.base import Attack, Attempt, Behaviour, Judge
from swisscheese.world.core import World
from swisscheese.world.families import FAMILIES

_WORD = re.compile(r"[A-Za-z]{4,}")


def augment(text: str, rng: random.Random, sigma: float) -> str:
    """One random augmentation of `text`; `sigma` in [0, 1] sets how strong."""

    def scramble(m: re.Match[str]) -> str:
        w = m.group(0)
        if rng.random() >= sigma ** 0.5:
            return w
        mid = list(w[1:-1])
        rng.shuffle(mid)
        return w[0] + "".join(mid) + w[-1]

    text = _WORD.sub(scramble, text)
    chars = []
    for ch in text:
        if ch.isalpha() and rng.random() < sigma ** 0.5:
            ch = ch.swapcase()
        if 32 < ord(ch) < 126 and rng.random() < sigma ** 3:
            ch = chr(ord(ch) + rng.choice((-1, 1)))
        chars.append(ch)
    return "".join(chars)


class BestOfN(Attack):
    """N samples per behaviour (variant `bon-<base>`, sample 0..N-1), stopping at the
    first success."""

    name = "best_of_n"
    family = "best_of_n"

    def __init__(self, world: World, n: int = 8, temperature: float = 0.8,
                 augment: bool = True, sigma: float = 0.3, base: str | None = None,
                 chunk: int = 4, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        if n < 1 or chunk < 1:
            raise ValueError("best_of_n: n and chunk must be >= 1")
        if temperature <= 0 and not augment:
            raise ValueError("best_of_n: with temperature 0 and no augmentation every sample "
                             "is the same; set temperature > 0 or augment")
        if not 0.0 <= sigma <= 1.0:
            raise ValueError("best_of_n: sigma must be in [0, 1]")
        if base is not None and base not in FAMILIES:
            raise ValueError(f"best_of_n: unknown base family {base!r}; known: "
                             f"{', '.join(FAMILIES)}")
        self.world = world
        self.n, self.temperature, self.augment, self.sigma = n, temperature, augment, sigma
        self.base, self.chunk, self.max_new_tokens = base, chunk, max_new_tokens
        self.variant = f"bon-{base or 'plain'}"

    def _probe(self, behaviour: Behaviour, i: int) -> Probe:
        rng = stable_rng(self.name, behaviour.id, i)
        text = augment(behaviour.prompt, rng, self.sigma) if self.augment else behaviour.prompt
        if self.base is not None:
            text = wrap(self.world, self.base, replace(behaviour, prompt=text), rng)
        return Probe(self.variant, user(text), "best_of_n", self.max_new_tokens,
                     meta={"sample": i})

    def run(self, behaviour: Behaviour, target: ChatModel, judge: Judge) -> list[Attempt]:
        out: list[Attempt] = []
        for start in range(0, self.n, self.chunk):
            items = [(behaviour, self._probe(behaviour, i))
                     for i in range(start, min(self.n, start + self.chunk))]
            attempts = send(self.name, target, items, judge, temperature=self.temperature,
                            seed=stable_seed(self.name, behaviour.id, start))
            for a in attempts:
                out.append(a)
                if a.verdict is not None and a.verdict.success(behaviour.threshold):
                    return out
        return out
