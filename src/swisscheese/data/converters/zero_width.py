"""Invisible zero-width characters between the visible ones, to split tokens."""

from __future__ import annotations

from swisscheese.data.converters.base import Converter

# ZERO WIDTH SPACE, NON-JOINER, JOINER, WORD JOINER.
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")
_STRIP = str.maketrans("", "", "".join(ZERO_WIDTH))


class ZeroWidthConverter(Converter):
    """One zero-width character, picked by (seed, text), between every two characters.

    `decode` strips all four kinds, so it is exact on text that held none of them.
    """

    name = "zero_width"
    family = "obfuscation"
    invertible = True

    def _encode(self, text: str) -> str:
        if len(text) < 2:
            return text
        rng = self._rng(text)
        out = [text[0]]
        for ch in text[1:]:
            out.append(rng.choice(ZERO_WIDTH))
            out.append(ch)
        return "".join(out)

    def _decode(self, text: str) -> str:
        return text.translate(_STRIP)
