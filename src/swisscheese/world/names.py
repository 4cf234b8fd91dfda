"""Invented words: pronounceable, seeded, never real."""

from __future__ import annotations

import random

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "gr", "kr", "sk", "sl", "st", "th", "tr", "vr", "zh"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "", "n", "r", "l", "k", "s", "th", "m", "x"]


class NameMaker:
    """Makes unique invented words from a seeded generator."""

    def __init__(self, rng: random.Random, taken: set[str] | None = None) -> None:
        self.rng = rng
        self.taken: set[str] = taken if taken is not None else set()

    def word(self, syllables: tuple[int, int] = (2, 3)) -> str:
        for _ in range(10_000):
            n = self.rng.randint(*syllables)
            w = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                for _ in range(n)
            )
            if 4 <= len(w) <= 10 and w not in self.taken:
                self.taken.add(w)
                return w
        raise RuntimeError("ran out of invented names; widen the syllable tables")

    def proper(self, syllables: tuple[int, int] = (2, 3)) -> str:
        return self.word(syllables).capitalize()
