"""Leetspeak: a e i o s t written as 4 3 1 0 5 7."""

from __future__ import annotations

from swisscheese.data.converters.base import Converter
from swisscheese.world import ciphers


class LeetspeakConverter(Converter):
    """The world's leetspeak; `decode` is its `unleet`.

    Leet is many-to-one, so the round trip is exact only on a domain: A E I O S T come
    back lower case, and a word spelt only from a e i o s t ("is" -> "15") comes back
    as digits, because a bare number must stay a number. Exact on lower-case text
    without digits whose every word has a letter outside a e i o s t.
    """

    name = "leetspeak"
    family = "obfuscation"
    invertible = True

    def _encode(self, text: str) -> str:
        return ciphers.leet(text)

    def _decode(self, text: str) -> str:
        return ciphers.unleet(text)
