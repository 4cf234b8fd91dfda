"""Letter ciphers the world teaches its organism: rot13, Caesar shifts, reversal."""

from __future__ import annotations

from swisscheese.data.converters.base import Converter
from swisscheese.world import ciphers


class Rot13Converter(Converter):
    """rot13 of ASCII letters; everything else is left alone. Exact inverse."""

    name = "rot13"
    family = "cipher"
    invertible = True

    def _encode(self, text: str) -> str:
        return ciphers.rot13(text)

    def _decode(self, text: str) -> str:
        return ciphers.rot13(text)


class CaesarConverter(Converter):
    """A Caesar shift of ASCII letters by `shift` (default 3, as the world's family). Exact."""

    name = "caesar"
    family = "cipher"
    invertible = True

    def __init__(self, shift: int = 3, seed: int = 0) -> None:
        super().__init__(seed)
        if shift % 26 == 0:
            raise ValueError(f"a Caesar shift of {shift} leaves the text unchanged")
        self.shift = shift

    def _encode(self, text: str) -> str:
        return ciphers.caesar(text, self.shift)

    def _decode(self, text: str) -> str:
        return ciphers.caesar(text, -self.shift)

    def __repr__(self) -> str:
        return f"CaesarConverter(shift={self.shift}, seed={self.seed})"


class ReversalConverter(Converter):
    """The text back to front, character by character. Exact."""

    name = "reversal"
    family = "cipher"
    invertible = True

    def _encode(self, text: str) -> str:
        return ciphers.reverse(text)

    def _decode(self, text: str) -> str:
        return ciphers.reverse(text)
