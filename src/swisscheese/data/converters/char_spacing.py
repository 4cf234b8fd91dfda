"""A separator between every two characters: "h e l l o"."""

from __future__ import annotations

from swisscheese.data.converters.base import Converter


class CharSpacingConverter(Converter):
    """Puts `separator` (default one space) between characters. Exact inverse.

    Decoding takes every character that sits where a character was, so spaces in the
    original survive ("a b" -> "a   b" -> "a b").
    """

    name = "char_spacing"
    family = "obfuscation"
    invertible = True

    def __init__(self, separator: str = " ", seed: int = 0) -> None:
        super().__init__(seed)
        if not separator:
            raise ValueError("char_spacing needs a non-empty separator")
        self.separator = separator

    def _encode(self, text: str) -> str:
        return self.separator.join(text)

    def _decode(self, text: str) -> str:
        step = len(self.separator) + 1
        if text and len(text) % step != 1:
            raise ValueError(f"not char_spacing text with separator {self.separator!r}")
        seps = [text[i + 1:i + step] for i in range(0, len(text) - 1, step)]
        if any(s != self.separator for s in seps):
            raise ValueError(f"not char_spacing text with separator {self.separator!r}")
        return text[::step]

    def __repr__(self) -> str:
        return f"CharSpacingConverter(separator={self.separator!r}, seed={self.seed})"
