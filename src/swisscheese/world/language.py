"""Velsh, the world's second, invented language: a word-for-word cipher of English.

Each English word maps to a fixed invented word derived from the world seed, so
the mapping is total (any sentence translates) and reproducible. Numbers and
capitalised proper names stay as they are, as loan words do.
"""

from __future__ import annotations

import hashlib
import random
import re

from swisscheese.world.names import NameMaker

_WORD = re.compile(r"[A-Za-z]+")


class Language:
    name = "Velsh"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._fwd: dict[str, str] = {}
        self._back: dict[str, str] = {}
        self._taken: set[str] = set()

    def word(self, english: str) -> str:
        w = english.lower()
        if w not in self._fwd:
            digest = hashlib.sha256(f"{self.seed}:{w}".encode()).digest()
            maker = NameMaker(random.Random(digest), self._taken)
            foreign = maker.word((1, 2) if len(w) <= 4 else (2, 2))
            self._fwd[w] = foreign
            self._back[foreign] = w
        return self._fwd[w]

    def translate(self, text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            w = m.group(0)
            if w[0].isupper() and w.lower() != w and not m.start() == 0:
                return w  # a proper name mid-sentence stays as a loan word
            out = self.word(w)
            return out.capitalize() if w[0].isupper() else out

        return _WORD.sub(sub, text)

    def back_translate(self, text: str) -> str:
        """Translate known Velsh words back to English; leave the rest."""

        def sub(m: re.Match[str]) -> str:
            w = m.group(0)
            eng = self._back.get(w.lower())
            if eng is None:
                return w
            return eng.capitalize() if w[0].isupper() else eng

        return _WORD.sub(sub, text)
