"""Latin letters swapped for Cyrillic and Greek look-alikes: same glyphs, other code points."""

from __future__ import annotations

from swisscheese.data.converters.base import Converter

# One look-alike per letter, so the map is a bijection and decoding is exact.
HOMOGLYPHS: dict[str, str] = {
    "a": "\u0430", "c": "\u0441", "d": "\u0501", "e": "\u0435", "h": "\u04bb", "i": "\u0456",
    "j": "\u0458", "o": "\u043e", "p": "\u0440", "q": "\u051b", "s": "\u0455", "v": "\u03bd",
    "w": "\u051d", "x": "\u0445", "y": "\u0443",
    "A": "\u0410", "B": "\u0412", "C": "\u0421", "E": "\u0415", "H": "\u041d", "I": "\u0406",
    "J": "\u0408", "K": "\u041a", "M": "\u041c", "N": "\u039d", "O": "\u041e", "P": "\u0420",
    "S": "\u0405", "T": "\u0422", "X": "\u0425", "Y": "\u03a5", "Z": "\u0396",
}
_LATIN = {glyph: latin for latin, glyph in HOMOGLYPHS.items()}


class HomoglyphConverter(Converter):
    """Swaps a share `rate` (default all) of the swappable letters for their look-alikes.

    Which letters are swapped when `rate` < 1 depends on (seed, text). `decode` maps
    every look-alike in HOMOGLYPHS back, so it is exact on text that held none of them.
    """

    name = "homoglyphs"
    family = "obfuscation"
    invertible = True

    def __init__(self, rate: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed)
        if not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        self.rate = rate

    def _encode(self, text: str) -> str:
        rng = self._rng(text)
        return "".join(
            HOMOGLYPHS[ch] if ch in HOMOGLYPHS and (self.rate >= 1 or rng.random() < self.rate)
            else ch
            for ch in text
        )

    def _decode(self, text: str) -> str:
        return "".join(_LATIN.get(ch, ch) for ch in text)

    def __repr__(self) -> str:
        return f"HomoglyphConverter(rate={self.rate}, seed={self.seed})"
